/**
 * Runs items one at a time per key, in the order they were pushed, and up to `concurrency`
 * items at once across keys. A key whose head must wait (a retry's backoff, a delayed
 * message) or is parked holds only that key: other keys go on.
 *
 * The scheduler knows nothing about brokers; the worker feeds it and settles what it runs.
 */
export type RunOutcome =
  /** The head is finished: remove it and go on with the key's next item. */
  | { kind: 'done' }
  /** Keep the head and run it again, not before `at` (epoch ms). */
  | { kind: 'retry'; at: number }
  /** Keep the head and hold the key until `unpark(key)`. */
  | { kind: 'park' }
  /** Remove the head and hold the key until `unpark(key)` (its next items wait). */
  | { kind: 'done-and-park' };

export interface KeyedSchedulerOptions<T> {
  concurrency: number;
  /**
   * Runs one item. `releaseSlot` may be called once the expensive part is over (a handler
   * returned, its settlement is being written): the concurrency slot goes to another key
   * while this key stays held until the returned promise settles.
   */
  run: (item: T, key: string, releaseSlot: () => void) => Promise<RunOutcome>;
  /** Called when `run` itself throws; the item is then retried after `retryAfterCrashMs`. */
  onRunError?: (error: unknown, item: T, key: string) => void;
  retryAfterCrashMs?: number;
  now?: () => number;
}

interface Entry<T> {
  item: T;
  notBefore: number;
}

interface KeyState<T> {
  queue: Entry<T>[];
  head: number;
  running: boolean;
  parked: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Set while the key sits in the ready queue, so it is queued once. */
  ready: boolean;
}

export class KeyedScheduler<T> {
  private readonly keys = new Map<string, KeyState<T>>();
  private readonly readyKeys: string[] = [];
  private readyHead = 0;
  private runningCount = 0;
  /** Keys whose head is running, slot released or not. */
  private heldCount = 0;
  private bufferedCount = 0;
  private paused = false;
  private idleWaiters: Array<() => void> = [];
  private readonly opts: Required<Omit<KeyedSchedulerOptions<T>, 'onRunError'>> & Pick<KeyedSchedulerOptions<T>, 'onRunError'>;

  constructor(options: KeyedSchedulerOptions<T>) {
    if (!Number.isInteger(options.concurrency) || options.concurrency < 1) {
      throw new RangeError(`concurrency must be a positive integer, got ${options.concurrency}`);
    }
    this.opts = { retryAfterCrashMs: 1_000, now: Date.now, ...options };
  }

  /** Items held, running ones included. */
  get size(): number {
    return this.bufferedCount;
  }

  get running(): number {
    return this.runningCount;
  }

  /** Items held for `key`, its running head included. */
  keyLength(key: string): number {
    const state = this.keys.get(key);
    return state === undefined ? 0 : state.queue.length - state.head;
  }

  isParked(key: string): boolean {
    return this.keys.get(key)?.parked ?? false;
  }

  hasKey(key: string): boolean {
    return this.keys.has(key);
  }

  /** Appends `item` to the key's queue; it runs after every earlier item of the key. */
  push(key: string, item: T, notBefore = 0): void {
    let state = this.keys.get(key);
    if (state === undefined) {
      state = { queue: [], head: 0, running: false, parked: false, timer: undefined, ready: false };
      this.keys.set(key, state);
    }
    state.queue.push({ item, notBefore });
    this.bufferedCount++;
    if (state.queue.length - state.head === 1) this.wake(key, state);
    this.pump();
  }

  /** Lets a parked key go on with its head (which may have been replaced with `push` order kept). */
  unpark(key: string): void {
    const state = this.keys.get(key);
    if (state === undefined || !state.parked) return;
    state.parked = false;
    if (state.queue.length - state.head === 0) {
      this.keys.delete(key);
      return;
    }
    this.wake(key, state);
    this.pump();
  }

  /**
   * Removes every waiting (not running) item for which `predicate` holds, from all keys or the
   * given ones. Only whole key tails are removed, so per-key order stays intact: from the first
   * matching waiting item of a key, all later items of that key are dropped too.
   */
  drop(predicate: (item: T, key: string) => boolean): T[] {
    const dropped: T[] = [];
    for (const [key, state] of this.keys) {
      const from = state.running ? state.head + 1 : state.head;
      let cut = -1;
      for (let i = from; i < state.queue.length; i++) {
        if (predicate(state.queue[i]!.item, key)) {
          cut = i;
          break;
        }
      }
      if (cut === -1) continue;
      for (let i = cut; i < state.queue.length; i++) dropped.push(state.queue[i]!.item);
      this.bufferedCount -= state.queue.length - cut;
      state.queue.length = cut;
      if (state.queue.length - state.head === 0 && !state.running) this.forget(key, state);
    }
    return dropped;
  }

  /**
   * Keeps the first `keep` items of `key` (a running head counts) and removes the rest, which
   * are returned in order. Used to bound what a waiting key holds in memory.
   */
  trimKey(key: string, keep: number): T[] {
    if (!Number.isInteger(keep) || keep < 0) throw new RangeError(`keep must be a non-negative integer, got ${keep}`);
    const state = this.keys.get(key);
    if (state === undefined) return [];
    const cut = Math.max(state.head + Math.max(keep, state.running ? 1 : 0), state.head);
    if (cut >= state.queue.length) return [];
    const dropped = state.queue.slice(cut).map((entry) => entry.item);
    this.bufferedCount -= state.queue.length - cut;
    state.queue.length = cut;
    if (state.queue.length - state.head === 0 && !state.running) this.forget(key, state);
    return dropped;
  }

  /** Stops starting new items; running ones finish. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    this.pump();
  }

  /** Resolves when no item is running (including items that released their slot). */
  whenIdle(): Promise<void> {
    if (this.heldCount === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Drops everything that is not running and cancels timers. */
  clear(): T[] {
    return this.drop(() => true);
  }

  private forget(key: string, state: KeyState<T>): void {
    if (state.timer !== undefined) clearTimeout(state.timer);
    if (!state.parked) this.keys.delete(key);
  }

  /** Puts the key in the ready queue, or sets a timer if its head is not due yet. */
  private wake(key: string, state: KeyState<T>): void {
    if (state.running || state.parked || state.ready || state.timer !== undefined) return;
    const head = state.queue[state.head];
    if (head === undefined) return;
    const wait = head.notBefore - this.opts.now();
    if (wait > 0) {
      state.timer = setTimeout(() => {
        state.timer = undefined;
        this.wake(key, state);
        this.pump();
      }, Math.min(wait, 2_147_000_000));
      return;
    }
    state.ready = true;
    this.readyKeys.push(key);
  }

  private pump(): void {
    while (!this.paused && this.runningCount < this.opts.concurrency && this.readyHead < this.readyKeys.length) {
      const key = this.readyKeys[this.readyHead++]!;
      if (this.readyHead > 1024 && this.readyHead * 2 > this.readyKeys.length) {
        this.readyKeys.splice(0, this.readyHead);
        this.readyHead = 0;
      }
      const state = this.keys.get(key);
      if (state === undefined || !state.ready) continue;
      state.ready = false;
      const head = state.queue[state.head];
      if (head === undefined || state.parked || state.running) continue;
      state.running = true;
      this.runningCount++;
      this.heldCount++;
      void this.execute(key, state, head);
    }
  }

  private async execute(key: string, state: KeyState<T>, entry: Entry<T>): Promise<void> {
    let holdsSlot = true;
    const releaseSlot = (): void => {
      if (!holdsSlot) return;
      holdsSlot = false;
      this.runningCount--;
      this.pump();
    };
    let outcome: RunOutcome;
    try {
      outcome = await this.opts.run(entry.item, key, releaseSlot);
    } catch (error) {
      try {
        this.opts.onRunError?.(error, entry.item, key);
      } catch {
        // A throwing error reporter must not jam the key or leak its slot.
      }
      outcome = { kind: 'retry', at: this.opts.now() + this.opts.retryAfterCrashMs };
    }
    state.running = false;
    this.heldCount--;
    if (holdsSlot) this.runningCount--;
    switch (outcome.kind) {
      case 'done':
      case 'done-and-park':
        // The head may already have been dropped by a partition revocation; only pop it if it is
        // still the same entry.
        if (state.queue[state.head] === entry) {
          state.head++;
          this.bufferedCount--;
        }
        if (outcome.kind === 'done-and-park') state.parked = true;
        break;
      case 'retry':
        entry.notBefore = outcome.at;
        break;
      case 'park':
        state.parked = true;
        break;
    }
    if (state.head > 64 && state.head * 2 > state.queue.length) {
      state.queue.splice(0, state.head);
      state.head = 0;
    }
    if (state.queue.length - state.head === 0) {
      this.forget(key, state);
    } else {
      this.wake(key, state);
    }
    if (this.heldCount === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    this.pump();
  }
}
