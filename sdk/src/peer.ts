import type { ForwardedHandshakeFrame } from './generated.js';
import { EarlyQueue, SerialQueue } from './queue.js';
import type { HandshakeData, Signaling } from './signaling.js';

export interface PeerLinkOptions {
  signaling: Signaling;
  /** The handshake type this link sends: `producer` or `consumer`. */
  type: 'producer' | 'consumer';
  /** The peer to send to; none: the room's serving peer (SFU or host). */
  receiver?: string;
  /** Fields sent in every handshake of this link (a consumer's `remotePeerId`). */
  fields?: Partial<HandshakeData>;
  config?: RTCConfiguration;
}

/**
 * One RTCPeerConnection negotiated over the signaling socket, with trickle ICE: our candidates
 * go out as they are found; theirs that come before the remote description are kept, in order,
 * and added right after it. Frames are handled one at a time, in the order they came.
 */
export class PeerLink {
  readonly pc: RTCPeerConnection;
  readonly type: 'producer' | 'consumer';
  readonly receiver: string | undefined;
  #signaling: Signaling;
  #fields: Partial<HandshakeData>;
  #early = new EarlyQueue<RTCIceCandidateInit>();
  #serial = new SerialQueue();
  /** Candidates the browser refused (malformed, or for a closed connection). */
  readonly refusedCandidates: string[] = [];

  constructor({ signaling, type, receiver, fields = {}, config }: PeerLinkOptions) {
    this.#signaling = signaling;
    this.type = type;
    this.receiver = receiver;
    this.#fields = fields;
    this.pc = new RTCPeerConnection(config);
    this.pc.addEventListener('icecandidate', (e) => {
      if (e.candidate) this.#send({ candidate: e.candidate.toJSON() });
    });
  }

  #send(extra: Partial<HandshakeData>): void {
    const data: HandshakeData = { type: this.type, ...this.#fields, ...extra };
    if (this.receiver) data.receiver = this.receiver;
    this.#signaling.handshake(data);
  }

  /** Creates and sends the offer; `extra` rides along in that handshake (e.g. `roomId`). */
  offer(extra: Partial<HandshakeData> = {}): Promise<RTCSessionDescriptionInit> {
    return this.#serial.run(async () => {
      await this.pc.setLocalDescription(await this.pc.createOffer());
      const description = this.pc.localDescription!.toJSON() as RTCSessionDescriptionInit;
      this.#send({ description: description as unknown as Record<string, unknown>, ...extra });
      return description;
    });
  }

  /** Handles a relayed handshake: an offer (answered), an answer, or a candidate. */
  receive(frame: ForwardedHandshakeFrame | HandshakeData): Promise<void> {
    return this.#serial.run(async () => {
      if (this.pc.signalingState === 'closed') return;
      const description = frame.description as RTCSessionDescriptionInit | undefined;
      if (description) {
        await this.pc.setRemoteDescription(description);
        for (const candidate of this.#early.drain()) await this.#add(candidate);
        if (description.type === 'offer') {
          await this.pc.setLocalDescription(await this.pc.createAnswer());
          this.#send({ description: this.pc.localDescription!.toJSON() as unknown as Record<string, unknown> });
        }
      } else if (frame.candidate !== undefined && frame.candidate !== null) {
        const candidate = frame.candidate as RTCIceCandidateInit;
        if (!this.pc.remoteDescription) this.#early.push(candidate);
        else await this.#add(candidate);
      }
    });
  }

  async #add(candidate: RTCIceCandidateInit): Promise<void> {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch (e) {
      this.refusedCandidates.push(`${(e as Error).message}`);
    }
  }

  close(): void {
    this.pc.close();
  }
}
