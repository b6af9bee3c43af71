import { backoffDelay, type BackoffOptions } from './backoff.js';
import { SignalingError } from './errors.js';
import { Emitter } from './events.js';
import type { HandshakeFrame, IdentifiedFrame, IdentifyFrame, OutboundFrame, OutboundFrameEvents } from './generated.js';
import { frameEvent } from './guards.js';

export type IdentifyData = IdentifyFrame['data'];
export type HandshakeData = HandshakeFrame['data'];

/** Events of a `Signaling`: one per outbound frame type of docs/asyncapi.yaml, and the socket's own. */
export interface SignalingEvents extends OutboundFrameEvents {
  /** Every frame, before its own event. */
  frame: OutboundFrame;
  /** A frame that is not JSON or not one docs/asyncapi.yaml describes. */
  invalid: { raw: string };
  open: { url: string; attempt: number };
  close: { code: number; reason: string; willReconnect: boolean };
  /** The socket closed; the next attempt starts after `delayMs`. */
  reconnecting: { attempt: number; delayMs: number };
  /** A new socket is open and identified again as before. */
  reconnected: IdentifiedFrame;
  /** Reconnecting stopped (a refused identify, or `maxReconnects`). */
  failed: { error: Error };
}

/** The subset of the WebSocket API used here (browsers', Node 22's, or the `ws` package's). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
}

export interface SignalingOptions {
  /** Keep-alive under API Gateway's 10-minute idle timeout (ms). Default 5 minutes. */
  pingIntervalMs?: number;
  /** Reconnect delays. */
  backoff?: BackoffOptions;
  /** Reconnect attempts in a row before giving up. Default unlimited. */
  maxReconnects?: number;
  /** How long identify (and the first connect) may take (ms). Default 10 000. */
  timeoutMs?: number;
  /** Frames kept while the socket is away, sent once it is identified again. Default 256. */
  maxQueued?: number;
  /** Another WebSocket constructor (Node 20 without `--experimental-websocket`). */
  WebSocket?: new (url: string) => WebSocketLike;
}

const OPEN = 1;
const CONNECTING = 0;

/**
 * The signaling socket. Frames out are `{action, data}`; frames in become typed events. When
 * the socket closes (idle or maximum-age limit, network), it reconnects with backoff and sends
 * the same identify again; frames sent meanwhile are kept and sent after it. It never touches
 * peer connections: those go on.
 */
export class Signaling extends Emitter<SignalingEvents> {
  readonly url: string;
  #options: Required<Omit<SignalingOptions, 'WebSocket' | 'backoff'>> & { backoff: BackoffOptions };
  #WebSocket: new (url: string) => WebSocketLike;
  #ws: WebSocketLike | null = null;
  #identity: IdentifyData | null = null;
  #identified: IdentifiedFrame | null = null;
  #queue: string[] = [];
  #pinger: ReturnType<typeof setInterval> | undefined;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #attempt = 0;
  #closed = false;
  #reconnects = 0;

  constructor(url: string, options: SignalingOptions = {}) {
    super();
    this.url = url;
    this.#options = {
      pingIntervalMs: options.pingIntervalMs ?? 5 * 60_000,
      backoff: options.backoff ?? {},
      maxReconnects: options.maxReconnects ?? Number.POSITIVE_INFINITY,
      timeoutMs: options.timeoutMs ?? 10_000,
      maxQueued: options.maxQueued ?? 256,
    };
    const ctor = options.WebSocket ?? (globalThis as { WebSocket?: new (url: string) => WebSocketLike }).WebSocket;
    if (!ctor) throw new TypeError('no WebSocket here: pass { WebSocket } (Node 20: run with --experimental-websocket)');
    this.#WebSocket = ctor;
  }

  /** Whether the socket is open now. */
  get open(): boolean {
    return this.#ws?.readyState === OPEN;
  }

  /** The last `identified` acknowledgement (null before identify, and while reconnecting). */
  get identified(): IdentifiedFrame | null {
    return this.#identified;
  }

  /** How many times the socket was opened again after a close. */
  get reconnects(): number {
    return this.#reconnects;
  }

  /** Opens the socket (resolves once open). */
  connect(): Promise<void> {
    this.#closed = false;
    return this.#open();
  }

  #open(): Promise<void> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new this.#WebSocket(this.url);
      this.#ws = ws;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        ws.close();
        reject(new SignalingError('connect', 0, `no connection to ${this.url} within ${this.#options.timeoutMs} ms`));
      }, this.#options.timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        settled = true;
        this.#attempt = 0;
        clearInterval(this.#pinger);
        this.#pinger = setInterval(() => this.ping(), this.#options.pingIntervalMs);
        this.emit('open', { url: this.url, attempt: this.#reconnects });
        resolve();
      };
      ws.onerror = () => {
        if (settled) return;
        clearTimeout(timer);
        settled = true;
        reject(new SignalingError('connect', 0, `websocket error on ${this.url}`));
      };
      ws.onclose = (event) => {
        clearTimeout(timer);
        if (this.#ws !== ws) return;
        clearInterval(this.#pinger);
        this.#identified = null;
        const willReconnect = !this.#closed && this.#identity !== null && this.#reconnects < this.#options.maxReconnects;
        this.emit('close', { code: event?.code ?? 0, reason: event?.reason ?? '', willReconnect });
        if (!settled) {
          settled = true;
          reject(new SignalingError('connect', 0, `socket to ${this.url} closed (${event?.code}) before it opened`));
        }
        if (willReconnect) this.#scheduleReconnect();
      };
      ws.onmessage = (event) => this.#receive(String(event.data));
    });
  }

  #scheduleReconnect(): void {
    this.#attempt += 1;
    const delayMs = backoffDelay(this.#attempt, this.#options.backoff);
    this.emit('reconnecting', { attempt: this.#attempt, delayMs });
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = setTimeout(() => void this.#reconnect(), delayMs);
  }

  async #reconnect(): Promise<void> {
    if (this.#closed || !this.#identity) return;
    try {
      await this.#open();
      this.#reconnects += 1;
      const ack = await this.#identify(this.#identity);
      this.#flush();
      this.emit('reconnected', ack);
    } catch (e) {
      if (this.#closed) return;
      const error = e as Error;
      // A room that is gone, or a token no longer accepted, will not come back by retrying.
      const final = error instanceof SignalingError && [400, 401, 404].includes(error.status);
      if (final || this.#attempt >= this.#options.maxReconnects) {
        this.#closed = true;
        this.#ws?.close();
        this.emit('failed', { error });
        return;
      }
      // The socket may still be open (identify refused for now, e.g. 409 while the old
      // connection is being removed, or 503): drop it and try again later.
      const ws = this.#ws;
      this.#ws = null;
      ws?.close();
      this.#scheduleReconnect();
    }
  }

  #receive(raw: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(raw);
    } catch {
      this.emit('invalid', { raw });
      return;
    }
    const event = frameEvent(frame);
    if (!event) {
      this.emit('invalid', { raw });
      return;
    }
    this.emit('frame', frame as OutboundFrame);
    this.emit(event, frame as never);
  }

  #sendNow(action: string, data?: unknown): boolean {
    if (this.#ws?.readyState !== OPEN) return false;
    this.#ws.send(JSON.stringify(data === undefined ? { action } : { action, data }));
    return true;
  }

  #flush(): void {
    for (const text of this.#queue.splice(0)) this.#ws?.send(text);
  }

  /**
   * Sends a frame. While the socket is away (reconnecting, or not identified again yet) it is
   * kept and sent after the identify; returns whether it went out now.
   */
  send(action: string, data?: unknown): boolean {
    const ready = this.#ws?.readyState === OPEN && (this.#identified !== null || this.#identity === null);
    if (ready) return this.#sendNow(action, data);
    if (this.#closed) return false;
    this.#queue.push(JSON.stringify(data === undefined ? { action } : { action, data }));
    if (this.#queue.length > this.#options.maxQueued) this.#queue.shift();
    return false;
  }

  /** Identifies (and remembers it, to identify again after a reconnect); resolves with `identified`. */
  async identify(data: IdentifyData): Promise<IdentifiedFrame> {
    if (this.#ws?.readyState !== OPEN && this.#ws?.readyState !== CONNECTING) await this.connect();
    const ack = await this.#identify(data);
    this.#identity = data;
    this.#flush();
    return ack;
  }

  #identify(data: IdentifyData): Promise<IdentifiedFrame> {
    return new Promise((resolve, reject) => {
      const done = (fn: () => void) => {
        clearTimeout(timer);
        offOk();
        offError();
        offClose();
        fn();
      };
      const timer = setTimeout(
        () => done(() => reject(new SignalingError('identify', 0, `no answer to identify within ${this.#options.timeoutMs} ms`))),
        this.#options.timeoutMs,
      );
      const offOk = this.on('identified', (frame) =>
        done(() => {
          this.#identified = frame;
          resolve(frame);
        }),
      );
      const offError = this.on('error', (frame) => {
        if (frame.action === 'identify') done(() => reject(new SignalingError('identify', frame.status, `identify refused: ${frame.status} ${frame.message}`)));
      });
      const offClose = this.on('close', (e) => done(() => reject(new SignalingError('identify', 0, `the socket closed (${e.code}) before identify was answered`))));
      if (!this.#sendNow('identify', data)) done(() => reject(new SignalingError('identify', 0, 'the socket is not open')));
    });
  }

  /** A handshake: relayed to `receiver`, or without one to the room's serving peer (SFU or host). */
  handshake(data: HandshakeData): boolean {
    return this.send('handshake', data);
  }

  /** Keep-alive; the answer is a `pong` event. */
  ping(): boolean {
    return this.#sendNow('ping');
  }

  /** Leaves the room (`disconnect`) and closes the socket for good. */
  leave(): void {
    if (this.#ws?.readyState === OPEN) this.#sendNow('disconnect');
    this.close();
  }

  /** Closes the socket for good (no reconnect). */
  close(): void {
    this.#closed = true;
    this.#queue = [];
    clearInterval(this.#pinger);
    clearTimeout(this.#reconnectTimer);
    const ws = this.#ws;
    if (ws && ws.readyState <= OPEN) ws.close();
  }
}
