// switchboard-client: what a web page (or a Node service) needs to use Switchboard.
export { Switchboard, type RoomOptions, type SwitchboardOptions } from './client.js';
export { SwitchboardError, SignalingError, errorFromResponse, parseRetryAfter } from './errors.js';
export { backoffDelay, type BackoffOptions } from './backoff.js';
export { EarlyQueue, SerialQueue } from './queue.js';
export { frameEvent, isOutboundFrame, isForwardedHandshake, type OutboundEvent } from './guards.js';
export { Emitter } from './events.js';
export { Signaling, type HandshakeData, type IdentifyData, type SignalingEvents, type SignalingOptions, type WebSocketLike } from './signaling.js';
export { PeerLink, type PeerLinkOptions } from './peer.js';
export { RoomCall, chatMessage, iceUfrag, isNewConnection, type ChatMessage, type RoomCallEvents, type RoomCallOptions } from './room.js';
export { HostSession, type HostSessionEvents, type HostSessionOptions, type Viewer } from './host.js';
export { ViewerConnection, watchHost, type ViewerEvents, type ViewerOptions } from './viewer.js';
export * from './generated.js';
