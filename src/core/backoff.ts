/**
 * Exponential backoff with "full jitter" (AWS architecture blog, "Exponential Backoff And
 * Jitter"): the delay before retry n is uniform in [0, min(cap, base * 2^(n-1))]. Full jitter
 * spreads retries of many failing messages instead of synchronising them.
 */
export interface BackoffOptions {
  /** Delay scale of the first retry, in ms. */
  baseMs: number;
  /** Upper bound of any delay, in ms. */
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, capMs: 60_000 };

/** The ceiling of the jittered delay before retry number `attempt` (1 = first retry). */
export function backoffCeiling(attempt: number, options: BackoffOptions): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 52);
  return Math.min(options.capMs, options.baseMs * 2 ** exponent);
}

/** A delay drawn with full jitter; `random` is injectable so tests can pin it. */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  return Math.floor(random() * backoffCeiling(attempt, options));
}
