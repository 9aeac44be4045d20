/**
 * Commits the offsets of every partition this process reads for one consumer group with one
 * OffsetCommit (not one per partition): the readers that settled something in the same turn
 * go out together at the end of the turn. One request is in flight at a time; what settles
 * meanwhile goes out together in the next. (Requests sent without waiting for the one before
 * could reach the broker out of the order their snapshots were taken in: each looked up the
 * coordinator first when it was not known, and those lookups answer in any order. An older
 * snapshot written last moved the group's offset back, and the partition's next owner replayed
 * messages already handled: "k9: 0..18 after 19" in two CI runs of the handover test.) A
 * caller's promise resolves once a request that includes its reader's state at the time of the
 * call is written.
 */
import type { RawBroker, RawCluster } from './kafkajs-parts.js';
import { RETRY_MS, nextDelay, sleep } from './backoff.js';

/** Attempts before a commit fails its callers (the worker settles again later). */
const ATTEMPTS = 9;

/** What one partition would commit now: its lowest unfinished offset and the metadata of what is settled above it. */
export interface CommitSnapshot {
  partition: number;
  offset: number;
  metadata: string;
  /** The reader's store horizon the metadata carries (codec.ts). */
  horizon: number;
  /** Numbers the reader's snapshots in the order taken. */
  taken: number;
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
  /** The request that collects commits arriving now; it starts once `tail` is done. */
  private next: Promise<void> | undefined;
  /** The last request started or queued (its failure is its callers'). */
  private tail: Promise<void> = Promise.resolve();
  /** The group's coordinator, found once and again after a failure (FindCoordinator per commit doubled its cost). */
  private coordinator: RawBroker | undefined;

  constructor(private readonly parts: CommitterParts) {}

  /** Commits the reader's current state, with the other readers' pending ones. */
  commit(reader: Committable): Promise<void> {
    this.dirty.add(reader);
    if (this.next === undefined) {
      // Everyone committing in this turn, or while a request is in flight, shares one request,
      // sent after the one in flight is answered and the turn's microtasks ran.
      const next = this.tail
        .then(() => new Promise<void>((resolve) => setImmediate(resolve)))
        .then(() => {
          this.next = undefined;
          return this.write();
        });
      this.next = next;
      this.tail = next.catch(() => undefined);
    }
    return this.next;
  }

  private async write(): Promise<void> {
    const readers = this.dirty;
    this.dirty = new Set();
    for (let delay = RETRY_MS, attempt = 1; ; delay = nextDelay(delay), attempt++) {
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
