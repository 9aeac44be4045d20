/**
 * One (topic, group, partition) owned by a member of this process: reads the partition from
 * its group's committed offset, holds at most `prefetch` unsettled messages, and commits the
 * group's offset up to the lowest unfinished message, with the offsets settled above it in the
 * commit's metadata (so a member taking over skips them). Many keys of the partition run at
 * once (the worker decides which); the commit never passes a message still running, retrying
 * or parked.
 */
import type { Delivery } from '../broker.js';
import type { CoordinationStore } from '../../stores/store.js';
import { decodeSettled, encodeSettled, fromRecord } from './codec.js';
import type { RawCluster } from './kafkajs-parts.js';

/**
 * How long a Fetch waits at the broker for new records (long poll). Short: a broker answers a
 * connection's requests in order, so a reader polling an idle partition holds up the readers of
 * busy partitions that share the connection (with 100 ms, a trace showed a busy partition read
 * about every 110 ms).
 */
const FETCH_WAIT_MS = 10;
const FETCH_MAX_BYTES = 4 * 1024 * 1024;
/** First wait after a failed Fetch or commit; doubles up to RETRY_MAX_MS. */
const RETRY_MS = 50;
const RETRY_MAX_MS = 2_000;
/** Kafka error code: the offset is outside the log (retention removed it). */
const OFFSET_OUT_OF_RANGE = 1;

export interface ReaderParts {
  cluster: RawCluster;
  store: CoordinationStore;
  /** botqueue's names (the store's keys) and Kafka's. */
  topic: string;
  group: string;
  kafkaTopic: string;
  kafkaGroup: string;
  partition: number;
  prefetch: number;
  arrived(): void;
  failed(operation: string, error: unknown): void;
}

interface Held {
  delivery: Delivery;
  /** The store has a state row for it (failed, parked): cleared when it is settled. */
  stored: boolean;
}

export class PartitionReader {
  /** Unsettled messages read, by offset, in offset order. */
  private readonly held = new Map<number, Held>();
  /** Offsets settled above the lowest unfinished one. */
  private settled = new Set<number>();
  /** Next offset to read. */
  private position = 0;
  /** The offset last committed (or found committed at open). */
  private committedOffset = -1;
  private committedMetadata = '';
  private running = false;
  private stopped = false;
  private opening: Promise<void> | undefined;
  private loop: Promise<void> | undefined;
  private wake: (() => void) | undefined;
  private readonly positionWaiters = new Set<() => void>();
  private committing: Promise<void> | undefined;
  /** The group's coordinator, found once and again after a failure (FindCoordinator per commit doubled its cost). */
  private coordinator: Awaited<ReturnType<RawCluster['findGroupCoordinator']>> | undefined;
  private nextCommit: Promise<void> | undefined;

  constructor(private readonly parts: ReaderParts) {}

  get partition(): number {
    return this.parts.partition;
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
    return { committed: low, settledAbove: above, position: this.position };
  }

  open(): Promise<void> {
    this.opening ??= this.start();
    return this.opening;
  }

  private async start(): Promise<void> {
    for (let delay = RETRY_MS; ; delay = Math.min(RETRY_MAX_MS, delay * 2)) {
      if (this.stopped) return;
      try {
        const { offset, metadata } = await this.fetchCommitted();
        this.position = offset >= 0 ? offset : await this.listOffset('-2');
        this.committedOffset = this.position;
        this.committedMetadata = metadata ?? '';
        this.settled = decodeSettled(this.position, metadata);
        break;
      } catch (error) {
        this.parts.failed(`read the committed offset of ${this.where()}`, error);
        await sleep(delay);
      }
    }
    this.running = true;
    this.loop = this.run();
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
    const broker = await this.leader();
    const response = await broker.listOffsets({ replicaId: -1, isolationLevel: 1, topics: [{ topic: this.parts.kafkaTopic, partitions: [{ partition: this.parts.partition, timestamp }] }] });
    return Number(response.responses[0]!.partitions[0]!.offset);
  }

  private async leader(): Promise<Awaited<ReturnType<RawCluster['findBroker']>>> {
    await this.parts.cluster.addTargetTopic(this.parts.kafkaTopic);
    const leaders = this.parts.cluster.findLeaderForPartitions(this.parts.kafkaTopic, [this.parts.partition]);
    const nodeId = Object.keys(leaders)[0];
    if (nodeId === undefined) throw new Error(`no leader known for ${this.parts.kafkaTopic}[${this.parts.partition}]`);
    return this.parts.cluster.findBroker({ nodeId });
  }

  private async run(): Promise<void> {
    let delay = RETRY_MS;
    while (!this.stopped) {
      if (this.held.size >= this.parts.prefetch) {
        await new Promise<void>((resolve) => {
          this.wake = resolve;
        });
        continue;
      }
      try {
        const got = await this.read();
        delay = RETRY_MS;
        if (got > 0) this.parts.arrived();
      } catch (error) {
        if (this.stopped) return;
        this.parts.failed(`read ${this.where()}`, error);
        await this.parts.cluster.refreshMetadata().catch(() => undefined);
        await sleep(delay);
        delay = Math.min(RETRY_MAX_MS, delay * 2);
      }
    }
  }

  /** One Fetch from the leader; returns how many messages were added. */
  private async read(): Promise<number> {
    const broker = await this.leader();
    const response = await broker.fetch({
      replicaId: -1,
      isolationLevel: 1,
      maxWaitTime: FETCH_WAIT_MS,
      minBytes: 1,
      maxBytes: FETCH_MAX_BYTES,
      topics: [{ topic: this.parts.kafkaTopic, partitions: [{ partition: this.parts.partition, fetchOffset: String(this.position), maxBytes: FETCH_MAX_BYTES }] }],
    });
    const data = response.responses[0]?.partitions.find((p) => p.partition === this.parts.partition);
    if (data === undefined || this.stopped) return 0;
    if (data.errorCode === OFFSET_OUT_OF_RANGE) {
      this.position = await this.listOffset('-2');
      return 0;
    }
    const fresh: Held[] = [];
    let next = this.position;
    for (const message of data.messages) {
      const offset = Number(message.offset);
      if (offset < this.position || this.held.size + fresh.length >= this.parts.prefetch) continue;
      if (offset >= next) next = offset + 1;
      if (message.isControlRecord === true || this.settled.has(offset)) continue;
      const { delivery, onlyGroup } = fromRecord(this.parts.topic, this.parts.partition, message);
      if (onlyGroup !== undefined && onlyGroup !== this.parts.group) {
        this.settled.add(offset);
        continue;
      }
      fresh.push({ delivery, stored: false });
    }
    if (fresh.length > 0) {
      // Failed attempts, deferrals and parking live in the store, by message id.
      const states = await this.parts.store.getMessageStates(this.parts.topic, this.parts.group, fresh.map((h) => h.delivery.id));
      const skipped: string[] = [];
      for (const held of fresh) {
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
      }
      if (skipped.length > 0) await this.parts.store.clearMessageStates(this.parts.topic, this.parts.group, skipped);
    }
    if (this.stopped) return 0;
    this.position = next;
    for (const waiter of this.positionWaiters) waiter();
    return fresh.length;
  }

  /** Waits until the reader read past `offset` (a message this process published), at most `ms`, unless it is full. */
  async waitForOffset(offset: number, ms: number): Promise<void> {
    // A full reader reads nothing more until something is settled: no use waiting.
    const waiting = (): boolean => offset >= this.position && !this.stopped && this.held.size < this.parts.prefetch;
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
    for (const seq of seqs) {
      const offset = seq - 1;
      if (!this.held.delete(offset)) continue;
      this.settled.add(offset);
    }
    this.wake?.();
    this.wake = undefined;
    await this.commit();
  }

  private lowestUnfinished(): number {
    for (const offset of this.held.keys()) return offset;
    return this.position;
  }

  /**
   * Commits the lowest unfinished offset with what is settled above it. Concurrent callers
   * share commits: one runs at a time, and a caller arriving during one waits for the next.
   */
  commit(): Promise<void> {
    if (this.committing !== undefined) {
      // Everyone arriving during a commit shares the one after it.
      this.nextCommit ??= this.committing
        .catch(() => undefined)
        .then(() => {
          this.nextCommit = undefined;
          return this.commit();
        });
      return this.nextCommit;
    }
    const run = this.writeCommit().finally(() => {
      this.committing = undefined;
    });
    this.committing = run;
    return run;
  }

  private async writeCommit(): Promise<void> {
    const low = this.lowestUnfinished();
    for (const offset of this.settled) if (offset < low) this.settled.delete(offset);
    const metadata = encodeSettled(low, this.settled);
    if (low === this.committedOffset && metadata === this.committedMetadata) return;
    for (let delay = RETRY_MS, attempt = 0; ; delay = Math.min(RETRY_MAX_MS, delay * 2), attempt++) {
      try {
        this.coordinator ??= await this.parts.cluster.findGroupCoordinator({ groupId: this.parts.kafkaGroup });
        await this.coordinator.offsetCommit({
          groupId: this.parts.kafkaGroup,
          groupGenerationId: -1,
          memberId: '',
          topics: [{ topic: this.parts.kafkaTopic, partitions: [{ partition: this.parts.partition, offset: String(low), metadata }] }],
        });
        this.committedOffset = low;
        this.committedMetadata = metadata;
        return;
      } catch (error) {
        this.coordinator = undefined;
        if (attempt >= 8) throw error;
        this.parts.failed(`commit ${this.where()}`, error);
        await this.parts.cluster.refreshMetadata().catch(() => undefined);
        await sleep(delay);
      }
    }
  }

  /** Stops reading; commits what is settled (`commit` false: the lease is lost, a newer owner commits). Held messages go back to the log for the next owner. */
  async close(commit = true): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.wake?.();
    for (const waiter of this.positionWaiters) waiter();
    await this.opening;
    await this.loop?.catch(() => undefined);
    if (this.running && commit) await this.commit().catch((error: unknown) => this.parts.failed(`commit ${this.where()} on close`, error));
  }

  get isOpen(): boolean {
    return this.running && !this.stopped;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
