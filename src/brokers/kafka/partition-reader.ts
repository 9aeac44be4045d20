/**
 * One (topic, group, partition) owned by a member of this process: reads the partition from
 * its group's committed offset (the group's fetcher brings its records), holds at most
 * `prefetch` unsettled messages, and commits the group's offset up to the lowest unfinished
 * message, with the offsets settled above it in the commit's metadata (so a member taking over
 * skips them). Many keys of the partition run at once (the worker decides which); the commit
 * never passes a message still running, retrying or parked.
 */
import type { Delivery } from '../broker.js';
import type { MessageState } from '../../stores/store.js';
import { decodeHorizon, decodeSettled, encodeSettled, fromRecord } from './codec.js';
import type { CommitSnapshot, GroupCommitter } from './committer.js';
import type { RawCluster, RawMessage } from './kafkajs-parts.js';
import { RETRY_MS, nextDelay, sleep } from './backoff.js';

/** Bounds of what a Fetch asks per partition (fetchBytes). */
const MIN_FETCH_BYTES = 16 * 1024;
const MAX_FETCH_BYTES = 1024 * 1024;

export interface ReaderParts {
  cluster: RawCluster;
  committer: GroupCommitter;
  /** botqueue's names (the store's keys) and Kafka's. */
  topic: string;
  group: string;
  kafkaTopic: string;
  kafkaGroup: string;
  partition: number;
  prefetch: number;
  /** The reader opened, or has room again: its fetcher may read for it. */
  readable(): void;
  failed(operation: string, error: unknown): void;
}

export interface Held {
  delivery: Delivery;
  /** The store has a state row for it (failed, parked): cleared when it is settled. */
  stored: boolean;
  /** The store may have a state for it (it is below the horizon): looked up before it is held. */
  lookUp?: boolean;
}

/** Records of one Fetch decoded for a reader, waiting for their message states. */
export interface DecodedBatch {
  reader: PartitionReader;
  fresh: Held[];
  /** The position after these records. */
  next: number;
  /** The position they were read from (a batch read before a reset is dropped). */
  from: number;
}

export class PartitionReader {
  /** Unsettled messages read, by offset, in offset order. */
  private readonly held = new Map<number, Held>();
  /** Offsets settled above the lowest unfinished one. */
  private settled = new Set<number>();
  /** Next offset to read. */
  private nextOffset = 0;
  /** The offset last committed (or found committed at open). */
  private committedOffset = -1;
  private committedMetadata = '';
  /**
   * No message at or past this offset has a state in the store (codec.ts): raised, and
   * committed, before this reader records one; read from the commit at open.
   */
  private horizon = 0;
  private committedHorizon = 0;
  /** Snapshots taken for commits, and the number of the newest one written. */
  private snapshots = 0;
  private committedTaken = 0;
  private running = false;
  private stopped = false;
  /** Closed after losing its lease: only the partition's new owner may commit for it. */
  private fenced = false;
  private opening: Promise<void> | undefined;
  private readonly positionWaiters = new Set<() => void>();
  /** Fetches sent for this reader, the last one whose answer was taken in, and the log's end it reported. */
  private requests = 0;
  private answered = 0;
  private logEnd = 0;
  /** Average size of a record read, for sizing Fetches to the room left (starts at 1 KiB). */
  private recordBytes = 1024;

  constructor(private readonly parts: ReaderParts) {}

  get partition(): number {
    return this.parts.partition;
  }

  /** The next offset to read. */
  get position(): number {
    return this.nextOffset;
  }

  /**
   * Open, and room for more records: a quarter of `prefetch` at least once it was full, so that
   * a reader drained one message at a time is not fetched for one message at a time (each
   * Fetch brings at least a whole record batch, of which it would keep one).
   */
  get wantsRecords(): boolean {
    return this.running && !this.stopped && this.held.size <= this.refillBelow;
  }

  private get refillBelow(): number {
    return Math.max(0, this.parts.prefetch - Math.max(1, Math.floor(this.parts.prefetch / 4)));
  }

  /** Messages held unsettled. */
  get size(): number {
    return this.held.size;
  }

  get oldestPublishedAt(): number {
    let oldest = 0;
    for (const { delivery } of this.held.values()) if (oldest === 0 || delivery.publishedAt < oldest) oldest = delivery.publishedAt;
    return oldest;
  }

  /** The offset commits start from, and what is settled above it, as this reader sees them. */
  get progress(): { committed: number; settledAbove: number; position: number } {
    const low = this.lowestUnfinished();
    let above = 0;
    for (const offset of this.settled) if (offset >= low) above++;
    return { committed: low, settledAbove: above, position: this.nextOffset };
  }

  open(): Promise<void> {
    this.opening ??= this.start();
    return this.opening;
  }

  private async start(): Promise<void> {
    for (let delay = RETRY_MS; ; delay = nextDelay(delay)) {
      if (this.stopped) return;
      try {
        const { offset, metadata } = await this.fetchCommitted();
        this.nextOffset = offset >= 0 ? offset : await this.listOffset('-2');
        this.committedOffset = this.nextOffset;
        this.committedMetadata = metadata ?? '';
        this.settled = decodeSettled(this.nextOffset, metadata);
        this.horizon = this.committedHorizon = decodeHorizon(metadata);
        break;
      } catch (error) {
        this.parts.failed(`read the committed offset of ${this.where()}`, error);
        await sleep(delay);
      }
    }
    if (this.stopped) return;
    this.running = true;
    this.parts.readable();
  }

  private where(): string {
    return `${this.parts.kafkaTopic}[${this.parts.partition}] for ${this.parts.kafkaGroup}`;
  }

  private async fetchCommitted(): Promise<{ offset: number; metadata: string | null }> {
    const coordinator = await this.parts.cluster.findGroupCoordinator({ groupId: this.parts.kafkaGroup });
    const response = await coordinator.offsetFetch({ groupId: this.parts.kafkaGroup, topics: [{ topic: this.parts.kafkaTopic, partitions: [{ partition: this.parts.partition }] }] });
    const row = response.responses[0]?.partitions.find((p) => p.partition === this.parts.partition);
    return { offset: row === undefined ? -1 : Number(row.offset), metadata: row?.metadata ?? null };
  }

  /** ListOffsets: '-2' the log's start, '-1' its end. */
  private async listOffset(timestamp: '-1' | '-2'): Promise<number> {
    await this.parts.cluster.addTargetTopic(this.parts.kafkaTopic);
    const leaders = this.parts.cluster.findLeaderForPartitions(this.parts.kafkaTopic, [this.parts.partition]);
    const nodeId = Object.keys(leaders)[0];
    if (nodeId === undefined) throw new Error(`no leader known for ${this.parts.kafkaTopic}[${this.parts.partition}]`);
    const broker = await this.parts.cluster.findBroker({ nodeId });
    const response = await broker.listOffsets({ replicaId: -1, isolationLevel: 1, topics: [{ topic: this.parts.kafkaTopic, partitions: [{ partition: this.parts.partition, timestamp }] }] });
    return Number(response.responses[0]!.partitions[0]!.offset);
  }

  /** The offset to read was removed by retention: reads go on from the log's start. */
  async restartAtLogStart(): Promise<void> {
    const start = await this.listOffset('-2');
    if (start > this.nextOffset) this.nextOffset = start;
  }

  /** Decodes the records of a Fetch read at `position`; undefined when they add nothing. */
  decode(messages: RawMessage[]): DecodedBatch | undefined {
    if (this.stopped) return undefined;
    const from = this.nextOffset;
    const fresh: Held[] = [];
    let next = from;
    if (messages.length > 0) {
      let bytes = 0;
      // Key, value and a record's framing (offsets, timestamp, headers: ~70 bytes in a batch).
      for (const message of messages) bytes += (message.key?.length ?? 0) + (message.value?.length ?? 0) + 70;
      this.recordBytes = Math.round((this.recordBytes + bytes / messages.length) / 2);
    }
    for (const message of messages) {
      const offset = Number(message.offset);
      if (offset < from || this.held.size + fresh.length >= this.parts.prefetch) continue;
      if (offset >= next) next = offset + 1;
      if (message.isControlRecord === true || this.settled.has(offset)) continue;
      const { delivery, onlyGroup } = fromRecord(this.parts.topic, this.parts.partition, message);
      if (onlyGroup !== undefined && onlyGroup !== this.parts.group) {
        this.settled.add(offset);
        continue;
      }
      fresh.push({ delivery, stored: false, lookUp: offset < this.horizon });
    }
    if (next === from) return undefined;
    return { reader: this, fresh, next, from };
  }

  /**
   * Holds a decoded batch with the message states the store has for it; ids of skipped
   * messages (an operator purged them while parked) are added to `skipped`, for the caller to
   * clear. Returns how many messages were added.
   */
  admit(batch: DecodedBatch, states: Map<string, MessageState>, skipped: string[]): number {
    if (this.stopped || batch.from !== this.nextOffset) return 0;
    let added = 0;
    for (const held of batch.fresh) {
      const state = states.get(held.delivery.id);
      const offset = held.delivery.seq - 1;
      if (state?.skip === true) {
        this.settled.add(offset);
        skipped.push(held.delivery.id);
        continue;
      }
      if (state !== undefined) {
        held.stored = true;
        held.delivery.attempts = state.attempts;
        held.delivery.firstFailedAt = state.firstFailedAt;
        held.delivery.notBefore = Math.max(held.delivery.notBefore, state.notBefore);
        held.delivery.parked = state.parked;
      }
      this.held.set(offset, held);
      added++;
    }
    this.nextOffset = batch.next;
    for (const waiter of this.positionWaiters) waiter();
    return added;
  }

  /**
   * How many bytes to ask of this partition: about what the room left takes. Kafka returns up
   * to this much (at least one record batch): asking for 1 MiB with room for 100 records had
   * kafkajs decode thousands of records only to drop them (and read them again later).
   */
  get fetchBytes(): number {
    const room = Math.max(1, this.parts.prefetch - this.held.size);
    return Math.min(MAX_FETCH_BYTES, Math.max(MIN_FETCH_BYTES, Math.ceil(room * this.recordBytes * 1.25)));
  }

  /** A Fetch for this reader is sent: its number, for fetchAnswered. */
  fetchSent(): number {
    return ++this.requests;
  }

  /** The answer to Fetch number `request` was taken in (admitted, or had nothing new); the log ended at `highWatermark`. */
  fetchAnswered(request: number, highWatermark: number): void {
    if (request <= this.answered) return;
    this.answered = request;
    this.logEnd = highWatermark;
    for (const waiter of this.positionWaiters) waiter();
  }

  /**
   * Waits until the reader has read past `offset`, or a Fetch sent after the call showed that
   * the log ends before it, or the reader is full (it reads nothing more until enough is
   * settled) or closed. `ms` only bounds a reader that cannot read (its leader is away): the
   * wait is for the condition, not for a time, so a slow machine does not turn a message
   * published here into a "missing" one.
   */
  async waitForOffset(offset: number, ms: number): Promise<void> {
    const asked = this.requests;
    const waiting = (): boolean =>
      offset >= this.nextOffset && !this.stopped && this.held.size <= this.refillBelow && !(this.answered > asked && this.nextOffset >= this.logEnd);
    if (!waiting()) return;
    const deadline = Date.now() + ms;
    while (waiting() && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.positionWaiters.delete(done);
          resolve();
        };
        const timer = setTimeout(done, deadline - Date.now());
        this.positionWaiters.add(done);
      });
    }
  }

  fetch(afterSeq: number, limit: number): Delivery[] {
    const out: Delivery[] = [];
    // Map iteration is insertion order, which is offset order.
    for (const { delivery } of this.held.values()) {
      if (delivery.seq <= afterSeq) continue;
      out.push({ ...delivery });
      if (out.length >= limit) break;
    }
    return out;
  }

  /** The held message with this seq, or undefined. */
  get(seq: number): Held | undefined {
    return this.held.get(seq - 1);
  }

  parkedDeliveries(): Delivery[] {
    return [...this.held.values()].filter((h) => h.delivery.parked).map((h) => h.delivery);
  }

  markFailed(seq: number, attempts: number, notBefore: number, failedAt: number): void {
    const held = this.held.get(seq - 1);
    if (held === undefined) return;
    held.stored = true;
    held.delivery.attempts = attempts;
    held.delivery.notBefore = notBefore;
    held.delivery.firstFailedAt ??= failedAt;
  }

  markParked(seq: number, parked: boolean, attempts: number): void {
    const held = this.held.get(seq - 1);
    if (held === undefined) return;
    held.stored = true;
    held.delivery.parked = parked;
    held.delivery.attempts = attempts;
    if (!parked) held.delivery.notBefore = 0;
  }

  /** Settles these messages (acked, or dead without parking) and commits; resolves once the commit is written. */
  async settle(seqs: number[]): Promise<void> {
    const waiting = this.held.size > this.refillBelow;
    for (const seq of seqs) {
      const offset = seq - 1;
      if (!this.held.delete(offset)) continue;
      this.settled.add(offset);
    }
    if (waiting && this.held.size <= this.refillBelow) this.parts.readable();
    await this.commit();
  }

  private lowestUnfinished(): number {
    for (const offset of this.held.keys()) return offset;
    return this.nextOffset;
  }

  /** Commits the lowest unfinished offset with what is settled above it, with the group's other partitions. */
  commit(): Promise<void> {
    return this.parts.committer.commit(this);
  }

  snapshot(): CommitSnapshot | undefined {
    if (this.fenced || !this.running) return undefined;
    const low = this.lowestUnfinished();
    for (const offset of this.settled) if (offset < low) this.settled.delete(offset);
    const metadata = encodeSettled(low, this.settled, this.horizon);
    if (low === this.committedOffset && metadata === this.committedMetadata) return undefined;
    return { partition: this.parts.partition, offset: low, metadata, horizon: this.horizon, taken: ++this.snapshots };
  }

  committed(snapshot: CommitSnapshot): void {
    // Requests go one at a time, so answers come in snapshot order; kept as a guard all the same.
    if (snapshot.taken < this.committedTaken) return;
    this.committedTaken = snapshot.taken;
    this.committedOffset = snapshot.offset;
    this.committedMetadata = snapshot.metadata;
    this.committedHorizon = Math.max(this.committedHorizon, snapshot.horizon);
  }

  /**
   * Called before the store records a state (failed attempts, parked) for messages at these
   * offsets: commits a horizon past them, so that whoever reads the partition next looks them
   * up. False when this reader may not commit any more (its lease is lost): nothing may be
   * recorded for it then.
   */
  async protectStates(offsets: number[]): Promise<boolean> {
    const needed = Math.max(...offsets) + 1;
    if (needed > this.horizon) this.horizon = needed;
    if (this.committedHorizon >= needed) return true;
    await this.commit();
    return this.committedHorizon >= needed;
  }

  /** Stops reading; commits what is settled (`commit` false: the lease is lost, a newer owner commits). Held messages go back to the log for the next owner. */
  async close(commit = true): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (!commit) this.fenced = true;
    for (const waiter of this.positionWaiters) waiter();
    await this.opening;
    if (this.running && commit) await this.commit().catch((error: unknown) => this.parts.failed(`commit ${this.where()} on close`, error));
  }

  get isOpen(): boolean {
    return this.running && !this.stopped;
  }
}
