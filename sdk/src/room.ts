import { Switchboard, type RoomOptions } from './client.js';
import { Emitter } from './events.js';
import type { ForwardedHandshakeFrame, IdentifiedFrame, RoomAnswer } from './generated.js';
import { PeerLink } from './peer.js';
import { EarlyQueue } from './queue.js';
import { Signaling, type SignalingOptions } from './signaling.js';

export interface RoomCallOptions extends RoomOptions {
  /** A client of the HTTP API, or its URL. */
  switchboard: Switchboard | string;
  /** The room's URL path (`/myRoom`): its room is found, or a warm one claimed. */
  urlPath: string;
  /** This participant's id in the room. Default: a random `client-…`. */
  peerId?: string;
  /** ICE servers instead of the room's own (from getRoomId/claimRoom, with TURN credentials). */
  iceServers?: RTCIceServer[];
  /** `relay` sends everything through TURN. Default `all`. */
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Another signaling URL than the room's `signalingUrl`. */
  signalingUrl?: string;
  signaling?: SignalingOptions;
  /**
   * How long a departed participant's consumer connection stays open after `participantLeft`
   * (ms), so a page can check that nothing more arrives on it. Default 0.
   */
  closeLeftAfterMs?: number;
}

/** One chat (or features) message from the room; `from`/`text` when it is `{from, text}` JSON, as `say` sends. */
export interface ChatMessage {
  data: unknown;
  from?: string;
  text?: string;
}

export interface RoomCallEvents {
  joined: { roomId: string; peerId: string; claimed: boolean };
  participantJoined: { peerId: string };
  participantLeft: { peerId: string; pc: RTCPeerConnection };
  track: { peerId: string; track: MediaStreamTrack; streams: readonly MediaStream[]; pc: RTCPeerConnection };
  chat: ChatMessage;
  features: ChatMessage;
  /** The chat channel to the SFU is open (again). */
  channelOpen: { label: string };
  /** The room's SFU left: the call is over. */
  ended: { sfuId: string };
  /** The socket closed and is being reopened. */
  reconnecting: { attempt: number; delayMs: number };
  /** Identified again after a reconnect; the SFU renegotiates with us as with a newcomer. */
  reconnected: IdentifiedFrame;
  error: { error: Error; during: string };
}

const randomId = (prefix: string) => {
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  return `${prefix}-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
};

/** An SDP's ICE username fragment (session level, else its first media section's). */
export function iceUfrag(sdp: string | undefined): string | null {
  return sdp?.match(/^a=ice-ufrag:(\S+)/m)?.[1] ?? null;
}

/** Whether `offer` comes from another remote connection than the one `current` described. */
export function isNewConnection(current: string | undefined, offer: string | undefined): boolean {
  const before = iceUfrag(current);
  const now = iceUfrag(offer);
  return before !== null && now !== null && before !== now;
}

/** Parses a data-channel message as `{from, text}` when it is that. */
export function chatMessage(data: unknown): ChatMessage {
  if (typeof data === 'string') {
    try {
      const parsed = JSON.parse(data);
      if (parsed && typeof parsed === 'object' && typeof parsed.text === 'string') {
        return { data, text: parsed.text, ...(parsed.from === undefined ? {} : { from: String(parsed.from) }) };
      }
    } catch {
      // not ours: given as it came
    }
  }
  return { data };
}

/**
 * A call in a room through its SFU: `join()` finds (or claims) the room and identifies;
 * `publish(stream)` sends the stream once on the producer connection (with the negotiated
 * `chat` and `features` data channels); every other participant arrives on a consumer
 * connection of its own (`participantJoined`, then `track`). `leave()` hangs up.
 */
export class RoomCall extends Emitter<RoomCallEvents> {
  readonly switchboard: Switchboard;
  readonly urlPath: string;
  readonly peerId: string;
  room: (RoomAnswer & { claimed: boolean }) | null = null;
  signaling: Signaling | null = null;
  producer: PeerLink | null = null;
  chat: RTCDataChannel | null = null;
  features: RTCDataChannel | null = null;
  /** One consumer connection per remote participant. */
  readonly consumers = new Map<string, PeerLink>();
  #options: RoomCallOptions;
  #config: RTCConfiguration = {};
  #stream: MediaStream | null = null;
  #left = false;
  #early = new Map<string, EarlyQueue<ForwardedHandshakeFrame>>();

  constructor(options: RoomCallOptions) {
    super();
    this.#options = options;
    this.switchboard = typeof options.switchboard === 'string' ? new Switchboard({ apiUrl: options.switchboard }) : options.switchboard;
    this.urlPath = options.urlPath;
    this.peerId = options.peerId ?? randomId('client');
  }

  /** The remote participants now. */
  get participants(): string[] {
    return [...this.consumers.keys()];
  }

  get roomId(): string | null {
    return this.room?.roomId ?? null;
  }

  /** Finds or claims the room, connects and identifies. */
  async join(): Promise<{ roomId: string; peerId: string; claimed: boolean }> {
    const { waitMs, retryMs } = this.#options;
    this.room = await this.switchboard.room(this.urlPath, { ...(waitMs === undefined ? {} : { waitMs }), ...(retryMs === undefined ? {} : { retryMs }) });
    const roomId = this.room.roomId ?? this.room.id;
    this.#config = {
      iceServers: this.#options.iceServers ?? this.room.iceServers,
      iceTransportPolicy: this.#options.iceTransportPolicy ?? 'all',
    };
    const signaling = new Signaling(this.#options.signalingUrl ?? this.room.signalingUrl, this.#options.signaling);
    this.signaling = signaling;
    signaling.on('handshake', (frame) => void this.#onHandshake(frame));
    signaling.on('clientDisconnect', ({ clientId }) => this.#drop(clientId));
    signaling.on('sfuDisconnect', ({ sfuId }) => {
      this.#hangUp();
      this.emit('ended', { sfuId });
    });
    signaling.on('reconnecting', (e) => this.emit('reconnecting', e));
    signaling.on('reconnected', (ack) => void this.#afterReconnect(ack));
    signaling.on('failed', ({ error }) => this.emit('error', { error, during: 'reconnect' }));
    await signaling.connect();
    await signaling.identify({ id: this.peerId, type: 'client', roomId });
    const joined = { roomId, peerId: this.peerId, claimed: this.room.claimed };
    this.emit('joined', joined);
    return joined;
  }

  /** Sends `stream`'s tracks to the room (once, to the SFU) and opens the chat channels. */
  async publish(stream: MediaStream): Promise<void> {
    if (!this.signaling || !this.room) throw new Error('join() first');
    this.#stream = stream;
    this.producer?.close();
    const producer = new PeerLink({ signaling: this.signaling, type: 'producer', config: this.#config });
    this.producer = producer;
    for (const track of stream.getTracks()) producer.pc.addTrack(track, stream);
    // The Arbiter's channels: negotiated (no in-band announcement), fixed ids.
    this.chat = producer.pc.createDataChannel('chat', { negotiated: true, id: 100 });
    this.features = producer.pc.createDataChannel('features', { negotiated: true, id: 110 });
    this.chat.onopen = () => this.emit('channelOpen', { label: 'chat' });
    this.chat.onmessage = (m) => this.emit('chat', chatMessage(m.data));
    this.features.onmessage = (m) => this.emit('features', chatMessage(m.data));
    await producer.offer({ roomId: this.room.roomId });
  }

  /** Sends `{from, text}` on the chat channel to everyone else; false when it is not open. */
  say(text: string): boolean {
    if (this.chat?.readyState !== 'open') return false;
    this.chat.send(JSON.stringify({ from: this.peerId, text }));
    return true;
  }

  async #onHandshake(frame: ForwardedHandshakeFrame): Promise<void> {
    try {
      if (frame.type === 'consumer') {
        const peer = frame.remotePeerId;
        if (typeof peer !== 'string' || !peer) throw new Error('a consumer frame without remotePeerId');
        let link = this.consumers.get(peer);
        const description = frame.description as RTCSessionDescriptionInit | undefined;
        if (link && description?.type === 'offer' && isNewConnection(link.pc.remoteDescription?.sdp, description.sdp)) {
          // The SFU offers this participant on a connection of its own that is not the one we
          // have (the participant came back, or our old one crossed its departure): start over.
          this.#drop(peer);
          link = undefined;
        }
        if (!link) {
          // A participant arrives with the SFU's offer; what overtakes the offer waits for it.
          if ((frame.description as RTCSessionDescriptionInit | undefined)?.type !== 'offer') {
            let early = this.#early.get(peer);
            if (!early) this.#early.set(peer, (early = new EarlyQueue(64)));
            early.push(frame);
            return;
          }
          link = this.#consumerFor(peer);
        }
        await link.receive(frame);
        for (const early of this.#early.get(peer)?.drain() ?? []) await link.receive(early);
        this.#early.delete(peer);
      } else {
        await this.producer?.receive(frame);
      }
    } catch (error) {
      this.emit('error', { error: error as Error, during: `negotiation (${frame.type})` });
    }
  }

  #consumerFor(peerId: string): PeerLink {
    let link = this.consumers.get(peerId);
    if (link) return link;
    link = new PeerLink({ signaling: this.signaling!, type: 'consumer', fields: { remotePeerId: peerId }, config: this.#config });
    const pc = link.pc;
    pc.addEventListener('track', (e) => this.emit('track', { peerId, track: e.track, streams: e.streams, pc }));
    this.consumers.set(peerId, link);
    this.emit('participantJoined', { peerId });
    return link;
  }

  #drop(peerId: string): void {
    this.#early.delete(peerId);
    const link = this.consumers.get(peerId);
    if (!link) return;
    this.consumers.delete(peerId);
    const after = this.#options.closeLeftAfterMs ?? 0;
    if (after > 0 && !this.#left) setTimeout(() => link.close(), after);
    else link.close();
    this.emit('participantLeft', { peerId, pc: link.pc });
  }

  /**
   * The room heard us leave when the old socket closed, so the SFU closed our connections: send
   * the stream again on a new producer; the SFU offers everyone else again, as to a newcomer.
   */
  async #afterReconnect(ack: IdentifiedFrame): Promise<void> {
    this.#closeConsumers();
    this.emit('reconnected', ack);
    if (this.#stream && !this.#left) {
      try {
        await this.publish(this.#stream);
      } catch (error) {
        this.emit('error', { error: error as Error, during: 'publish after reconnect' });
      }
    }
  }

  #hangUp(): void {
    this.producer?.close();
    this.producer = null;
    this.#closeConsumers();
  }

  #closeConsumers(): void {
    for (const [peerId, link] of [...this.consumers]) {
      this.consumers.delete(peerId);
      link.close();
      this.emit('participantLeft', { peerId, pc: link.pc });
    }
  }

  /** Leaves the room: closes every connection, says `disconnect`, closes the socket. */
  leave(): void {
    this.#left = true;
    this.#hangUp();
    this.signaling?.leave();
  }
}
