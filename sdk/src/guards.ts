import { OUTBOUND_FRAME_TYPES, type ForwardedHandshakeFrame, type OutboundFrame, type OutboundFrameEvents } from './generated.js';

export type OutboundEvent = keyof OutboundFrameEvents;

const byType = new Map<string, OutboundEvent>();
for (const [event, types] of Object.entries(OUTBOUND_FRAME_TYPES) as [OutboundEvent, readonly string[]][]) {
  for (const type of types) byType.set(type, event);
}

const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * The event an outbound frame is (`identified`, `error`, `pong`, `clientDisconnect`,
 * `sfuDisconnect`, `handshake`, `session`), or null when it is none of the frames
 * docs/asyncapi.yaml describes (or lacks a field they require).
 */
export function frameEvent(frame: unknown): OutboundEvent | null {
  if (!isObject(frame) || typeof frame.type !== 'string') return null;
  const event = byType.get(frame.type);
  if (!event) return null;
  switch (event) {
    case 'handshake':
      return typeof frame.sender === 'string' ? event : null;
    case 'identified':
      return typeof frame.id === 'string' && typeof frame.roomId === 'string' ? event : null;
    case 'error':
      return typeof frame.status === 'number' && typeof frame.message === 'string' && typeof frame.action === 'string' ? event : null;
    case 'clientDisconnect':
      return typeof frame.clientId === 'string' ? event : null;
    case 'sfuDisconnect':
      return typeof frame.sfuId === 'string' ? event : null;
    case 'session':
      return typeof frame.id === 'string' && isObject(frame.env) && Array.isArray(frame.args) ? event : null;
    default:
      return event;
  }
}

export function isOutboundFrame(frame: unknown): frame is OutboundFrame {
  return frameEvent(frame) !== null;
}

export function isForwardedHandshake(frame: unknown): frame is ForwardedHandshakeFrame {
  return frameEvent(frame) === 'handshake';
}
