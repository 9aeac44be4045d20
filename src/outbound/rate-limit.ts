/**
 * The sender's limiters: "at most `limit` sends in any `windowMs`", kept as the times of the
 * last `limit` sends (a sliding-window log). Stricter than a token bucket of the same rate, which
 * lets a full bucket plus its refill through in one window: a platform that counts per second
 * sees at most `limit` in every one-second window. One limiter per chat, per group chat and
 * per platform (global), all in this process's memory: two sender processes of one platform
 * share nothing, so run one (botqueue start runs one).
 */
export interface RateLimit {
  limit: number;
  windowMs: number;
}

export class SlidingWindow {
  /**
   * Send times, oldest first. A send still in flight counts as Infinity (it holds its place)
   * until it is answered, and then as the time of its answer: the platform saw it between
   * the two, so counting from the answer means the next window can never overlap it, however
   * long the request took to arrive.
   */
  private readonly sent: number[] = [];
  /** A 429 asked to wait until then. */
  private blockedUntil = 0;

  constructor(readonly rate: RateLimit) {}

  /** Ms to wait before a send is allowed (0: now). */
  waitMs(now: number): number {
    this.expire(now);
    const block = Math.max(0, this.blockedUntil - now);
    if (this.sent.length < this.rate.limit) return block;
    const oldest = this.sent[0]!;
    // Every place is held by a send in flight: look again soon (one will be answered).
    return Math.max(block, oldest === Infinity ? IN_FLIGHT_POLL_MS : oldest + this.rate.windowMs - now);
  }

  /** Counts a send that starts now; call `answered` when its answer (or failure) arrives. */
  take(): void {
    this.sent.push(Infinity);
  }

  /** A send taken earlier was answered at `now`: it counts from then. */
  answered(now: number): void {
    const at = this.sent.indexOf(Infinity);
    if (at < 0) return;
    this.sent.splice(at, 1);
    let i = this.sent.length;
    while (i > 0 && this.sent[i - 1]! > now) i--;
    this.sent.splice(i, 0, now);
  }

  /** The platform said to wait (429 retry_after). */
  block(until: number): void {
    this.blockedUntil = Math.max(this.blockedUntil, until);
  }

  /** True when it holds nothing that could delay a send (it can be forgotten). */
  idle(now: number): boolean {
    this.expire(now);
    return this.blockedUntil <= now && this.sent.length === 0;
  }

  private expire(now: number): void {
    let n = 0;
    while (n < this.sent.length && this.sent[n]! <= now - this.rate.windowMs) n++;
    if (n > 0) this.sent.splice(0, n);
  }
}

/** How soon a limiter whose places are all in flight is asked again. */
const IN_FLIGHT_POLL_MS = 10;

/** Limiters by name (`chat:42`, `group:-100…`, `global`), created on first use and forgotten when idle. */
export class Limiters {
  private readonly windows = new Map<string, SlidingWindow>();
  private lastSweep = 0;

  /** Ms until every named limiter allows a send; 0 when all do. */
  waitMs(names: readonly (readonly [string, RateLimit])[], now: number): number {
    let wait = 0;
    for (const [name, rate] of names) wait = Math.max(wait, this.get(name, rate).waitMs(now));
    return wait;
  }

  /**
   * Counts a send against every named limiter (call right after waitMs returned 0, with no
   * await between); call the returned function when the send is answered or failed.
   */
  take(names: readonly (readonly [string, RateLimit])[], now: number): () => void {
    const windows = names.map(([name, rate]) => this.get(name, rate));
    for (const window of windows) window.take();
    this.sweep(now);
    return () => {
      const at = Date.now();
      for (const window of windows) window.answered(at);
    };
  }

  block(name: string, rate: RateLimit, until: number): void {
    this.get(name, rate).block(until);
  }

  get size(): number {
    return this.windows.size;
  }

  private get(name: string, rate: RateLimit): SlidingWindow {
    let window = this.windows.get(name);
    if (window === undefined) {
      window = new SlidingWindow(rate);
      this.windows.set(name, window);
    }
    return window;
  }

  /** Forgets idle limiters now and then, so memory follows the chats active in the last window. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 10_000) return;
    this.lastSweep = now;
    for (const [name, window] of this.windows) if (window.idle(now)) this.windows.delete(name);
  }
}
