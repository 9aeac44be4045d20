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
  key: string;
  queue: Entry<T>[];
  head: number;
  running: boolean;
  /** The running entry, while `running`. */
  current: Entry<T> | undefined;
  /** Whether the running entry still holds its concurrency slot. */
  holdsSlot: boolean;
  /** Counts runs (across reuses of the state), so that a late `releaseSlot` of an earlier run does nothing. */
  runs: number;
  parked: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Set while the key sits in the ready queue, so it is queued once. */
  ready: boolean;
  /** The run's outcome handlers, made once per state rather than once per run. */
  onOutcome: (outcome: RunOutcome) => void;
  onCrash: (error: unknown) => void;
}

/** Key states kept for reuse: keys come and go all the time (a chat's burst), and a state carries two closures. */
const SPARE_STATES = 1024;

export class KeyedScheduler<T> {
  private readonly keys = new Map<string, KeyState<T>>();
  private readonly spareStates: Array<KeyState<T>> = [];
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
      state = this.spareStates.pop() ?? this.newState();
      state.key = key;
      this.keys.set(key, state);
    }
    state.queue.push({ item, notBefore });
    this.bufferedCount++;
    if (state.queue.length - state.head === 1) this.wake(state);
    this.pump();
  }

  /** Lets a parked key go on with its head (which may have been replaced with `push` order kept). */
  unpark(key: string): void {
    const state = this.keys.get(key);
    if (state === undefined || !state.parked) return;
    state.parked = false;
    if (state.queue.length - state.head === 0) {
      this.keys.delete(key);
      this.recycle(state);
      return;
    }
    this.wake(state);
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
      if (state.queue.length - state.head === 0 && !state.running) this.forget(state);
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
    if (state.queue.length - state.head === 0 && !state.running) this.forget(state);
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

  /** A fresh state, idle and empty; `key` is set by the caller. */
  private newState(): KeyState<T> {
    const state: KeyState<T> = {
      key: '',
      queue: [],
      head: 0,
      running: false,
      current: undefined,
      holdsSlot: false,
      runs: 0,
      parked: false,
      timer: undefined,
      ready: false,
      onOutcome: (outcome) => this.finish(state, outcome),
      onCrash: (error) => this.crashed(state, error),
    };
    return state;
  }

  /** Keeps an emptied, idle, forgotten state for a later key (its run counter goes on). */
  private recycle(state: KeyState<T>): void {
    if (this.spareStates.length >= SPARE_STATES) return;
    // pop, not `length = 0`, which would drop the backing store and make the next push allocate one.
    while (state.queue.length > 0) state.queue.pop();
    state.head = 0;
    state.parked = false;
    state.ready = false;
    this.spareStates.push(state);
  }

  private forget(state: KeyState<T>): void {
    if (state.timer !== undefined) {
      clearTimeout(state.timer);
      state.timer = undefined;
    }
    if (state.parked) return;
    this.keys.delete(state.key);
    this.recycle(state);
  }

  /** Puts the key in the ready queue, or sets a timer if its head is not due yet. */
  private wake(state: KeyState<T>): void {
    if (state.running || state.parked || state.ready || state.timer !== undefined) return;
    const head = state.queue[state.head];
    if (head === undefined) return;
    const wait = head.notBefore - this.opts.now();
    if (wait > 0) {
      state.timer = setTimeout(() => {
        state.timer = undefined;
        this.wake(state);
        this.pump();
      }, Math.min(wait, 2_147_000_000));
      return;
    }
    state.ready = true;
    this.readyKeys.push(state.key);
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
      this.start(state, head);
    }
  }

  /** Runs the key's head. Not an async function: a run costs one promise reaction, not an async frame and a closure set. */
  private start(state: KeyState<T>, entry: Entry<T>): void {
    state.running = true;
    state.current = entry;
    state.holdsSlot = true;
    const run = ++state.runs;
    this.runningCount++;
    this.heldCount++;
    let result: Promise<RunOutcome>;
    try {
      result = this.opts.run(entry.item, state.key, () => this.releaseSlot(state, run));
    } catch (error) {
      this.crashed(state, error);
      return;
    }
    // Promise.resolve: whatever `run` returned is awaited, as an `await` would.
    void Promise.resolve(result).then(state.onOutcome, state.onCrash);
  }

  private releaseSlot(state: KeyState<T>, run: number): void {
    if (state.runs !== run || !state.holdsSlot) return;
    state.holdsSlot = false;
    this.runningCount--;
    this.pump();
  }

  private crashed(state: KeyState<T>, error: unknown): void {
    try {
      this.opts.onRunError?.(error, state.current!.item, state.key);
    } catch {
      // A throwing error reporter must not jam the key or leak its slot.
    }
    this.finish(state, { kind: 'retry', at: this.opts.now() + this.opts.retryAfterCrashMs });
  }

  /** The running head is over: apply its outcome and go on with the key and the others. */
  private finish(state: KeyState<T>, outcome: RunOutcome): void {
    const entry = state.current!;
    state.current = undefined;
    state.running = false;
    this.heldCount--;
    if (state.holdsSlot) {
      state.holdsSlot = false;
      this.runningCount--;
    }
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
      this.forget(state);
    } else {
      this.wake(state);
    }
    if (this.heldCount === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
    this.pump();
  }
}
