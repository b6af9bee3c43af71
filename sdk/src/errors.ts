/** Why a call failed, as the HTTP API (or the network) said it. */
export class SwitchboardError extends Error {
  override readonly name: string = 'SwitchboardError';
  /** The HTTP status (0: no answer reached us). */
  readonly status: number;
  /** Seconds to wait before retrying (`Retry-After`, on 503 and 420 answers). */
  readonly retryAfter?: number;
  /** `METHOD /route` that failed. */
  readonly route: string;
  /** The answer's JSON body, when it had one. */
  readonly body?: unknown;

  constructor(init: { status: number; message: string; route: string; retryAfter?: number; body?: unknown; cause?: unknown }) {
    super(init.message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.route = init.route;
    if (init.retryAfter !== undefined) this.retryAfter = init.retryAfter;
    if (init.body !== undefined) this.body = init.body;
  }

  /** The service is unavailable for now (503, or 420 for no capacity): retry after `retryAfter`. */
  get retryable(): boolean {
    return this.status === 503 || this.status === 420 || this.status === 0;
  }
}

/** A refused frame on the signaling socket (an `error` frame, or no answer in time). */
export class SignalingError extends Error {
  override readonly name: string = 'SignalingError';
  /** The frame's status (0: no answer in time, or the socket closed). */
  readonly status: number;
  /** The action refused (`identify`, `handshake`, `disconnect`, `default`). */
  readonly action: string;

  constructor(action: string, status: number, message: string) {
    super(message);
    this.action = action;
    this.status = status;
  }
}

/** `Retry-After` as seconds (a number of seconds or an HTTP date); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined, now = Date.now()): number | undefined {
  if (value == null || value.trim() === '') return undefined;
  const trimmed = value.trim();
  if (/^\d+$/.test(trimmed)) return Number(trimmed);
  const at = Date.parse(trimmed);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - now) / 1000));
}

/** The error for a non-2xx answer: its status, the body's `message` (else the status line), `Retry-After`. */
export function errorFromResponse(route: string, status: number, body: unknown, retryAfterHeader?: string | null): SwitchboardError {
  const message =
    body && typeof body === 'object' && typeof (body as { message?: unknown }).message === 'string' && (body as { message: string }).message
      ? (body as { message: string }).message
      : `${route} answered ${status}`;
  const retryAfter = parseRetryAfter(retryAfterHeader);
  return new SwitchboardError({ status, message, route, body, ...(retryAfter === undefined ? {} : { retryAfter }) });
}
