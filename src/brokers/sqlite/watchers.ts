import { ErrorCodes } from '../../core/errors.js';

type Listener = (partition: number) => void;

/** How often `PRAGMA data_version` is read while someone watches, in ms. */
export const WATCH_POLL_MS = 5;

/**
 * Tells watchers that new messages may be there. Commits of this connection are reported
 * with their partitions after COMMIT (never inside the publish call). Commits of other
 * connections (other processes) are noticed through `PRAGMA data_version`, which changes
 * whenever another connection commits: a cheap read, polled only while there are watchers,
 * on an unref'd timer; they are reported with partition -1.
 */
export class Watchers {
  private readonly byTopic = new Map<string, Set<Listener>>();
  private count = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastVersion = 0;
  private closed = false;

  constructor(private readonly readDataVersion: () => number) {}

  has(topic: string): boolean {
    return this.byTopic.has(topic);
  }

  add(topic: string, listener: Listener): () => void {
    if (this.closed) return () => undefined;
    // Wrapped so the same function may watch twice and each unsubscribe removes its own.
    const entry: Listener = (partition) => listener(partition);
    let set = this.byTopic.get(topic);
    if (set === undefined) {
      set = new Set();
      this.byTopic.set(topic, set);
    }
    set.add(entry);
    this.count++;
    if (this.count === 1) this.startPolling();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      const current = this.byTopic.get(topic);
      if (current?.delete(entry) !== true) return;
      if (current.size === 0) this.byTopic.delete(topic);
      this.count--;
      if (this.count === 0) this.stopPolling();
    };
  }

  /** Reports committed (topic, partition) pairs on a later turn of the event loop. */
  dispatch(notes: (string | number)[]): void {
    const changed = new Map<string, Set<number>>();
    for (let i = 0; i < notes.length; i += 2) {
      const topic = notes[i] as string;
      let partitions = changed.get(topic);
      if (partitions === undefined) {
        partitions = new Set();
        changed.set(topic, partitions);
      }
      partitions.add(notes[i + 1] as number);
    }
    setImmediate(() => {
      for (const [topic, partitions] of changed) {
        for (const partition of partitions) this.call(topic, partition);
      }
    });
  }

  close(): void {
    this.closed = true;
    this.stopPolling();
    this.byTopic.clear();
    this.count = 0;
  }

  private call(topic: string, partition: number): void {
    const set = this.byTopic.get(topic);
    if (set === undefined) return;
    for (const listener of set) {
      try {
        listener(partition);
      } catch (error) {
        process.emitWarning(error instanceof Error ? error : String(error), { code: ErrorCodes.WATCH_LISTENER });
      }
    }
  }

  private startPolling(): void {
    try {
      this.lastVersion = this.readDataVersion();
    } catch {
      return;
    }
    this.timer = setInterval(this.poll, WATCH_POLL_MS);
    this.timer.unref();
  }

  private stopPolling(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly poll = (): void => {
    let version: number;
    try {
      version = this.readDataVersion();
    } catch {
      return; // closing, or the file is briefly busy: the next tick tries again
    }
    if (version === this.lastVersion) return;
    this.lastVersion = version;
    for (const topic of [...this.byTopic.keys()]) this.call(topic, -1);
  };
}
