/**
 * The RabbitMQ backend: messages live in RabbitMQ quorum queues (one per topic, group and
 * partition, single active consumer); what every process must see the same way lives in the
 * shared store (PostgreSQL): topics, leases, dedup records, effects, failed attempts, dead
 * letters. Ordering, retries and balancing stay in the worker, as for every backend.
 */
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { checkName, type PreparedMessage, type PublishReceipt } from '../../core/envelope.js';
import type {
  Broker,
  BrokerCapabilities,
  CoordinateRequest,
  CoordinateResult,
  DeadLetter,
  DeadLetterFilter,
  DeadLetterListOptions,
  Delivery,
  GroupStats,
  Lease,
  MemberReport,
  PartitionStats,
  SettleOutcome,
  Settlement,
  TopicInfo,
  TopicSettings,
  TopicStats,
} from '../broker.js';
import { checkDeadLetterFilter } from '../dead-letter-filter.js';
import { isIdle, resolveIdleAfterMs, type StatsOptions } from '../idle.js';
import { sumPartitions } from '../partition-stats.js';
import { Watchers } from '../watchers.js';
import { BrokerEventEmitter } from '../events.js';
import { backfillGroup, type BackfillParts } from './backfill.js';
import type { AmqpConnection } from './connection.js';
import { DeadLetterDrain } from './dead-letter-drain.js';
import { encodeBody, toPrepared } from './message-codec.js';
import type { Names } from './names.js';
import type { ResolvedRabbitmqOptions } from './options.js';
import { ConfirmPublisher, type Outgoing } from './publisher.js';
import { SeqClock } from './seq-clock.js';
import type { CoordinationStore, DedupEntry, HeldReport, NewDeadLetter } from '../../stores/store.js';
import { inDeadLetterChunks } from '../../stores/dead-letter-chunks.js';
import { PartitionSubscription } from './subscription.js';
import { Topology } from './topology.js';

/** A reservation whose publish never confirmed (its publisher crashed) is taken over after this long. */
const STALE_RESERVATION_MS = 30_000;
/** How long fetch and settle wait for a message this process published to reach its consumer. */
const CATCH_UP_MS = 250;
/** Routing keys are partition numbers: made once, not once per message. */
const ROUTING_KEYS: readonly string[] = Array.from({ length: 1_024 }, (_, partition) => String(partition));
/** Fences handed to the worker: the store's fence times this, plus channel losses. */
const LOSS_BASE = 1_000_000;
/**
 * How often what this process holds unacked per owned partition is written to the store, when
 * it changed. RabbitMQ reports only a quorum queue's ready messages over AMQP, so a backlog is
 * ready + held, and the held part is exactly as old as its last report: reported only at the
 * heartbeat (leaseMs / 3), a new owner's first prefetch was missing from stats for most of a
 * second (6,000 messages waiting, `backlog` read 1,739).
 */
const HELD_REPORT_MS = 100;
/** How often a process waiting for another's backfill of a group looks again. */
const BACKFILL_POLL_MS = 250;

interface Failure {
  index: number;
  sub: PartitionSubscription;
  settlement: Extract<Settlement, { kind: 'retry' }>;
  id: string;
}

interface Death {
  index: number;
  sub: PartitionSubscription;
  settlement: Extract<Settlement, { kind: 'dead' }>;
  delivery: Delivery;
}

interface LocalLease {
  member: string;
  storeFence: number;
}

export class RabbitmqBroker implements Broker {
  readonly capabilities: BrokerCapabilities = { assignsSeq: true, multiProcess: true, durable: true };
  /** Connection changes, and failures of background work (retried, and reported here). */
  readonly events: BrokerEventEmitter;

  private readonly publisher: ConfirmPublisher;
  private readonly topology: Topology;
  private readonly seqs = new SeqClock();
  private readonly topics = new Map<string, TopicInfo>();
  private readonly subscriptions = new Map<string, PartitionSubscription>();
  /** Channel losses per queue; kept when a subscription is re-made so fences never go back. */
  private readonly losses = new Map<string, number>();
  private readonly leases = new Map<string, LocalLease>();
  /** Highest seq this process published per topic and partition (for catch-up waits). */
  private readonly published = new Map<string, number>();
  private readonly controlVersions = new Map<string, number>();
  private readonly watchers = new Watchers();
  private readonly leaseNames = new WeakMap<Lease, { queue: string; leaseKey: string }>();
  private readonly drains = new Map<string, DeadLetterDrain>();
  /** Backfills of new groups this process runs or watches, by topic and group. */
  private readonly backfills = new Map<string, Promise<void>>();
  private readonly housekeeping: NodeJS.Timeout;
  private readonly heldReporter: NodeJS.Timeout;
  /** Per queue, the held report last written (member, count, oldest), so unchanged ones are not written again. */
  private readonly heldReported = new Map<string, string>();
  private reportingHeld = false;
  private closed = false;

  private readonly connection: AmqpConnection;
  private readonly publishConnection: AmqpConnection;

  constructor(
    connections: { consume: AmqpConnection; publish: AmqpConnection },
    private readonly store: CoordinationStore,
    private readonly names: Names,
    private readonly options: ResolvedRabbitmqOptions,
    events = new BrokerEventEmitter(),
  ) {
    this.events = events;
    this.connection = connections.consume;
    this.publishConnection = connections.publish;
    this.publisher = new ConfirmPublisher(this.publishConnection, options.maxUnconfirmed);
    this.topology = new Topology(this.connection, names, { deliveryLimit: options.deliveryLimit });
    this.housekeeping = setInterval(() => void this.store.housekeeping().catch((error: unknown) => this.events.failed('delete expired store records', error)), 60_000);
    this.housekeeping.unref();
    this.heldReporter = setInterval(() => void this.reportHeld(), HELD_REPORT_MS);
    this.heldReporter.unref();
  }

  /** Writes the held counts of owned partitions that changed since their last report (see HELD_REPORT_MS). */
  private async reportHeld(): Promise<void> {
    if (this.reportingHeld || this.closed) return;
    this.reportingHeld = true;
    try {
      const batches = new Map<string, { topic: string; group: string; member: string; held: Record<number, HeldReport> }>();
      for (const [queue, sub] of this.subscriptions) {
        const lease = this.leases.get(this.leaseKey(sub.topic, sub.group, sub.partition));
        if (lease === undefined || !sub.isOpen) continue;
        const report: HeldReport = { count: sub.size, oldestPublishedAt: sub.oldestPublishedAt };
        const written = `${lease.member}\u0000${report.count}\u0000${report.oldestPublishedAt}`;
        if (this.heldReported.get(queue) === written) continue;
        this.heldReported.set(queue, written);
        const batchKey = `${sub.topic}\u0000${sub.group}\u0000${lease.member}`;
        let batch = batches.get(batchKey);
        if (batch === undefined) {
          batch = { topic: sub.topic, group: sub.group, member: lease.member, held: {} };
          batches.set(batchKey, batch);
        }
        batch.held[sub.partition] = report;
      }
      await Promise.all(
        [...batches.values()].map((b) =>
          this.store.reportHeld(b.topic, b.group, b.member, b.held).catch((error: unknown) => {
            // Written again at the next report: forget what was thought written.
            for (const p of Object.keys(b.held)) this.heldReported.delete(this.names.partitionQueue(b.topic, b.group, Number(p)));
            this.events.failed(`report what ${b.topic}/${b.group} holds`, error);
          }),
        ),
      );
    } finally {
      this.reportingHeld = false;
    }
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  private checkOpen(): void {
    if (this.closed) throw new BotqueueError(ErrorCodes.CLOSED, 'the RabbitMQ broker is closed; open a new one with open(url) to go on');
  }

  // ---------------------------------------------------------------- topics and groups

  async ensureTopic(topic: string, settings: TopicSettings): Promise<TopicInfo> {
    this.checkOpen();
    checkName('topic', topic);
    // The client checked the settings against core/limits.ts; the store checks what it needs.
    const info = await this.store.ensureTopic(topic, settings);
    // Another creation than the one cached here: the topic was deleted (maybe by another process) and made again.
    const cached = this.topics.get(topic);
    if (cached !== undefined && cached.createdAt !== info.createdAt) this.topology.forget(topic);
    await this.topology.declareTopic(topic, info.dedupWindowMs);
    this.topics.set(topic, info);
    return info;
  }

  async getTopic(topic: string): Promise<TopicInfo | undefined> {
    this.checkOpen();
    const cached = this.topics.get(topic);
    if (cached !== undefined) return cached;
    const info = await this.store.getTopic(topic);
    if (info !== undefined) this.topics.set(topic, info);
    return info;
  }

  private async topic(topic: string): Promise<TopicInfo> {
    const info = await this.getTopic(topic);
    if (info === undefined) {
      throw new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist; create it with ensureTopic first`, { details: { topic } });
    }
    return info;
  }

  async ensureGroup(topic: string, group: string): Promise<void> {
    this.checkOpen();
    checkName('group', group);
    const info = await this.topic(topic);
    await this.topology.declareTopic(topic, info.dedupWindowMs);
    const { created, backfillPending } = await this.store.ensureGroup(topic, group);
    // A group made again after a deletion (maybe by another process) must be bound again.
    if (created) this.topology.forget(topic, group);
    if (backfillPending) {
      // The group's queues exist, unbound, until they have their copy of the unclaimed backlog
      // (bound earlier, newer messages would come before older copies); see backfill.ts.
      await this.topology.declareGroup(topic, group, info.partitions, false);
      // Unreadable counts as waiting: the background path below retries and reports failures.
      const waiting = await this.topology.readyCount(this.names.unclaimedQueue(topic)).catch(() => 1);
      if (waiting === 0) {
        // Nothing to copy (the group was declared before anything was published, as `botqueue
        // start` does): bind now, so a publish right after this call reaches the group.
        await this.store.withLock(`unclaimed:${topic}`, this.backfillIfPending(topic, group, info.partitions));
        await this.bindGroup(topic, group, info.partitions);
      } else {
        // A backlog: workers consume the copies as they arrive, so the copy runs in the
        // background; publishes meanwhile go to the unclaimed queue and are copied after it.
        this.startBackfill(topic, group, info.partitions);
      }
    } else {
      await this.bindGroup(topic, group, info.partitions);
    }
    if (!this.drains.has(topic)) {
      const drain = new DeadLetterDrain(this.connection, this.store, this.names, topic, this.options.deliveryLimit, (operation, error) => this.events.failed(operation, error));
      this.drains.set(topic, drain);
      await drain.start();
    }
  }

  /**
   * Until the group's backfill is done (by this process or another): one process at a time
   * copies (the topic's unclaimed lock); the others look again every BACKFILL_POLL_MS and take
   * over when the copier died (its lock went with its store connection).
   */
  private startBackfill(topic: string, group: string, partitions: number): void {
    const id = `${topic}\u0000${group}`;
    if (this.backfills.has(id)) return;
    const run = async (): Promise<void> => {
      for (let delay = BACKFILL_POLL_MS; !this.closed; delay = Math.min(5_000, delay * 2)) {
        try {
          const attempt = await this.store.tryWithLock(`unclaimed:${topic}`, this.backfillIfPending(topic, group, partitions));
          if (attempt.ran || !(await this.store.backfillPending(topic, group))) {
            await this.bindGroup(topic, group, partitions);
            return;
          }
          delay = BACKFILL_POLL_MS; // someone is copying: keep looking often
        } catch (error) {
          if (this.closed) return;
          this.events.failed(`copy the backlog to group "${group}" of topic "${topic}"`, error);
        }
        await new Promise((resolve) => setTimeout(resolve, delay).unref());
      }
    };
    const task = run().finally(() => this.backfills.delete(id));
    this.backfills.set(id, task);
  }

  /** The work to run under the topic's unclaimed lock: the copy, unless another process finished it meanwhile. */
  private backfillIfPending(topic: string, group: string, partitions: number): () => Promise<void> {
    return async () => {
      if (!(await this.store.backfillPending(topic, group))) return;
      const parts: BackfillParts = { connection: this.connection, publisher: this.publisher, store: this.store, names: this.names, readyCount: (queue) => this.topology.readyCount(queue) };
      await backfillGroup(parts, topic, group, () => this.bindGroup(topic, group, partitions));
    };
  }

  /** Binds the group's partition queues to the topic's exchange: from now on publishes reach them. */
  private bindGroup(topic: string, group: string, partitions: number): Promise<void> {
    return this.topology.declareGroup(topic, group, partitions, true);
  }

  // ---------------------------------------------------------------- publishing

  async publish(topic: string, messages: PreparedMessage[]): Promise<PublishReceipt[]> {
    this.checkOpen();
    const info = await this.topic(topic);
    const receipts: PublishReceipt[] = new Array<PublishReceipt>(messages.length);
    const publishedAt = this.now();
    const firstIndex = new Map<string, number>();
    const toReserve: Array<{ index: number; entry: DedupEntry }> = [];
    const seqOf: number[] = [];
    for (let index = 0; index < messages.length; index++) {
      const message = messages[index]!;
      if (!Number.isInteger(message.partition) || message.partition < 0 || message.partition >= info.partitions) {
        throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, `message #${index}: partition ${message.partition} is outside 0-${info.partitions - 1}`);
      }
      seqOf.push(this.seqs.next());
      if (!message.dedup) continue;
      if (firstIndex.has(message.id)) continue;
      firstIndex.set(message.id, index);
      toReserve.push({ index, entry: { id: message.id, partition: message.partition, seq: seqOf[index]! } });
    }

    const reserved = await this.reserve(topic, info, toReserve, receipts);
    // Indexes of the messages that go out, in order (not the duplicates).
    const sending: number[] = [];
    for (let index = 0; index < messages.length; index++) {
      if (receipts[index] !== undefined) continue;
      const message = messages[index]!;
      const first = message.dedup ? firstIndex.get(message.id) : undefined;
      if (first !== undefined && first !== index) continue;
      sending.push(index);
    }
    const outgoing: Outgoing[] = [];
    const exchange = this.names.exchange(topic);
    for (const index of sending) {
      const message = messages[index]!;
      outgoing.push({ exchange, routingKey: ROUTING_KEYS[message.partition] ?? String(message.partition), body: encodeBody(message, seqOf[index]!, publishedAt) });
    }
    try {
      await this.publisher.publishAll(outgoing);
    } catch (error) {
      // Not released, the reservations go stale and are taken over after STALE_RESERVATION_MS.
      await this.store.releaseIds(topic, reserved).catch((failure: unknown) => this.events.failed(`release ${reserved.length} reserved ids of topic "${topic}"`, failure));
      throw await this.checkDeleted(topic, info, error);
    }
    if (reserved.length > 0) await this.store.confirmIds(topic, reserved, info.dedupWindowMs);
    // Seqs grow within the call, so the last one sent per partition is its highest.
    const highest = new Map<number, number>();
    for (const index of sending) {
      const message = messages[index]!;
      receipts[index] = { id: message.id, topic, partition: message.partition, seq: seqOf[index]!, duplicate: false };
      highest.set(message.partition, seqOf[index]!);
    }
    for (const [partition, seq] of highest) {
      const at = `${topic}\u0000${partition}`;
      if ((this.published.get(at) ?? 0) < seq) this.published.set(at, seq);
    }
    // An id repeated inside the call is a duplicate of its first occurrence.
    for (let index = 0; index < messages.length; index++) {
      if (receipts[index] !== undefined) continue;
      const message = messages[index]!;
      const first = receipts[firstIndex.get(message.id)!]!;
      receipts[index] = { ...first, id: message.id, duplicate: true };
    }
    return receipts;
  }

  /**
   * A publish failed: when the topic was deleted meanwhile (its exchange went with it; this
   * process only had it cached), BOTQUEUE_TOPIC_NOT_FOUND instead of a retriable failure, and
   * nothing is recreated. When it was deleted and made again, the cache is dropped and the
   * exchanges declared again, so the caller's retry goes through.
   */
  private async checkDeleted(topic: string, info: TopicInfo, error: unknown): Promise<unknown> {
    const now = await this.store.getTopic(topic).catch(() => info);
    if (now !== undefined && now.createdAt === info.createdAt) return error;
    this.topics.delete(topic);
    this.topology.forget(topic);
    if (now === undefined) {
      return new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist (it was deleted); create it with ensureTopic first`, { details: { topic }, cause: error });
    }
    this.topics.set(topic, now);
    await this.topology.declareTopic(topic, now.dedupWindowMs).catch(() => undefined);
    return error;
  }

  /**
   * Reserves the ids; fills `receipts` for duplicates. An id another publish is sending right
   * now is asked again until that publish confirmed (a duplicate) or went stale (taken over).
   */
  private async reserve(topic: string, info: TopicInfo, entries: Array<{ index: number; entry: DedupEntry }>, receipts: PublishReceipt[]): Promise<DedupEntry[]> {
    const reserved: DedupEntry[] = [];
    let asking = entries;
    for (let round = 0; asking.length > 0; round++) {
      const outcomes = await this.store.reserveIds(topic, asking.map((a) => a.entry), info.dedupWindowMs, STALE_RESERVATION_MS);
      const again: typeof asking = [];
      for (const [i, outcome] of outcomes.entries()) {
        const { index, entry } = asking[i]!;
        if (outcome.status === 'reserved') reserved.push(entry);
        else if (outcome.status === 'duplicate') receipts[index] = { id: entry.id, topic, partition: outcome.partition, seq: outcome.seq, duplicate: true };
        else again.push(asking[i]!);
      }
      asking = again;
      if (asking.length > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(200, 10 * (round + 1))));
    }
    return reserved;
  }

  // ---------------------------------------------------------------- leases and consumption

  private leaseKey(topic: string, group: string, partition: number): string {
    return `${topic}\u0000${group}\u0000${partition}`;
  }

  /** The queue and lease key of a worker's lease, built once per lease object rather than once per settlement. */
  private namesOf(lease: Lease): { queue: string; leaseKey: string } {
    let names = this.leaseNames.get(lease);
    if (names === undefined) {
      names = { queue: this.names.partitionQueue(lease.topic, lease.group, lease.partition), leaseKey: this.leaseKey(lease.topic, lease.group, lease.partition) };
      this.leaseNames.set(lease, names);
    }
    return names;
  }

  private subscription(topic: string, group: string, partition: number): PartitionSubscription {
    const queue = this.names.partitionQueue(topic, group, partition);
    let sub = this.subscriptions.get(queue);
    if (sub === undefined) {
      sub = new PartitionSubscription(this.connection, this.store, topic, group, partition, queue, this.options.prefetch, {
        arrived: (p) => this.notify(topic, p),
        lost: () => {
          this.losses.set(queue, (this.losses.get(queue) ?? 0) + 1);
          this.notify(topic, partition);
        },
        error: (error) => this.events.failed(`consume ${queue}`, error),
      });
      this.subscriptions.set(queue, sub);
    }
    return sub;
  }

  private fence(queue: string, storeFence: number): number {
    return storeFence * LOSS_BASE + ((this.losses.get(queue) ?? 0) % LOSS_BASE);
  }

  async coordinate(request: CoordinateRequest): Promise<CoordinateResult> {
    this.checkOpen();
    const info = await this.topic(request.topic);
    const { topic, group, member } = request;
    // Released partitions are closed first: their held messages go back to ready (counted by
    // stats) before the store forgets what this member held, and the standby can start.
    await Promise.all(
      request.release.map(async (p) => {
        if (this.leases.get(this.leaseKey(topic, group, p))?.member !== member) return;
        const queue = this.names.partitionQueue(topic, group, p);
        const sub = this.subscriptions.get(queue);
        if (sub === undefined) return;
        this.subscriptions.delete(queue);
        await sub.close();
      }),
    );
    const held: Record<number, HeldReport> = {};
    for (let p = 0; p < info.partitions; p++) {
      if (this.leases.get(this.leaseKey(topic, group, p))?.member !== member) continue;
      const sub = this.subscriptions.get(this.names.partitionQueue(topic, group, p));
      if (sub !== undefined) held[p] = { count: sub.size, oldestPublishedAt: sub.oldestPublishedAt };
    }
    const result = await this.store.coordinate(request, held);
    // The store's held columns were just written, or zeroed on release: the next report writes them all again.
    for (let p = 0; p < result.partitions; p++) this.heldReported.delete(this.names.partitionQueue(topic, group, p));
    const owned = new Map<number, number>();
    const closing: Array<Promise<void>> = [];
    for (let p = 0; p < result.partitions; p++) {
      const key = this.leaseKey(topic, group, p);
      const storeFence = result.owned.get(p);
      const queue = this.names.partitionQueue(topic, group, p);
      if (storeFence !== undefined) {
        this.leases.set(key, { member, storeFence });
        owned.set(p, this.fence(queue, storeFence));
        // Not awaited: while RabbitMQ is away the heartbeat must go on; fetch waits for the consumer.
        this.subscription(topic, group, p).open().catch((error: unknown) => this.events.failed(`subscribe to ${queue}`, error));
      } else if (this.leases.get(key)?.member === member) {
        this.leases.delete(key);
        // Nobody here owns it any more: close (never cancel), so a standby elsewhere takes over in order.
        const sub = this.subscriptions.get(queue);
        if (sub !== undefined) {
          this.subscriptions.delete(queue);
          closing.push(sub.close());
        }
      }
    }
    await Promise.all(closing);
    const versionKey = `${topic}\u0000${group}`;
    const seen = this.controlVersions.get(versionKey);
    if (seen !== result.controlVersion) {
      this.controlVersions.set(versionKey, result.controlVersion);
      if (seen !== undefined) await this.refreshParked(topic, group, result.partitions);
    }
    return { members: result.members, owned, controlVersion: result.controlVersion, partitions: result.partitions };
  }

  async report(report: MemberReport): Promise<void> {
    this.checkOpen();
    await this.store.reportMember(report);
  }

  /** An operator redrove or purged parked messages: update the ones held here before the worker reads them again. */
  private async refreshParked(topic: string, group: string, partitions: number): Promise<void> {
    for (let p = 0; p < partitions; p++) {
      const sub = this.subscriptions.get(this.names.partitionQueue(topic, group, p));
      if (sub === undefined) continue;
      const parked = sub.parked();
      if (parked.length === 0) continue;
      const states = await this.store.getMessageStates(topic, group, parked.map((d) => d.id));
      const skipped: number[] = [];
      for (const delivery of parked) {
        const state = states.get(delivery.id);
        if (state?.parked === true) continue;
        if (state === undefined || state.skip) skipped.push(delivery.seq);
        else sub.markParked(delivery.seq, false, state.attempts);
      }
      if (skipped.length > 0) {
        await sub.ack(skipped);
        const ids = parked.filter((d) => skipped.includes(d.seq)).map((d) => d.id);
        await this.store.clearMessageStates(topic, group, ids);
      }
    }
  }

  async fetch(topic: string, group: string, partition: number, afterSeq: number, limit: number): Promise<Delivery[]> {
    this.checkOpen();
    const info = await this.topic(topic);
    if (!Number.isInteger(partition) || partition < 0 || partition >= info.partitions) {
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, `fetch: partition ${partition} is outside 0-${info.partitions - 1}`, { details: { option: 'partition' } });
    }
    const sub = this.subscription(topic, group, partition);
    await sub.open();
    await sub.waitForSeq(this.published.get(`${topic}\u0000${partition}`) ?? 0, CATCH_UP_MS);
    return sub.fetch(afterSeq, limit);
  }

  async settle(settlements: Settlement[]): Promise<SettleOutcome[]> {
    this.checkOpen();
    const outcomes: SettleOutcome[] = new Array<SettleOutcome>(settlements.length);
    const acks = new Map<PartitionSubscription, Array<{ index: number; seq: number; id: string; stored: boolean }>>();
    const failures: Failure[] = [];
    const deaths: Death[] = [];

    for (let index = 0; index < settlements.length; index++) {
      const settlement = settlements[index]!;
      const { topic, partition, member, fence } = settlement.lease;
      const { queue, leaseKey } = this.namesOf(settlement.lease);
      const lease = this.leases.get(leaseKey);
      const sub = this.subscriptions.get(queue);
      if (lease === undefined || lease.member !== member || this.fence(queue, lease.storeFence) !== fence || sub === undefined) {
        outcomes[index] = 'fenced';
        continue;
      }
      let held = sub.held(settlement.seq);
      if (held === undefined) {
        await sub.waitForSeq(this.published.get(`${topic}\u0000${partition}`) ?? 0, CATCH_UP_MS);
        held = sub.held(settlement.seq);
      }
      if (held === undefined) {
        outcomes[index] = 'missing';
        continue;
      }
      if (settlement.kind === 'ack') {
        const list = acks.get(sub) ?? [];
        list.push({ index, seq: settlement.seq, id: held.delivery.id, stored: held.stored });
        acks.set(sub, list);
      } else if (settlement.kind === 'retry') {
        failures.push({ index, sub, settlement, id: held.delivery.id });
      } else {
        deaths.push({ index, sub, settlement, delivery: { ...held.delivery } });
      }
    }

    await Promise.all([this.applyFailures(failures, outcomes), this.applyDeaths(deaths, outcomes, acks)]);
    await Promise.all([...acks].map(([sub, list]) => this.applyAcks(sub, list, outcomes)));
    return outcomes;
  }

  private async applyFailures(failures: Failure[], outcomes: SettleOutcome[]): Promise<void> {
    const byGroup = new Map<string, typeof failures>();
    for (const failure of failures) {
      const key = `${failure.sub.topic}\u0000${failure.sub.group}`;
      byGroup.set(key, [...(byGroup.get(key) ?? []), failure]);
    }
    for (const list of byGroup.values()) {
      const { topic, group } = list[0]!.sub;
      const window = (await this.topic(topic)).dedupWindowMs;
      await this.store.recordFailures(
        topic,
        group,
        list.map(({ id, settlement }) => ({ id, attempts: settlement.attempts, failedAt: settlement.failedAt, notBefore: settlement.notBefore })),
        Math.max(window, 86_400_000),
      );
      for (const { index, sub, settlement } of list) {
        sub.markFailed(settlement.seq, settlement.attempts, settlement.notBefore, settlement.failedAt);
        outcomes[index] = 'ok';
      }
    }
  }

  private async applyDeaths(
    deaths: Death[],
    outcomes: SettleOutcome[],
    acks: Map<PartitionSubscription, Array<{ index: number; seq: number; id: string; stored: boolean }>>,
  ): Promise<void> {
    if (deaths.length === 0) return;
    const letters: NewDeadLetter[] = deaths.map(({ sub, settlement, delivery }) => ({
      topic: sub.topic,
      group: sub.group,
      partition: sub.partition,
      seq: delivery.seq,
      id: delivery.id,
      key: delivery.key,
      payload: delivery.payload,
      headers: delivery.headers,
      publishedAt: delivery.publishedAt,
      attempts: settlement.attempts,
      firstFailedAt: delivery.firstFailedAt ?? settlement.failedAt,
      lastFailedAt: settlement.failedAt,
      error: settlement.error,
      parked: settlement.park,
    }));
    await this.store.addDeadLetters(letters);
    for (const { index, sub, settlement, delivery } of deaths) {
      if (settlement.park) {
        sub.markParked(settlement.seq, true, settlement.attempts);
        outcomes[index] = 'ok';
      } else {
        // Removed from the group's queue like an ack; its state row (if any) goes with it.
        const list = acks.get(sub) ?? [];
        list.push({ index, seq: settlement.seq, id: delivery.id, stored: true });
        acks.set(sub, list);
      }
    }
  }

  private async applyAcks(sub: PartitionSubscription, list: Array<{ index: number; seq: number; id: string; stored: boolean }>, outcomes: SettleOutcome[]): Promise<void> {
    const ok = await sub.ack(list.map((a) => a.seq));
    for (const { index } of list) outcomes[index] = ok ? 'ok' : 'fenced';
    const stored = list.filter((a) => a.stored).map((a) => a.id);
    if (ok && stored.length > 0) await this.store.clearMessageStates(sub.topic, sub.group, stored);
  }

  // ---------------------------------------------------------------- effects

  async getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined> {
    this.checkOpen();
    return this.store.getEffect(topic, group, messageId, name);
  }

  async putEffect(topic: string, group: string, messageId: string, name: string, result: string | null): Promise<void> {
    this.checkOpen();
    const window = (await this.topic(topic)).dedupWindowMs;
    await this.store.putEffect(topic, group, messageId, name, result, Math.max(window, 86_400_000));
  }

  // ---------------------------------------------------------------- dead letters

  async listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]> {
    this.checkOpen();
    return this.store.listDeadLetters(checkDeadLetterFilter('listDeadLetters', options, true));
  }

  async redriveDeadLetters(filter: DeadLetterFilter): Promise<number> {
    this.checkOpen();
    checkDeadLetterFilter('redriveDeadLetters', filter, false);
    return inDeadLetterChunks(this.store, filter, async (ids) => {
      const letters = await this.store.listDeadLetters({ dlqIds: ids, limit: ids.length });
      // Not parked: published again to its group's queue only (at the end of its key), then removed.
      const outgoing: Outgoing[] = [];
      const publishedAt = this.now();
      for (const letter of letters) {
        if (letter.parked) continue;
        const prepared = toPrepared({ ...letter, notBefore: 0 });
        outgoing.push({ exchange: '', routingKey: this.names.partitionQueue(letter.topic, letter.group, letter.partition), body: encodeBody(prepared, this.seqs.next(), publishedAt) });
      }
      await this.publisher.publishAll(outgoing);
      return (await this.store.removeDeadLetters(ids, 'redrive')).length;
    });
  }

  async purgeDeadLetters(filter: DeadLetterFilter): Promise<number> {
    this.checkOpen();
    checkDeadLetterFilter('purgeDeadLetters', filter, false);
    return inDeadLetterChunks(this.store, filter, async (ids) => (await this.store.removeDeadLetters(ids, 'purge')).length);
  }


  // ---------------------------------------------------------------- stats

  async stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]> {
    this.checkOpen();
    const idleAfterMs = resolveIdleAfterMs(options);
    let infos: TopicInfo[];
    if (topic === undefined) infos = await this.store.listTopics();
    else {
      const info = await this.getTopic(topic);
      infos = info === undefined ? [] : [info];
    }
    return Promise.all(infos.map((info) => this.topicStats(info, idleAfterMs)));
  }

  private async topicStats(info: TopicInfo, idleAfterMs: number): Promise<TopicStats> {
    const now = this.now();
    const snapshots = await this.store.groupSnapshots(info.name);
    const queues = snapshots.flatMap((snapshot) => Array.from({ length: info.partitions }, (_, p) => this.names.partitionQueue(info.name, snapshot.group, p)));
    const [unclaimed = 0, ...readies] = await this.topology.readyCounts([this.names.unclaimedQueue(info.name), ...queues]);
    const groups: GroupStats[] = snapshots.map((snapshot, g) => {
        const partitions: PartitionStats[] = Array.from({ length: info.partitions }, (_, p) => {
            const queue = queues[g * info.partitions + p]!;
            const ready = readies[g * info.partitions + p] ?? 0;
            const lease = snapshot.leases.find((l) => l.partition === p);
            const local = this.subscriptions.get(queue);
            // Held (delivered, unacked) messages: exact when this process holds them, else the owner's last report.
            const held = local?.isOpen === true ? { count: local.size, oldestPublishedAt: local.oldestPublishedAt } : lease?.owner == null ? { count: 0, oldestPublishedAt: 0 } : lease.held;
            return {
              partition: p,
              backlog: ready + held.count,
              inFlight: lease?.owner == null ? 0 : lease.inFlight,
              oldestAgeMs: held.oldestPublishedAt > 0 ? Math.max(0, now - held.oldestPublishedAt) : 0,
              owner: lease?.owner ?? null,
            };
          });
        return {
          group: snapshot.group,
          ...sumPartitions(partitions),
          deadLetters: snapshot.deadLetters,
          parkedKeys: snapshot.parkedKeys,
          members: snapshot.members,
          orderViolations: snapshot.orderViolations,
          deferrals: snapshot.deferrals,
          lastSeenAt: snapshot.lastSeenAt,
          // Aged by the store's clock, which wrote it.
          idle: isIdle(snapshot.members, snapshot.lastSeenAt, snapshot.now, idleAfterMs),
          partitions,
        };
      });
    const retained = unclaimed + groups.reduce((max, g) => Math.max(max, g.backlog), 0);
    return { topic: info.name, partitions: info.partitions, retained, groups };
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Deletes the group: under the store's lock on its row (live members refused), its partition
   * queues go first, then its rows (see stores/postgres/lifecycle.ts for a crash halfway).
   */
  async deleteGroup(topic: string, group: string): Promise<boolean> {
    this.checkOpen();
    checkName('topic', topic);
    checkName('group', group);
    // Local subscriptions close only once the store found no live member (a refusal disturbs nothing).
    const deleted = await this.store.deleteGroup(topic, group, async (partitions) => {
      await this.stopConsuming(topic, group);
      await this.topology.deleteGroup(topic, group, partitions);
    });
    this.forgetGroup(topic, group);
    return deleted;
  }

  /** Deletes the topic: its groups' queues, its unclaimed and dead-letter queues, its exchanges, then its rows. */
  async deleteTopic(topic: string): Promise<boolean> {
    this.checkOpen();
    checkName('topic', topic);
    const deleted = await this.store.deleteTopic(topic, async (partitions, groups) => {
      await this.stopConsuming(topic);
      const drain = this.drains.get(topic);
      this.drains.delete(topic);
      await drain?.stop();
      await this.topology.deleteTopic(topic, groups, partitions);
    });
    for (const key of [...this.controlVersions.keys()]) if (key.startsWith(`${topic}\u0000`)) this.controlVersions.delete(key);
    this.forgetGroup(topic);
    this.topics.delete(topic);
    for (const key of [...this.published.keys()]) if (key.startsWith(`${topic}\u0000`)) this.published.delete(key);
    return deleted;
  }

  /** Closes this process's subscriptions of the group (or of every group of the topic) before their queues go. */
  private async stopConsuming(topic: string, group?: string): Promise<void> {
    const closing: Array<Promise<void>> = [];
    for (const [queue, sub] of this.subscriptions) {
      if (sub.topic !== topic || (group !== undefined && sub.group !== group)) continue;
      this.subscriptions.delete(queue);
      closing.push(sub.close());
    }
    await Promise.all(closing);
  }

  private forgetGroup(topic: string, group?: string): void {
    this.topology.forget(topic, group);
    for (const key of [...this.leases.keys()]) {
      const [t, g] = key.split('\u0000');
      if (t === topic && (group === undefined || g === group)) this.leases.delete(key);
    }
    if (group !== undefined) this.controlVersions.delete(`${topic}\u0000${group}`);
  }

  // ---------------------------------------------------------------- watching and closing

  watch(topic: string, listener: (partition: number) => void): () => void {
    return this.watchers.add(topic, listener);
  }

  private notify(topic: string, partition: number): void {
    this.watchers.notify(topic, [partition]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.housekeeping);
    clearInterval(this.heldReporter);
    this.watchers.clear();
    await Promise.all([...this.subscriptions.values()].map((sub) => sub.close()));
    await Promise.all([...this.drains.values()].map((drain) => drain.stop()));
    // A backfill under way stops when its channel closes with the connection below; its lock goes with the store.
    const backfills = [...this.backfills.values()];
    this.subscriptions.clear();
    await this.topology.close();
    await Promise.all([this.connection.close(), this.publishConnection.close()]);
    await Promise.all(backfills.map((task) => task.catch(() => undefined)));
    await this.store.close();
  }

  /**
   * Deletes the queues and exchanges of every topic in this namespace (tests and tooling; the
   * store keeps its rows). Every quorum queue holds file handles on the RabbitMQ node, so a
   * test run must not leave them behind.
   */
  async deleteAllTopicObjects(): Promise<void> {
    this.checkOpen();
    for (const info of await this.store.listTopics()) {
      await this.topology.deleteTopic(info.name, await this.store.listGroups(info.name), info.partitions);
    }
  }
}
