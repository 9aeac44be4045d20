/**
 * Reads the partitions this process owns of one (topic, group) with one Fetch per leader
 * broker, not one per partition: a loop per leader asks for every owned partition it leads
 * that has room, hands each partition's records to its reader, and reads the message states
 * of the whole response from the store in one query — only for records below their reader's
 * store horizon (codec.ts); past it no state can exist, and no query is made. (One Fetch per partition cost a request,
 * a response and a store round trip per partition per read, and the partitions' long polls
 * queued behind each other on the broker's connection.)
 */
import type { CoordinationStore, MessageState } from '../../stores/store.js';
import type { RawCluster } from './kafkajs-parts.js';
import type { PartitionReader } from './partition-reader.js';
import { RETRY_MS, nextDelay, sleep } from './backoff.js';

/**
 * How long a Fetch waits at the broker for new records (long poll). Short: a partition that
 * gets records while the request waits at an idle broker is read only at the next round.
 */
const FETCH_WAIT_MS = 10;
/** Per request (each partition asks for about its reader's room). A record batch larger than this still comes (KIP-74). */
const FETCH_MAX_BYTES = 8 * 1024 * 1024;

export interface FetcherParts {
  cluster: RawCluster;
  store: CoordinationStore;
  topic: string;
  group: string;
  kafkaTopic: string;
  arrived(partition: number): void;
  failed(operation: string, error: unknown): void;
}

export class GroupFetcher {
  private readonly readers = new Map<number, PartitionReader>();
  /** Running loops, by leader node id. */
  private readonly loops = new Set<string>();
  private wakers: Array<() => void> = [];
  private closed = false;

  constructor(private readonly parts: FetcherParts) {}

  add(reader: PartitionReader): void {
    this.readers.set(reader.partition, reader);
    this.startLoops();
  }

  remove(reader: PartitionReader): void {
    if (this.readers.get(reader.partition) === reader) this.readers.delete(reader.partition);
    this.wake();
  }

  /** A reader opened or has room again. */
  readonly wake = (): void => {
    const wakers = this.wakers;
    this.wakers = [];
    for (const wake of wakers) wake();
  };

  close(): void {
    this.closed = true;
    this.readers.clear();
    this.wake();
  }

  private leaderOf(partition: number): string | undefined {
    try {
      return Object.keys(this.parts.cluster.findLeaderForPartitions(this.parts.kafkaTopic, [partition]))[0];
    } catch {
      return undefined;
    }
  }

  /** Starts a loop for each leader of a reader that has none (after an add or a leader change). */
  private startLoops(): void {
    if (this.closed) return;
    let unknown = false;
    for (const partition of this.readers.keys()) {
      const node = this.leaderOf(partition);
      if (node === undefined) unknown = true;
      else if (!this.loops.has(node)) {
        this.loops.add(node);
        void this.loop(node);
      }
    }
    // A partition whose leader the metadata does not know yet: looked up again shortly.
    if (unknown && !this.loops.has('')) {
      this.loops.add('');
      void this.findLeaders();
    }
  }

  private async findLeaders(): Promise<void> {
    for (let delay = RETRY_MS; !this.closed; delay = nextDelay(delay)) {
      await this.parts.cluster.addTargetTopic(this.parts.kafkaTopic).catch(() => undefined);
      await this.parts.cluster.refreshMetadata().catch((error: unknown) => this.parts.failed(`find the leaders of ${this.parts.kafkaTopic}`, error));
      if ([...this.readers.keys()].every((p) => this.leaderOf(p) !== undefined)) break;
      await sleep(delay);
    }
    this.loops.delete('');
    this.startLoops();
  }

  private async loop(node: string): Promise<void> {
    let delay = RETRY_MS;
    while (!this.closed) {
      // The metadata may have moved a leader (a failed request here or elsewhere refreshed it):
      // a reader whose new leader has no loop gets one.
      this.startLoops();
      const mine = [...this.readers.values()].filter((r) => this.leaderOf(r.partition) === node);
      // Checked and left in the same turn as add() would look: no reader is ever without a loop.
      if (mine.length === 0) break;
      const ready = mine.filter((r) => r.wantsRecords);
      if (ready.length === 0) {
        await new Promise<void>((resolve) => this.wakers.push(resolve));
        continue;
      }
      try {
        await this.read(node, ready);
        delay = RETRY_MS;
      } catch (error) {
        if (this.closed) break;
        const outOfRange = error as { name?: string; partition?: number };
        if (outOfRange.name === 'KafkaJSOffsetOutOfRange' && outOfRange.partition !== undefined) {
          // Retention removed the offset: the reader starts again at the log's start.
          const reader = this.readers.get(outOfRange.partition);
          if (reader !== undefined) {
            await reader.restartAtLogStart().catch((failure: unknown) => this.parts.failed(`find the start of ${this.parts.kafkaTopic}[${outOfRange.partition}]`, failure));
            continue;
          }
        }
        this.parts.failed(`read ${this.parts.kafkaTopic} from broker ${node} for ${this.parts.group}`, error);
        await this.parts.cluster.refreshMetadata().catch(() => undefined);
        await sleep(delay);
        delay = nextDelay(delay);
      }
    }
    this.loops.delete(node);
    // The leaders may have moved to a broker without a loop yet.
    this.startLoops();
  }

  private async read(node: string, readers: PartitionReader[]): Promise<void> {
    const broker = await this.parts.cluster.findBroker({ nodeId: node });
    const sent = readers.map((r) => r.fetchSent());
    const response = await broker.fetch({
      replicaId: -1,
      isolationLevel: 1,
      maxWaitTime: FETCH_WAIT_MS,
      minBytes: 1,
      maxBytes: FETCH_MAX_BYTES,
      topics: [{ topic: this.parts.kafkaTopic, partitions: readers.map((r) => ({ partition: r.partition, fetchOffset: String(r.position), maxBytes: r.fetchBytes })) }],
    });
    const rows = new Map<number, (typeof response.responses)[number]['partitions'][number]>();
    for (const topic of response.responses) for (const row of topic.partitions) rows.set(row.partition, row);
    const batches = [];
    const answered: Array<{ reader: PartitionReader; request: number; highWatermark: number }> = [];
    const ids: string[] = [];
    for (const [i, reader] of readers.entries()) {
      const row = rows.get(reader.partition);
      // A reader closed or replaced during the request: its records are the next owner's.
      if (row === undefined || this.readers.get(reader.partition) !== reader) continue;
      answered.push({ reader, request: sent[i]!, highWatermark: Number(row.highWatermark) });
      const batch = reader.decode(row.messages);
      if (batch === undefined) continue;
      batches.push(batch);
      for (const held of batch.fresh) if (held.lookUp === true) ids.push(held.delivery.id);
    }
    if (batches.length > 0) {
      // Failed attempts, deferrals and parking live in the store, by message id: one query for all.
      const states = ids.length > 0 ? await this.parts.store.getMessageStates(this.parts.topic, this.parts.group, ids) : new Map<string, MessageState>();
      const skipped: string[] = [];
      for (const batch of batches) {
        const added = batch.reader.admit(batch, states, skipped);
        if (added > 0) this.parts.arrived(batch.reader.partition);
      }
      if (skipped.length > 0) await this.parts.store.clearMessageStates(this.parts.topic, this.parts.group, skipped);
    }
    for (const { reader, request, highWatermark } of answered) reader.fetchAnswered(request, highWatermark);
  }
}
