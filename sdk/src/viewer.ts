import { Switchboard } from './client.js';
import { Emitter } from './events.js';
import type { FindMatchResponse, IdentifiedFrame } from './generated.js';
import { PeerLink } from './peer.js';
import { Signaling, type SignalingOptions } from './signaling.js';

export interface ViewerOptions {
  /** A client of the HTTP API, or its URL. */
  switchboard: Switchboard | string;
  /** Only hosts of this region (default: any). */
  region?: string;
  /** This viewer's peer id. Default: a random `viewer-…`. */
  peerId?: string;
  iceTransportPolicy?: RTCIceTransportPolicy;
  /** Receive the host's video (a recvonly transceiver). Default true. */
  video?: boolean;
  /** Receive the host's audio. Default false. */
  audio?: boolean;
  /** Open a data channel of this label to the host (null: none). Default `chat`. */
  channel?: string | null;
  signaling?: SignalingOptions;
}

export interface ViewerEvents {
  match: FindMatchResponse;
  identified: IdentifiedFrame;
  track: { track: MediaStreamTrack; streams: readonly MediaStream[] };
  channelOpen: { channel: RTCDataChannel };
  message: { data: unknown };
  /** The host left the room. */
  hostLeft: { sfuId: string };
  error: { error: Error; during: string };
}

/**
 * A matchmaking viewer: find-match (rejects with a `SwitchboardError`, status 404, when no host
 * is free), then joins the host's room and offers to it with the match's ICE servers.
 */
export class ViewerConnection extends Emitter<ViewerEvents> {
  readonly switchboard: Switchboard;
  readonly peerId: string;
  match: FindMatchResponse | null = null;
  signaling: Signaling | null = null;
  link: PeerLink | null = null;
  channel: RTCDataChannel | null = null;
  #options: ViewerOptions;

  constructor(options: ViewerOptions) {
    super();
    this.#options = options;
    this.switchboard = typeof options.switchboard === 'string' ? new Switchboard({ apiUrl: options.switchboard }) : options.switchboard;
    this.peerId = options.peerId ?? `viewer-${Math.random().toString(16).slice(2, 10)}`;
  }

  get pc(): RTCPeerConnection | null {
    return this.link?.pc ?? null;
  }

  /** find-match, connect, identify, offer. Resolves once the offer is sent. */
  async connect(): Promise<FindMatchResponse> {
    const match = await this.switchboard.findMatch(this.#options.region);
    this.match = match;
    this.emit('match', match);
    const signaling = new Signaling(match.signalingUrl, this.#options.signaling);
    this.signaling = signaling;
    signaling.on('handshake', (frame) => {
      this.link?.receive(frame).catch((error) => this.emit('error', { error, during: 'negotiation' }));
    });
    signaling.on('sfuDisconnect', ({ sfuId }) => {
      this.emit('hostLeft', { sfuId });
      this.leave();
    });
    await signaling.connect();
    const ack = await signaling.identify({ id: this.peerId, type: 'client', roomId: match.roomId });
    this.emit('identified', ack);
    const link = new PeerLink({
      signaling,
      type: 'consumer',
      config: { iceServers: match.iceServers as RTCIceServer[], iceTransportPolicy: this.#options.iceTransportPolicy ?? 'all' },
    });
    this.link = link;
    if (this.#options.video !== false) link.pc.addTransceiver('video', { direction: 'recvonly' });
    if (this.#options.audio) link.pc.addTransceiver('audio', { direction: 'recvonly' });
    link.pc.addEventListener('track', (e) => this.emit('track', { track: e.track, streams: e.streams }));
    const label = this.#options.channel === undefined ? 'chat' : this.#options.channel;
    if (label) {
      const channel = link.pc.createDataChannel(label);
      this.channel = channel;
      channel.addEventListener('open', () => this.emit('channelOpen', { channel }));
      channel.addEventListener('message', (m) => this.emit('message', { data: m.data }));
    }
    await link.offer();
    return match;
  }

  /** Sends on the data channel; false when it is not open. */
  send(data: string): boolean {
    if (this.channel?.readyState !== 'open') return false;
    this.channel.send(data);
    return true;
  }

  leave(): void {
    this.link?.close();
    this.link = null;
    this.signaling?.leave();
    this.signaling = null;
  }
}

/** find-match and connect in one call: `const viewer = await watchHost({ switchboard, region })`. */
export async function watchHost(options: ViewerOptions): Promise<ViewerConnection> {
  const viewer = new ViewerConnection(options);
  await viewer.connect();
  return viewer;
}
