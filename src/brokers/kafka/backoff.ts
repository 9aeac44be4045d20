/**
 * The wait between attempts of a Kafka request that failed (open, Fetch, OffsetCommit): RETRY_MS
 * first, doubling up to RETRY_MAX_MS. A broker that is away for a while is asked about every 2 s.
 */
export const RETRY_MS = 50;
export const RETRY_MAX_MS = 2_000;

export function nextDelay(delay: number): number {
  return Math.min(RETRY_MAX_MS, delay * 2);
}

/** A wait that does not keep the process alive (a retry loop must not hold off its exit). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
