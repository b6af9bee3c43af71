import { errorFromResponse, SwitchboardError } from './errors.js';
import type {
  AvailableLocationsResponse,
  ClaimRoomResponse,
  CreateRoomResponse,
  CreateSessionRequest,
  CreateSessionResponse,
  DeleteRoomResponse,
  DeleteSessionResponse,
  FindMatchResponse,
  GetRoomIdResponse,
  GetSessionResponse,
  HeartbeatRequest,
  HeartbeatResponse,
  HostStatusRequest,
  HostStatusResponse,
  JoinPlayersRequest,
  JoinPlayersResponse,
  ListSessionsResponse,
  RemovePlayersRequest,
  RemovePlayersResponse,
  RoomAnswer,
} from './generated.js';

export interface SwitchboardOptions {
  /** The HTTP API's base URL (`http://127.0.0.1:3000`, or the stack output `HttpApiUrl`). */
  apiUrl: string;
  /** For createRoom, DELETE /rooms and the sessions API: server-side only, never in a page. */
  operatorKey?: string;
  /** For heartbeat and status (a matchmaking host). */
  hostKey?: string;
  /** Another fetch (tests, older runtimes). */
  fetch?: typeof fetch;
}

export interface RoomOptions {
  /** How long to keep asking claimRoom while it answers 404 (no warm room yet), in ms. Default 0. */
  waitMs?: number;
  /** Between two claimRoom attempts, in ms. Default 500. */
  retryMs?: number;
}

type Auth = 'operator' | 'host' | undefined;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The HTTP API. Every method resolves with the answer's body or rejects with a
 * `SwitchboardError` carrying the status, the message and, for a 503, `retryAfter`.
 */
export class Switchboard {
  readonly apiUrl: string;
  #operatorKey: string | undefined;
  #hostKey: string | undefined;
  #fetch: typeof fetch;

  constructor(options: SwitchboardOptions) {
    if (!options?.apiUrl) throw new TypeError('Switchboard needs { apiUrl }');
    this.apiUrl = options.apiUrl.replace(/\/+$/, '');
    this.#operatorKey = options.operatorKey;
    this.#hostKey = options.hostKey;
    this.#fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  }

  /** One call; `route` is the path with its query. */
  async request<T>(method: string, route: string, { body, auth }: { body?: unknown; auth?: Auth } = {}): Promise<T> {
    const name = `${method} ${route.split('?')[0]}`;
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    const key = auth === 'operator' ? this.#operatorKey : auth === 'host' ? this.#hostKey : undefined;
    if (auth && !key) throw new SwitchboardError({ status: 401, message: `${name} needs the ${auth} key (new Switchboard({ ${auth}Key }))`, route: name });
    if (key) headers.authorization = `Bearer ${key}`;
    let response: Response;
    try {
      response = await this.#fetch(this.apiUrl + route, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (cause) {
      throw new SwitchboardError({ status: 0, message: `${name}: no answer from ${this.apiUrl} (${(cause as Error)?.message ?? cause})`, route: name, cause });
    }
    const text = await response.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = undefined;
    }
    if (!response.ok) throw errorFromResponse(name, response.status, json ?? (text ? { message: text } : undefined), response.headers.get('retry-after'));
    return json as T;
  }

  // ---- rooms (Arbiter)

  /** The room of `urlPath` (GET /getRoomId). */
  getRoomId(urlPath: string): Promise<GetRoomIdResponse> {
    return this.request('GET', `/getRoomId?urlPath=${encodeURIComponent(urlPath)}`);
  }

  /** Claims a warm room for `urlPath`, or gets the one it has (PATCH /claimRoom). */
  claimRoom(urlPath: string): Promise<ClaimRoomResponse> {
    return this.request('PATCH', '/claimRoom', { body: { urlPath } });
  }

  /**
   * The room that belongs to `urlPath`: getRoomId, and when there is none, claimRoom (asked
   * again on 404 for `waitMs`, while a room just created warms up).
   */
  async room(urlPath: string, { waitMs = 0, retryMs = 500 }: RoomOptions = {}): Promise<RoomAnswer & { claimed: boolean }> {
    try {
      return { ...(await this.getRoomId(urlPath)), claimed: false };
    } catch (e) {
      if (!(e instanceof SwitchboardError) || e.status !== 404) throw e;
    }
    const deadline = Date.now() + waitMs;
    for (;;) {
      try {
        return { ...(await this.claimRoom(urlPath)), claimed: true };
      } catch (e) {
        if (!(e instanceof SwitchboardError) || e.status !== 404 || Date.now() + retryMs > deadline) throw e;
      }
      await sleep(retryMs);
    }
  }

  /** Starts a room's SFU (operator key). */
  createRoom(): Promise<CreateRoomResponse> {
    return this.request('PUT', '/createRoom', { body: {}, auth: 'operator' });
  }

  /** Ends a room (operator key). */
  deleteRoom(roomId: string): Promise<DeleteRoomResponse> {
    return this.request('DELETE', `/rooms/${encodeURIComponent(roomId)}`, { auth: 'operator' });
  }

  // ---- matchmaking

  /** Reserves an idle host (of `region`, else any) and gets its room, signaling URL and ICE servers; 404 when none. */
  findMatch(region?: string): Promise<FindMatchResponse> {
    return this.request('POST', '/api/find-match', { body: region ? { region } : {} });
  }

  /** A host's heartbeat (host key). */
  heartbeat(body: HeartbeatRequest): Promise<HeartbeatResponse> {
    return this.request('POST', '/api/host/heartbeat', { body, auth: 'host' });
  }

  /** A host reports busy or idle (host key). */
  hostStatus(body: HostStatusRequest): Promise<HostStatusResponse> {
    return this.request('POST', '/api/host/status', { body, auth: 'host' });
  }

  // ---- sessions (Gameye-compatible; operator key, server-side)

  availableLocations(image: string): Promise<AvailableLocationsResponse> {
    return this.request('GET', `/available-location/${encodeURIComponent(image)}`, { auth: 'operator' });
  }

  createSession(body: CreateSessionRequest): Promise<CreateSessionResponse> {
    return this.request('POST', '/session', { body, auth: 'operator' });
  }

  listSessions(): Promise<ListSessionsResponse> {
    return this.request('GET', '/session', { auth: 'operator' });
  }

  getSession(id: string): Promise<GetSessionResponse> {
    return this.request('GET', `/session/${encodeURIComponent(id)}`, { auth: 'operator' });
  }

  deleteSession(id: string): Promise<DeleteSessionResponse> {
    return this.request('DELETE', `/session/${encodeURIComponent(id)}`, { auth: 'operator' });
  }

  joinPlayers(body: JoinPlayersRequest): Promise<JoinPlayersResponse> {
    return this.request('PUT', '/session/player/join', { body, auth: 'operator' });
  }

  removePlayers(body: RemovePlayersRequest): Promise<RemovePlayersResponse> {
    return this.request('DELETE', '/session/player/leave', { body, auth: 'operator' });
  }
}
