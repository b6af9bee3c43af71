/** How long to wait before reconnect attempt `attempt` (1, 2, …). */
export interface BackoffOptions {
  /** The first delay (ms). Default 250. */
  baseMs?: number;
  /** The longest delay (ms). Default 10 000. */
  maxMs?: number;
  /** Part of each delay drawn at random, 0–1 (so many clients do not retry in step). Default 0.2. */
  jitter?: number;
}

/** Exponential backoff with a cap and jitter: base·2^(attempt−1), at most `maxMs`, minus up to `jitter` of it. */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const base = options.baseMs ?? 250;
  const max = options.maxMs ?? 10_000;
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0.2));
  const exponent = Math.max(0, Math.floor(attempt) - 1);
  const full = Math.min(max, base * 2 ** Math.min(exponent, 30));
  return Math.round(full * (1 - jitter * random()));
}
