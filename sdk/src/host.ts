import { Switchboard } from './client.js';
import { Emitter } from './events.js';
import type { ForwardedHandshakeFrame, HeartbeatResponse, HostStatus, IdentifiedFrame } from './generated.js';
import { PeerLink } from './peer.js';
import { EarlyQueue } from './queue.js';
import { Signaling, type SignalingOptions } from './signaling.js';

export interface HostSessionOptions {
  /** A client of the HTTP API (with the host key), or its URL (then give `hostKey`). */
  switchboard: Switchboard | string;
  hostKey?: string;
  /** The host's secret id (never shown to viewers). */
  hostId: string;
  /** The room viewers are matched into. */
  roomId: string;
  region: string;
  /** This host's peer id on the socket. Default: a random `host-…`. */
  peerId?: string;
  /** Heartbeat period (ms). Default 20 000 (the registration lives 30 s). */
  heartbeatMs?: number;
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Another signaling URL than the heartbeat's `signalingUrl`. */
  signalingUrl?: string;
  /** Report `busy` when the first viewer arrives and `idle` when the last leaves. Default true. */
  autoStatus?: boolean;
  signaling?: SignalingOptions;
}

export interface Viewer {
  id: string;
  pc: RTCPeerConnection;
  /** The viewer's data channel, once it opened one. */
  channel: RTCDataChannel | null;
}

export interface HostSessionEvents {
  heartbeat: HeartbeatResponse;
  /** A heartbeat or status call failed (the loop goes on). */
  error: { error: Error; during: string };
  ready: IdentifiedFrame;
  /** A viewer's offer came: its connection, before the answer (add tracks here if not given a stream). */
  viewer: Viewer;
  viewerLeft: { id: string; why: string };
  channel: { id: string; channel: RTCDataChannel };
  message: { id: string; data: unknown; channel: RTCDataChannel };
  status: { status: HostStatus };
  reconnecting: { attempt: number; delayMs: number };
  reconnected: IdentifiedFrame;
}

/**
 * A matchmaking host: heartbeats every 20 s, identifies as its room's host, answers each
 * viewer's offer (with `stream`'s tracks), reports busy while anyone watches and idle when the
 * last leaves.
 */
export class HostSession extends Emitter<HostSessionEvents> {
  readonly switchboard: Switchboard;
  readonly peerId: string;
  signaling: Signaling | null = null;
  iceServers: RTCIceServer[] = [];
  status: HostStatus = 'idle';
  readonly viewers = new Map<string, Viewer & { link: PeerLink }>();
  #options: HostSessionOptions;
  #stream: MediaStream | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #early = new Map<string, EarlyQueue<ForwardedHandshakeFrame>>();
  #stopped = false;

  constructor(options: HostSessionOptions) {
    super();
    this.#options = options;
    this.switchboard =
      typeof options.switchboard === 'string' ? new Switchboard({ apiUrl: options.switchboard, ...(options.hostKey ? { hostKey: options.hostKey } : {}) }) : options.switchboard;
    this.peerId = options.peerId ?? `host-${Math.random().toString(16).slice(2, 10)}`;
  }

  /** One heartbeat now (rejects with a `SwitchboardError` when refused). */
  async heartbeat(): Promise<HeartbeatResponse> {
    const { hostId, roomId, region } = this.#options;
    const answer = await this.switchboard.heartbeat({ hostId, roomId, region, status: this.status });
    if (Array.isArray(answer.iceServers)) this.iceServers = answer.iceServers as RTCIceServer[];
    this.emit('heartbeat', answer);
    return answer;
  }

  /** Reports busy or idle (POST /api/host/status). */
  async setStatus(status: HostStatus): Promise<void> {
    if (this.status === status) return;
    this.status = status;
    await this.switchboard.hostStatus({ hostId: this.#options.hostId, status });
    this.emit('status', { status });
  }

  /** Registers (first heartbeat), starts the loop, connects and identifies as host. */
  async start(stream?: MediaStream): Promise<IdentifiedFrame> {
    this.#stream = stream ?? null;
    this.#stopped = false;
    const first = await this.heartbeat();
    this.#timer = setInterval(() => {
      this.heartbeat().catch((error) => this.emit('error', { error, during: 'heartbeat' }));
    }, this.#options.heartbeatMs ?? 20_000);
    const signaling = new Signaling(this.#options.signalingUrl ?? first.signalingUrl, this.#options.signaling);
    this.signaling = signaling;
    signaling.on('handshake', (frame) => void this.#onHandshake(frame));
    signaling.on('clientDisconnect', ({ clientId }) => void this.#remove(clientId, 'clientDisconnect'));
    signaling.on('reconnecting', (e) => this.emit('reconnecting', e));
    signaling.on('reconnected', (ack) => this.emit('reconnected', ack));
    await signaling.connect();
    const ack = await signaling.identify({ id: this.peerId, type: 'host', roomId: this.#options.roomId, hostId: this.#options.hostId });
    this.emit('ready', ack);
    return ack;
  }

  async #onHandshake(frame: ForwardedHandshakeFrame): Promise<void> {
    const id = frame.sender;
    let viewer = this.viewers.get(id);
    if (!viewer) {
      if (!frame.description) {
        // A candidate may overtake its offer (frames are handled concurrently): keep it.
        let early = this.#early.get(id);
        if (!early) this.#early.set(id, (early = new EarlyQueue(64)));
        early.push(frame);
        return;
      }
      viewer = this.#accept(id);
    }
    try {
      await viewer.link.receive(frame);
      for (const early of this.#early.get(id)?.drain() ?? []) await viewer.link.receive(early);
      this.#early.delete(id);
    } catch (error) {
      this.emit('error', { error: error as Error, during: `negotiation with ${id}` });
    }
  }

  #accept(id: string): Viewer & { link: PeerLink } {
    const link = new PeerLink({
      signaling: this.signaling!,
      type: 'producer',
      receiver: id,
      config: { iceServers: this.iceServers, iceTransportPolicy: this.#options.iceTransportPolicy ?? 'all' },
    });
    const viewer = { id, pc: link.pc, channel: null as RTCDataChannel | null, link };
    this.viewers.set(id, viewer);
    if (this.#stream) for (const track of this.#stream.getTracks()) link.pc.addTrack(track, this.#stream);
    link.pc.addEventListener('datachannel', (e) => {
      viewer.channel = e.channel;
      this.emit('channel', { id, channel: e.channel });
      e.channel.addEventListener('message', (m) => this.emit('message', { id, data: m.data, channel: e.channel }));
    });
    link.pc.addEventListener('connectionstatechange', () => {
      if (['failed', 'closed'].includes(link.pc.connectionState)) void this.#remove(id, `connection ${link.pc.connectionState}`);
    });
    this.emit('viewer', viewer);
    if (this.#options.autoStatus !== false) this.setStatus('busy').catch((error) => this.emit('error', { error, during: 'status busy' }));
    return viewer;
  }

  async #remove(id: string, why: string): Promise<void> {
    const viewer = this.viewers.get(id);
    this.#early.delete(id);
    if (!viewer) return;
    this.viewers.delete(id);
    viewer.link.close();
    this.emit('viewerLeft', { id, why });
    if (this.viewers.size === 0 && this.#options.autoStatus !== false && !this.#stopped) {
      await this.setStatus('idle').catch((error) => this.emit('error', { error, during: 'status idle' }));
    }
  }

  /** Stops heartbeating, closes every viewer and the socket; the registration expires by its TTL. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#timer);
    for (const id of [...this.viewers.keys()]) void this.#remove(id, 'host stopped');
    this.signaling?.leave();
  }
}
