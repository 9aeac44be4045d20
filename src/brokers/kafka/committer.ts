/**
 * Commits the offsets of every partition this process reads for one consumer group with one
 * OffsetCommit (not one per partition): readers with something new to commit join the next
 * request; one request runs at a time, so commits reach the coordinator in order and a later
 * one never lands before an earlier one. A caller's promise resolves once a request that
 * includes its reader's state at the time of the call is written.
 */
import type { RawBroker, RawCluster } from './kafkajs-parts.js';

/** First wait after a failed commit; doubles up to RETRY_MAX_MS. */
const RETRY_MS = 50;
const RETRY_MAX_MS = 2_000;
/** Attempts before a commit fails its callers (the worker settles again later). */
const ATTEMPTS = 9;

/** What one partition would commit now: its lowest unfinished offset and the metadata of what is settled above it. */
export interface CommitSnapshot {
  partition: number;
  offset: number;
  metadata: string;
  /** The reader's store horizon the metadata carries (codec.ts). */
  horizon: number;
}

export interface Committable {
  readonly partition: number;
  /** The commit to write now, or undefined when nothing changed (or the reader may not commit any more). */
  snapshot(): CommitSnapshot | undefined;
  /** The snapshot was written. */
  committed(snapshot: CommitSnapshot): void;
}

export interface CommitterParts {
  cluster: RawCluster;
  kafkaTopic: string;
  kafkaGroup: string;
  failed(operation: string, error: unknown): void;
}

export class GroupCommitter {
  private dirty = new Set<Committable>();
  private running: Promise<void> | undefined;
  private next: Promise<void> | undefined;
  /** The group's coordinator, found once and again after a failure (FindCoordinator per commit doubled its cost). */
  private coordinator: RawBroker | undefined;

  constructor(private readonly parts: CommitterParts) {}

  /** Commits the reader's current state, with the other readers' pending ones. */
  commit(reader: Committable): Promise<void> {
    this.dirty.add(reader);
    if (this.running === undefined) return this.start();
    // Everyone arriving during a request shares the one after it.
    this.next ??= this.running
      .catch(() => undefined)
      .then(() => {
        this.next = undefined;
        return this.start();
      });
    return this.next;
  }

  private start(): Promise<void> {
    const run = this.write().finally(() => {
      this.running = undefined;
    });
    this.running = run;
    return run;
  }

  private async write(): Promise<void> {
    const readers = this.dirty;
    this.dirty = new Set();
    for (let delay = RETRY_MS, attempt = 1; ; delay = Math.min(RETRY_MAX_MS, delay * 2), attempt++) {
      // Taken again at every attempt: a retry writes the newest state, and a reader that lost
      // its lease meanwhile (it may not commit any more) is left out.
      const snapshots: Array<{ reader: Committable; snapshot: CommitSnapshot }> = [];
      for (const reader of readers) {
        const snapshot = reader.snapshot();
        if (snapshot !== undefined) snapshots.push({ reader, snapshot });
      }
      if (snapshots.length === 0) return;
      try {
        this.coordinator ??= await this.parts.cluster.findGroupCoordinator({ groupId: this.parts.kafkaGroup });
        await this.coordinator.offsetCommit({
          groupId: this.parts.kafkaGroup,
          groupGenerationId: -1,
          memberId: '',
          topics: [{ topic: this.parts.kafkaTopic, partitions: snapshots.map(({ snapshot }) => ({ partition: snapshot.partition, offset: String(snapshot.offset), metadata: snapshot.metadata })) }],
        });
        for (const { reader, snapshot } of snapshots) reader.committed(snapshot);
        return;
      } catch (error) {
        this.coordinator = undefined;
        if (attempt >= ATTEMPTS) throw error;
        this.parts.failed(`commit ${this.parts.kafkaTopic}[${snapshots.map((s) => s.snapshot.partition).join(',')}] for ${this.parts.kafkaGroup}`, error);
        await this.parts.cluster.refreshMetadata().catch(() => undefined);
        await sleep(delay);
      }
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
