import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { backoffDelay } from '../core/backoff.js';
import type { Envelope } from '../core/envelope.js';
import { BotqueueError, ErrorCodes, describeError } from '../core/errors.js';
import { KeyedScheduler, type RunOutcome } from '../core/keyed-scheduler.js';
import type { Broker, Delivery, Lease, SettleOutcome, Settlement, TopicInfo } from '../brokers/broker.js';
import { assignedPartitions } from './assignment.js';
import type { WorkerEvents } from './events.js';
import { OrderCheck } from './order-check.js';
import { resolveWorkerOptions, type WorkerOptions } from './options.js';

/** What a handler gets besides the message. */
export interface HandlerContext {
  /** 1 on the first delivery; persisted failed attempts count. */
  readonly attempt: number;
  readonly topic: string;
  readonly group: string;
  /** Aborted when the worker's shutdown deadline passes or its lease on the partition is lost. */
  readonly signal: AbortSignal;
  /**
   * Runs `fn` once per message id and step name, even when the message is delivered again: a
   * step that completed is recorded (with its JSON result) and skipped on redelivery, returning
   * the recorded result. Only a crash between the step's end and its record repeats it, so calls
   * to outside systems are at-least-once in that short window.
   *
   * @example
   * await ctx.once('reply', () => api.sendMessage(chatId, text));
   */
  once<R>(name: string, fn: () => R | Promise<R>): Promise<R>;
}

/** How a client plugs a worker in: topic creation on first use, and bookkeeping on close. */
export interface WorkerHooks {
  resolveTopic?: () => Promise<TopicInfo>;
  onClose?: () => void;
}

export type Handler<P = unknown> = (message: Envelope<P>, ctx: HandlerContext) => unknown;

interface PartitionRun {
  partition: number;
  lease: Lease;
  /** Highest seq read by the forward scan. */
  fetchedUpTo: number;
  /** While set, the scan re-reads from here (after a key's overflow) until it reaches `fetchedUpTo`. */
  rewindFrom: number | null;
  /**
   * Keys the running re-read serves. Every other row it passes is in memory or belongs to a key
   * with a mark, so once all of these are full again (marked anew) the re-read can stop early.
   */
  rewindKeys: Set<string>;
  /** Overflow marks released by draining keys; applied when no fetch is in flight. */
  pendingRewind: { from: number; keys: string[] } | null;
  /** Seqs held in memory (buffered, running or being settled). */
  inMemory: Set<number>;
  /** Seqs settled while a fetch was in flight: that fetch may still return them. */
  settledDuringFetch: Set<number> | null;
  /** Keys whose later messages were not kept in memory, with the first seq not kept. */
  overflowed: Map<string, number>;
  /** Keys whose head waits (retry, delay, park): they keep one message in memory. */
  waiting: Set<string>;
  fetching: boolean;
  caughtUp: boolean;
  revoking: boolean;
  lost: boolean;
  inFlight: number;
  order: OrderCheck;
  abort: AbortController;
}

interface Item {
  run: PartitionRun;
  delivery: Delivery;
  /** Failed attempts so far, persisted. */
  attempts: number;
  parked: boolean;
  /** When the current attempt's handler started (performance.now()). */
  started: number;
}

/**
 * A settlement waiting for its turn's batch. The ack of a handled message carries its item: the
 * flush finishes it there and resolves the run's outcome, with no promise layer in between.
 */
type QueuedSettlement =
  | { settlement: Settlement; item: null; resolve: (outcome: SettleOutcome) => void; reject: (error: unknown) => void }
  | { settlement: Settlement; item: Item; resolve: (outcome: RunOutcome) => void; reject: (error: unknown) => void };

const DONE: RunOutcome = { kind: 'done' };
const PARK: RunOutcome = { kind: 'park' };
/** Already-settled outcomes, shared: a run that ends without work needs no promise of its own. */
const DONE_NOW = Promise.resolve(DONE);
const PARK_NOW = Promise.resolve(PARK);
const FAST_TICK_MS = 100;

export interface CloseResult {
  /** True when handlers were still running at the deadline; their messages are redelivered after the lease expires. */
  timedOut: boolean;
}

/**
 * Runs a handler over a topic for one consumer group: owns a balanced share of the partitions,
 * keeps each key's messages one at a time and in order, retries with backoff, applies the
 * failure policy, and settles each message with its lease's fence.
 */
export class Worker<P = unknown> extends EventEmitter<WorkerEvents> {
  readonly topic: string;
  readonly group: string;
  readonly member: string;
  readonly options: Readonly<WorkerOptions>;
  /** Resolves once the worker has joined its group; rejects if it cannot start. */
  readonly ready: Promise<void>;

  private readonly broker: Broker;
  private readonly handler: Handler<P>;
  private readonly scheduler: KeyedScheduler<Item>;
  private readonly runs = new Map<number, PartitionRun>();
  private partitions = 0;
  private members: string[] = [];
  private controlVersion = -1;
  private reservedRoom = 0;
  private settleQueue: QueuedSettlement[] = [];
  private fetchCursor = 0;
  private pumpQueued = false;
  private unreportedViolations = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private tickAgain = false;
  private unwatch: (() => void) | undefined;
  private closing = false;
  private closed: Promise<CloseResult> | undefined;
  private readonly shutdownAbort = new AbortController();

  constructor(broker: Broker, topic: string, handler: Handler<P>, options: unknown, hooks: WorkerHooks = {}) {
    super();
    this.broker = broker;
    this.topic = topic;
    this.handler = handler;
    this.options = resolveWorkerOptions(options);
    this.group = this.options.group;
    this.member = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.hooks = hooks;
    this.scheduler = new KeyedScheduler<Item>({
      concurrency: this.options.concurrency,
      run: (item, key, releaseSlot) => this.runItem(item, key, releaseSlot),
      onRunError: (error) => this.reportError(error),
    });
    this.ready = this.start();
    // `ready` is also observed by start's own error path; keep an unobserved rejection from crashing.
    this.ready.catch(() => undefined);
  }

  private readonly hooks: WorkerHooks;

  /** Messages held in memory (buffered and running). */
  get buffered(): number {
    return this.scheduler.size;
  }

  /** Partitions this worker owns now. */
  get ownedPartitions(): number[] {
    return [...this.runs.keys()].sort((a, b) => a - b);
  }

  /** Per-key order violations this worker has seen (must stay 0). */
  get orderViolations(): number {
    return this.violationsSeen;
  }
  private violationsSeen = 0;

  private async start(): Promise<void> {
    const info = this.hooks.resolveTopic === undefined ? await this.broker.getTopic(this.topic) : await this.hooks.resolveTopic();
    if (info === undefined) throw new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${this.topic}" does not exist`);
    this.partitions = info.partitions;
    await this.broker.ensureGroup(this.topic, this.group);
    this.unwatch = this.broker.watch(this.topic, (partition) => this.onPublished(partition));
    await this.tick();
  }

  // ---------------------------------------------------------------- membership and leases

  private scheduleTick(delayMs: number): void {
    if (this.closing) return;
    if (this.tickTimer !== undefined) clearTimeout(this.tickTimer);
    this.tickTimer = setTimeout(() => {
      this.tickTimer = undefined;
      this.tick().catch((error: unknown) => this.reportError(error));
    }, delayMs);
  }

  /** One heartbeat: renew, release drained revoked partitions, take free assigned ones. */
  private tick(): Promise<void> {
    if (this.ticking !== undefined) {
      this.tickAgain = true;
      return this.ticking;
    }
    this.ticking = this.coordinate()
      .catch((error: unknown) => this.reportError(error))
      .finally(() => {
        this.ticking = undefined;
        if (this.tickAgain && !this.closing) {
          this.tickAgain = false;
          this.tick().catch((error: unknown) => this.reportError(error));
        }
      });
    return this.ticking;
  }

  private async coordinate(): Promise<void> {
    if (this.closing) return;
    const desired = new Set(assignedPartitions(this.members, this.member, this.partitions));
    const release: number[] = [];
    for (const run of this.runs.values()) {
      if (!desired.has(run.partition) && !run.revoking) this.revoke(run);
      if (run.revoking && run.inFlight === 0) release.push(run.partition);
    }
    // The first call only announces this member, so that workers starting together do not all grab every partition.
    const joining = this.members.length === 0;
    const acquire = joining ? [] : [...desired].filter((p) => !this.runs.has(p));
    const inFlight: Record<number, number> = {};
    for (const run of this.runs.values()) inFlight[run.partition] = run.inFlight;
    const violations = this.unreportedViolations;
    this.unreportedViolations = 0;
    let result;
    try {
      result = await this.broker.coordinate({
        topic: this.topic,
        group: this.group,
        member: this.member,
        leaseMs: this.options.leaseMs,
        acquire,
        release,
        inFlight,
        orderViolations: violations,
      });
    } catch (error) {
      this.unreportedViolations += violations;
      this.scheduleTick(Math.min(1_000, this.heartbeatMs));
      throw error;
    }
    if (this.closing) return;
    for (const p of release) {
      const run = this.runs.get(p);
      if (run !== undefined && !result.owned.has(p)) {
        run.lost = true;
        this.runs.delete(p);
        this.emitIfListened('released', () => ({ topic: this.topic, group: this.group, partition: p }));
      }
    }
    for (const run of [...this.runs.values()]) {
      const fence = result.owned.get(run.partition);
      if (fence !== run.lease.fence) this.loseRun(run);
    }
    for (const [partition, fence] of result.owned) {
      if (!this.runs.has(partition)) this.adopt(partition, fence);
    }
    const membersChanged = result.members.join('\n') !== this.members.join('\n');
    this.members = result.members;
    if (result.controlVersion !== this.controlVersion) {
      if (this.controlVersion !== -1) this.refreshParkedKeys();
      this.controlVersion = result.controlVersion;
    }
    const nowDesired = assignedPartitions(this.members, this.member, this.partitions);
    const unsettled = membersChanged || nowDesired.some((p) => !this.runs.has(p)) || [...this.runs.values()].some((r) => r.revoking);
    this.scheduleTick(joining ? 0 : unsettled ? FAST_TICK_MS : this.heartbeatMs);
    this.pumpFetch();
  }

  private get heartbeatMs(): number {
    return Math.max(50, Math.floor(this.options.leaseMs / 3));
  }

  private adopt(partition: number, fence: number): void {
    const run: PartitionRun = {
      partition,
      lease: { topic: this.topic, group: this.group, partition, member: this.member, fence },
      fetchedUpTo: 0,
      rewindFrom: null,
      rewindKeys: new Set(),
      pendingRewind: null,
      inMemory: new Set(),
      settledDuringFetch: null,
      overflowed: new Map(),
      waiting: new Set(),
      fetching: false,
      caughtUp: false,
      revoking: false,
      lost: false,
      inFlight: 0,
      order: new OrderCheck(),
      abort: new AbortController(),
    };
    this.runs.set(partition, run);
    this.emitIfListened('assigned', () => ({ topic: this.topic, group: this.group, partition, fence }));
  }

  /** Stops reading a partition another member should own; it is released once its handlers finish. */
  private revoke(run: PartitionRun): void {
    run.revoking = true;
    this.dropBuffered(run);
  }

  /** The lease is gone (another member owns the partition): forget it; running handlers' settlements will be refused. */
  private loseRun(run: PartitionRun): void {
    if (run.lost) return;
    run.lost = true;
    if (this.runs.get(run.partition) === run) this.runs.delete(run.partition);
    this.dropBuffered(run);
    run.abort.abort(new BotqueueError(ErrorCodes.LEASE_LOST, `lease on partition ${run.partition} of ${this.topic} lost`));
    this.emitIfListened('lease-lost', () => ({ topic: this.topic, group: this.group, partition: run.partition }));
  }

  private dropBuffered(run: PartitionRun): void {
    for (const item of this.scheduler.drop((candidate) => candidate.run === run)) run.inMemory.delete(item.delivery.seq);
  }

  /** An operator redrove or skipped a parked message: read parked keys again from the broker. */
  private refreshParkedKeys(): void {
    for (const run of this.runs.values()) {
      const parked = this.scheduler.drop((item) => item.run === run && item.parked);
      if (parked.length === 0) continue;
      // drop() took each parked key's whole queue: read those keys again from the parked message on.
      let from = Number.POSITIVE_INFINITY;
      const keys = new Set<string>();
      for (const item of parked) {
        run.inMemory.delete(item.delivery.seq);
        from = Math.min(from, item.delivery.seq);
        if (item.delivery.key !== null) keys.add(item.delivery.key);
      }
      for (const key of keys) {
        run.waiting.delete(key);
        this.scheduler.unpark(key);
      }
      this.requestRewind(run, from - 1, [...keys]);
    }
  }

  // ---------------------------------------------------------------- reading

  private onPublished(partition: number): void {
    if (partition === -1) {
      for (const run of this.runs.values()) run.caughtUp = false;
    } else {
      const run = this.runs.get(partition);
      if (run !== undefined) run.caughtUp = false;
    }
    this.pumpFetch();
  }

  private requestRewind(run: PartitionRun, from: number, keys: string[]): void {
    if (run.pendingRewind === null) run.pendingRewind = { from, keys };
    else {
      run.pendingRewind.from = Math.min(run.pendingRewind.from, from);
      run.pendingRewind.keys.push(...keys);
    }
    run.caughtUp = false;
  }

  private pumpFetch(): void {
    this.pumpQueued = false;
    if (this.closing || this.options.prefetch - this.scheduler.size - this.reservedRoom <= 0) return;
    const runs = [...this.runs.values()];
    // Start where the last pump stopped, so that with a full buffer no partition starves.
    for (let i = 0; i < runs.length; i++) {
      const run = runs[(this.fetchCursor + i) % runs.length]!;
      if (run.fetching || run.revoking || run.lost) continue;
      if (run.caughtUp && run.pendingRewind === null) continue;
      const room = this.options.prefetch - this.scheduler.size - this.reservedRoom;
      if (room <= 0) {
        this.fetchCursor = (this.fetchCursor + i) % runs.length;
        return;
      }
      void this.fetchPartition(run, Math.min(room, this.options.fetchBatch));
    }
  }

  private async fetchPartition(run: PartitionRun, limit: number): Promise<void> {
    run.fetching = true;
    if (run.pendingRewind !== null) {
      // Applied only here, with no fetch in flight, so no older read can slip a key's later message past its mark.
      for (const key of run.pendingRewind.keys) {
        run.overflowed.delete(key);
        run.rewindKeys.add(key);
      }
      run.rewindFrom = Math.min(run.rewindFrom ?? Number.POSITIVE_INFINITY, run.pendingRewind.from);
      run.pendingRewind = null;
    }
    const rewinding = run.rewindFrom !== null;
    // A re-read serves a few drained keys: read about what they can take, so it stays cheap.
    const take = rewinding ? Math.min(limit, Math.max(this.options.perKeyBuffer, 2 * this.rewindRoom(run))) : limit;
    const after = run.rewindFrom ?? run.fetchedUpTo;
    this.reservedRoom += take;
    run.settledDuringFetch = new Set();
    let deliveries: Delivery[];
    try {
      deliveries = await this.broker.fetch(this.topic, this.group, run.partition, after, take);
    } catch (error) {
      this.reportError(error);
      run.settledDuringFetch = null;
      run.fetching = false;
      this.reservedRoom -= take;
      setTimeout(() => this.pumpFetch(), 500).unref();
      return;
    }
    const recentlySettled = run.settledDuringFetch;
    run.settledDuringFetch = null;
    run.fetching = false;
    this.reservedRoom -= take;
    if (run.lost || run.revoking || this.closing) return;
    const now = Date.now();
    let last = after;
    for (const delivery of deliveries) {
      last = delivery.seq;
      if (run.inMemory.has(delivery.seq) || recentlySettled.has(delivery.seq)) continue;
      this.accept(run, delivery, now);
    }
    if (rewinding) {
      if (deliveries.length < take || last >= run.fetchedUpTo || run.rewindKeys.size === 0) {
        run.rewindFrom = null;
        run.rewindKeys.clear();
        run.fetchedUpTo = Math.max(run.fetchedUpTo, last);
        run.caughtUp = deliveries.length < take && run.pendingRewind === null;
      } else {
        run.rewindFrom = last;
      }
    } else {
      run.fetchedUpTo = Math.max(run.fetchedUpTo, last);
      run.caughtUp = deliveries.length < take && run.pendingRewind === null;
    }
    this.pumpFetch();
  }

  /** How many messages the keys a re-read serves can still take. */
  private rewindRoom(run: PartitionRun): number {
    let room = 0;
    for (const key of run.rewindKeys) room += Math.max(0, this.options.perKeyBuffer - this.scheduler.keyLength(key));
    return room;
  }

  /** Puts a fetched message in memory, unless its key already holds its share. */
  private accept(run: PartitionRun, delivery: Delivery, now: number): void {
    const key = delivery.key;
    const schedulerKey = key ?? `\u0000${run.partition}:${delivery.seq}`;
    if (key !== null) {
      const mark = run.overflowed.get(key);
      if (mark !== undefined && delivery.seq >= mark) return;
      const share = run.waiting.has(key) ? 1 : this.options.perKeyBuffer;
      if (this.scheduler.keyLength(key) >= share) {
        run.overflowed.set(key, Math.min(mark ?? delivery.seq, delivery.seq));
        run.rewindKeys.delete(key);
        return;
      }
      if (delivery.parked || delivery.notBefore > now) run.waiting.add(key);
    }
    run.inMemory.add(delivery.seq);
    this.scheduler.push(schedulerKey, { run, delivery, attempts: delivery.attempts, parked: delivery.parked, started: 0 }, delivery.notBefore);
  }

  // ---------------------------------------------------------------- handling

  /**
   * Runs one message's attempt. The hot path (once per message) is plain functions over one
   * promise, the one the settlement flush resolves: no async frames, no chained layers.
   */
  private runItem(item: Item, schedulerKey: string, releaseSlot: () => void): Promise<RunOutcome> {
    const { run, delivery } = item;
    if (run.lost || this.runs.get(run.partition) !== run) {
      run.inMemory.delete(delivery.seq);
      return DONE_NOW;
    }
    if (item.parked) return PARK_NOW;
    const key = delivery.key;
    if (key !== null) {
      run.waiting.delete(key);
      if (!run.order.observe(key, delivery.seq)) {
        this.unreportedViolations++;
        this.violationsSeen++;
        this.emitIfListened('order-violation', () => ({ topic: this.topic, group: this.group, partition: run.partition, seq: delivery.seq }));
      }
    }
    const attempt = item.attempts + 1;
    item.started = performance.now();
    run.inFlight++;
    let result: unknown;
    try {
      const envelope: Envelope<P> = {
        id: delivery.id,
        topic: this.topic,
        key,
        partition: delivery.partition,
        seq: delivery.seq,
        payload: JSON.parse(delivery.payload) as P,
        headers: delivery.headers,
        publishedAt: delivery.publishedAt,
        attempt,
        notBefore: delivery.notBefore,
      };
      result = this.handler(envelope, this.context(item, attempt));
    } catch (error) {
      return this.handled(item, schedulerKey, releaseSlot, true, error);
    }
    // A handler that finished synchronously costs no extra turn.
    if (!isThenable(result)) return this.handled(item, schedulerKey, releaseSlot, false, undefined);
    return Promise.resolve(result).then(
      () => this.handled(item, schedulerKey, releaseSlot, false, undefined),
      (error: unknown) => this.handled(item, schedulerKey, releaseSlot, true, error),
    );
  }

  /** The handler is done: settle its outcome. `run.inFlight` drops once the settlement is over. */
  private handled(item: Item, schedulerKey: string, releaseSlot: () => void, failed: boolean, failure: unknown): Promise<RunOutcome> {
    // Another key may start while this one's settlement is written.
    releaseSlot();
    return failed ? this.failAndLeave(item, failure, schedulerKey) : this.succeed(item);
  }

  private leave(run: PartitionRun): void {
    run.inFlight--;
    if (run.revoking && run.inFlight === 0) void this.tick();
  }

  private context(item: Item, attempt: number): HandlerContext {
    return new MessageContext(this.broker, this.topic, this.group, item.delivery.id, attempt, item.run.abort.signal, this.shutdownAbort.signal);
  }

  /** Acks a handled message; the flush finishes it (see `finishAck`) and resolves its outcome. */
  private succeed(item: Item): Promise<RunOutcome> {
    const settlement: Settlement = { kind: 'ack', lease: item.run.lease, seq: item.delivery.seq };
    return new Promise<RunOutcome>((resolve, reject) => this.enqueueSettlement({ settlement, item, resolve, reject }));
  }

  /** An ack's result is in: forget the message and report it; the key goes on. Leaves the run in any case. */
  private finishAck(entry: QueuedSettlement & { item: Item }, outcome: SettleOutcome): void {
    const item = entry.item;
    const { run, delivery } = item;
    try {
      this.afterSettle(outcome, item);
      this.forget(run, delivery);
      if (this.listenerCount('completed') > 0) {
        const durationMs = performance.now() - item.started;
        this.emit('completed', { topic: this.topic, group: this.group, partition: run.partition, seq: delivery.seq, id: delivery.id, attempt: item.attempts + 1, durationMs });
      }
      entry.resolve(DONE);
    } catch (error) {
      entry.reject(error);
    } finally {
      this.leave(run);
    }
  }

  /** The broker failed the ack: the message is tried again later. */
  private failAck(entry: QueuedSettlement & { item: Item }, error: unknown): void {
    try {
      this.reportError(error);
      entry.resolve({ kind: 'retry', at: Date.now() + 1_000 });
    } catch (reportFailure) {
      entry.reject(reportFailure);
    } finally {
      this.leave(entry.item.run);
    }
  }

  private async failAndLeave(item: Item, failure: unknown, schedulerKey: string): Promise<RunOutcome> {
    try {
      return await this.fail(item, item.attempts + 1, failure, schedulerKey);
    } finally {
      this.leave(item.run);
    }
  }

  private async fail(item: Item, attempt: number, failure: unknown, schedulerKey: string): Promise<RunOutcome> {
    const { run, delivery } = item;
    const error = describeError(failure);
    const now = Date.now();
    const exhausted = hasPermanentCode(failure) || attempt >= this.options.maxAttempts;
    if (exhausted) {
      const park = this.options.onExhausted === 'park-key';
      const settled = await this.settle({ kind: 'dead', lease: run.lease, seq: delivery.seq, attempts: attempt, error, failedAt: now, park }, item);
      if (settled === null) return { kind: 'retry', at: Date.now() + 1_000 };
      if (settled === 'gone') return DONE;
      this.emitIfListened('dead-lettered', () => ({
        topic: this.topic,
        group: this.group,
        partition: run.partition,
        seq: delivery.seq,
        id: delivery.id,
        attempts: attempt,
        parked: park,
        error,
      }));
      if (park) {
        item.parked = true;
        this.holdKey(run, delivery.key, schedulerKey);
        return PARK;
      }
      this.forget(run, delivery);
      return DONE;
    }
    const delayMs = backoffDelay(attempt, { baseMs: this.options.backoffBaseMs, capMs: this.options.backoffCapMs });
    const notBefore = now + delayMs;
    const settled = await this.settle({ kind: 'retry', lease: run.lease, seq: delivery.seq, attempts: attempt, notBefore, error, failedAt: now }, item);
    if (settled === null) return { kind: 'retry', at: Date.now() + 1_000 };
    if (settled === 'gone') return DONE;
    item.attempts = attempt;
    this.emitIfListened('retried', () => ({ topic: this.topic, group: this.group, partition: run.partition, seq: delivery.seq, id: delivery.id, attempt, delayMs, error }));
    this.holdKey(run, delivery.key, schedulerKey);
    return { kind: 'retry', at: notBefore };
  }

  /** A key's head waits: keep only it in memory so a waiting key cannot fill the prefetch. */
  private holdKey(run: PartitionRun, key: string | null, schedulerKey: string): void {
    if (key === null) return;
    run.waiting.add(key);
    const trimmed = this.scheduler.trimKey(schedulerKey, 1);
    if (trimmed.length === 0) return;
    const first = trimmed[0]!.delivery.seq;
    for (const dropped of trimmed) run.inMemory.delete(dropped.delivery.seq);
    const mark = run.overflowed.get(key);
    run.overflowed.set(key, Math.min(mark ?? first, first));
  }

  /**
   * Settles with the lease's fence. Returns 'ok', 'gone' when the message is no longer ours
   * (lease lost or already settled), or null when the broker failed (the item is tried again).
   */
  private async settle(settlement: Settlement, item: Item): Promise<'ok' | 'gone' | null> {
    let outcome;
    try {
      outcome = await this.settleBatched(settlement);
    } catch (error) {
      this.reportError(error);
      return null;
    }
    return this.afterSettle(outcome, item);
  }

  /** 'gone' when the message is no longer ours (lease lost or already settled): forget it. */
  private afterSettle(outcome: SettleOutcome, item: Item): 'ok' | 'gone' {
    if (outcome === 'ok') return 'ok';
    const run = item.run;
    run.inMemory.delete(item.delivery.seq);
    if (outcome === 'fenced') {
      this.loseRun(run);
      void this.tick();
    }
    return 'gone';
  }

  /**
   * Settlements made in the same turn go to the broker in one call: one write for all of them
   * (a backend checks each lease once per run of settlements).
   */
  private settleBatched(settlement: Settlement): Promise<SettleOutcome> {
    return new Promise<SettleOutcome>((resolve, reject) => this.enqueueSettlement({ settlement, item: null, resolve, reject }));
  }

  private enqueueSettlement(entry: QueuedSettlement): void {
    this.settleQueue.push(entry);
    if (this.settleQueue.length === 1) queueMicrotask(this.flushSettlements);
  }

  private readonly flushSettlements = (): void => {
    const batch = this.settleQueue;
    this.settleQueue = [];
    this.broker.settle(batch.map((entry) => entry.settlement)).then(
      (outcomes) => {
        for (let i = 0; i < batch.length; i++) {
          const entry = batch[i]!;
          const outcome = outcomes[i] ?? 'missing';
          if (entry.item === null) entry.resolve(outcome);
          else this.finishAck(entry, outcome);
        }
      },
      (error: unknown) => {
        for (const entry of batch) {
          if (entry.item === null) entry.reject(error);
          else this.failAck(entry, error);
        }
      },
    );
  };

  /** The message left this worker's hands: free its slot and, if its key had overflowed, read the key again. */
  private forget(run: PartitionRun, delivery: Delivery): void {
    run.inMemory.delete(delivery.seq);
    run.settledDuringFetch?.add(delivery.seq);
    const key = delivery.key;
    if (key !== null) {
      const mark = run.overflowed.get(key);
      // The running head still counts in keyLength; refill once the key is down to half its share.
      if (mark !== undefined && this.scheduler.keyLength(key) - 1 <= this.options.perKeyBuffer / 2) {
        this.requestRewind(run, mark - 1, [key]);
      }
    }
    if (!this.pumpQueued) {
      // Once per turn, however many messages were settled in it.
      this.pumpQueued = true;
      queueMicrotask(() => this.pumpFetch());
    }
  }

  // ---------------------------------------------------------------- shutdown

  /**
   * Stops taking messages, lets running handlers finish within `shutdownTimeoutMs`, then gives
   * its partitions back. If the deadline passes, handlers are signalled (ctx.signal) and the
   * partitions are left to expire, so their messages are redelivered: nothing is lost.
   */
  close(): Promise<CloseResult> {
    this.closed ??= this.shutdown();
    return this.closed;
  }

  private async shutdown(): Promise<CloseResult> {
    this.closing = true;
    if (this.tickTimer !== undefined) clearTimeout(this.tickTimer);
    this.unwatch?.();
    this.scheduler.pause();
    this.scheduler.clear();
    await this.ready.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.options.shutdownTimeoutMs);
    });
    const result = await Promise.race([this.scheduler.whenIdle().then(() => 'idle' as const), deadline]);
    clearTimeout(timer);
    await this.ticking;
    if (result === 'timeout') {
      this.shutdownAbort.abort(new BotqueueError(ErrorCodes.SHUTDOWN_TIMEOUT, 'worker shutdown deadline passed'));
      this.hooks.onClose?.();
      return { timedOut: true };
    }
    try {
      await this.broker.coordinate({
        topic: this.topic,
        group: this.group,
        member: this.member,
        leaseMs: this.options.leaseMs,
        acquire: [],
        release: [...this.runs.keys()],
        inFlight: {},
        orderViolations: this.unreportedViolations,
        leaving: true,
      });
      this.unreportedViolations = 0;
    } catch (error) {
      // The leases expire on their own; nothing is lost.
      this.reportError(error);
    }
    this.runs.clear();
    this.hooks.onClose?.();
    return { timedOut: false };
  }

  // ---------------------------------------------------------------- events

  private emitIfListened<E extends Exclude<keyof WorkerEvents, 'error'>>(event: E, build: () => WorkerEvents[E][0]): void {
    if (this.listenerCount(event) === 0) return;
    (this.emit as (event: E, payload: WorkerEvents[E][0]) => boolean)(event, build());
  }

  private reportError(error: unknown): void {
    if (this.listenerCount('error') === 0) return;
    this.emit('error', error instanceof Error ? error : new Error(String(error)));
  }
}

/** A PermanentError, recognised by its code: a handler may import it from another copy of botqueue. */
function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

function hasPermanentCode(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === ErrorCodes.PERMANENT_FAILURE;
}

/** The `ctx` a handler gets. The abort signal is built only if the handler reads it. */
class MessageContext implements HandlerContext {
  private combined: AbortSignal | undefined;

  constructor(
    private readonly broker: Broker,
    readonly topic: string,
    readonly group: string,
    private readonly messageId: string,
    readonly attempt: number,
    private readonly leaseSignal: AbortSignal,
    private readonly shutdownSignal: AbortSignal,
  ) {}

  get signal(): AbortSignal {
    this.combined ??= AbortSignal.any([this.leaseSignal, this.shutdownSignal]);
    return this.combined;
  }

  async once<R>(name: string, fn: () => R | Promise<R>): Promise<R> {
    if (typeof name !== 'string' || name.length === 0) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'ctx.once needs a non-empty step name');
    const recorded = await this.broker.getEffect(this.topic, this.group, this.messageId, name);
    if (recorded !== undefined) return (recorded === null ? undefined : JSON.parse(recorded)) as R;
    const result = await fn();
    const json = result === undefined ? null : (JSON.stringify(result) ?? null);
    await this.broker.putEffect(this.topic, this.group, this.messageId, name, json);
    return result;
  }
}
