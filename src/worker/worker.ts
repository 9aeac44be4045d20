import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Envelope } from '../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { KeyedScheduler, type RunOutcome } from '../core/keyed-scheduler.js';
import type { Broker, Delivery, TopicInfo } from '../brokers/broker.js';
import { Instrumentation, type WorkerEvents } from './events.js';
import { MessageContext, type HandlerContext, type Preparer, type Publisher } from './handler-context.js';
import { Membership } from './membership.js';
import { resolveWorkerOptions, type WorkerOptions } from './options.js';
import { PartitionReader, type Item } from './partition-reader.js';
import { DONE, PARK, Settler } from './settler.js';

export type { HandlerContext, HandlerPublishReceipt } from './handler-context.js';

/** How a client plugs a worker in: topic creation on first use, and bookkeeping on close. */
export interface WorkerHooks {
  resolveTopic?: () => Promise<TopicInfo>;
  onClose?: () => void;
  /** How ctx.publish and ctx.reply store messages (the client's publishBatch); without it they throw. */
  publish?: Publisher;
  /** Validates messages without storing them: with it, on a backend with `publishWithAck`, they are stored with the ack. */
  prepare?: Preparer;
  /** Staged messages were stored with an ack (for the client's `published` event). */
  onStagedStored?: (topic: string, messages: number, durationMs: number) => void;
}

export type Handler<P = unknown> = (message: Envelope<P>, ctx: HandlerContext) => unknown;

export interface CloseResult {
  /** True when handlers were still running at the deadline; their messages are redelivered after the lease expires. */
  timedOut: boolean;
}

/** Already-settled outcomes, shared: a run that ends without work needs no promise of its own. */
const DONE_NOW = Promise.resolve(DONE);
const PARK_NOW = Promise.resolve(PARK);

/**
 * Runs a handler over a topic for one consumer group: owns a balanced share of the partitions,
 * keeps each key's messages one at a time and in order, retries with backoff, applies the
 * failure policy, and settles each message with its lease's fence.
 *
 * The work is split by ownership, each part with its own state: the `PartitionReader` fills the
 * keyed scheduler from the owned partitions, the `Settler` settles what handlers did (failure
 * policy included), the `Membership` keeps the leases and the balance. This class wires them
 * and runs the handler.
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
  private readonly hooks: WorkerHooks;
  private readonly scheduler: KeyedScheduler<Item>;
  private readonly instrumentation: Instrumentation;
  private readonly reader: PartitionReader;
  private readonly membership: Membership;
  private readonly settler: Settler;
  private unwatch: (() => void) | undefined;
  private closed: Promise<CloseResult> | undefined;
  private readonly shutdownAbort = new AbortController();
  /** ctx.publish and ctx.reply are staged and stored with the ack (the backend can, and the client prepares). */
  private readonly stagesPublishes: boolean;

  constructor(broker: Broker, topic: string, handler: Handler<P>, options: unknown, hooks: WorkerHooks = {}) {
    super();
    this.broker = broker;
    this.topic = topic;
    this.handler = handler;
    this.options = resolveWorkerOptions(options);
    this.group = this.options.group;
    this.member = `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.hooks = hooks;
    this.stagesPublishes = broker.capabilities.publishWithAck === true && hooks.prepare !== undefined;
    this.instrumentation = new Instrumentation(this);
    this.scheduler = new KeyedScheduler<Item>({
      concurrency: this.options.concurrency,
      run: (item, key, releaseSlot) => this.runItem(item, key, releaseSlot),
      onRunError: (error) => this.instrumentation.reportError(error),
    });
    this.reader = new PartitionReader(broker, topic, this.group, this.options, this.scheduler, this.instrumentation);
    this.membership = new Membership(broker, topic, this.group, this.member, this.options, this.reader, this.instrumentation);
    this.settler = new Settler(broker, topic, this.group, this.options, this.reader, this.membership, this.instrumentation, hooks.onStagedStored);
    this.ready = this.start();
    // `ready` is also observed by start's own error path; keep an unobserved rejection from crashing.
    this.ready.catch(() => undefined);
  }

  /** Messages held in memory (buffered and running). */
  get buffered(): number {
    return this.scheduler.size;
  }

  /** Messages of one key held in memory (its running or waiting head included): a waiting key holds one. */
  bufferedForKey(key: string): number {
    return this.scheduler.keyLength(key);
  }

  /** Partitions this worker owns now. */
  get ownedPartitions(): number[] {
    return [...this.reader.runs.keys()].sort((a, b) => a - b);
  }

  /** Per-key order violations this worker has seen (must stay 0). */
  get orderViolations(): number {
    return this.membership.orderViolations;
  }

  /** Times a handler deferred a message with `RetryLater` on this worker (each is also a `deferred` event). */
  get deferrals(): number {
    return this.settler.deferrals;
  }

  private async start(): Promise<void> {
    const info = this.hooks.resolveTopic === undefined ? await this.broker.getTopic(this.topic) : await this.hooks.resolveTopic();
    if (info === undefined) throw new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${this.topic}" does not exist`);
    await this.broker.ensureGroup(this.topic, this.group);
    this.unwatch = this.broker.watch(this.topic, (partition) => this.reader.onPublished(partition));
    await this.membership.join(info.partitions);
  }

  /**
   * Runs one message's attempt. The hot path (once per message) is plain functions over one
   * promise, the one the settlement flush resolves: no async frames, no chained layers.
   */
  private runItem(item: Item, schedulerKey: string, releaseSlot: () => void): Promise<RunOutcome> {
    const { run, delivery } = item;
    if (!this.reader.owns(run)) {
      this.reader.discard(run, delivery);
      return DONE_NOW;
    }
    if (item.parked) return PARK_NOW;
    const key = delivery.key;
    if (key !== null) {
      run.waiting.delete(key);
      if (!run.order.observe(key, delivery.seq)) this.membership.recordOrderViolation(run.partition, delivery.seq);
    }
    const attempt = item.attempts + 1;
    item.started = performance.now();
    run.inFlight++;
    this.instrumentation.emitIfListened('delivered', () => ({ topic: this.topic, group: this.group, partition: run.partition, attempt, queuedMs: Math.max(0, Date.now() - delivery.publishedAt) }));
    let result: unknown;
    let ctx: MessageContext;
    try {
      const envelope: Envelope<P> = {
        id: delivery.id,
        topic: this.topic,
        key,
        partition: delivery.partition,
        seq: delivery.seq,
        payload: parsePayload(delivery) as P,
        headers: delivery.headers,
        publishedAt: delivery.publishedAt,
        attempt,
        notBefore: delivery.notBefore,
      };
      item.staged = undefined;
      ctx = new MessageContext(this.broker, this.topic, this.group, delivery.id, attempt, run.abort.signal, this.shutdownAbort.signal, delivery.headers, this.hooks.publish, () => run.leaseValidUntil, this.hooks.prepare, this.stagesPublishes);
      result = this.handler(envelope, ctx);
    } catch (error) {
      return this.handled(item, schedulerKey, releaseSlot, true, error);
    }
    const succeeded = (): Promise<RunOutcome> => {
      // Publishes staged but not awaited by the handler are waited for: the ack must carry them.
      const staging = ctx.whenStaged();
      if (staging === undefined) return this.handled(item, schedulerKey, releaseSlot, false, undefined);
      return staging.then(() => {
        item.staged = ctx.staged;
        return this.handled(item, schedulerKey, releaseSlot, false, undefined);
      });
    };
    // A handler that finished synchronously costs no extra turn.
    if (!isThenable(result)) return succeeded();
    return Promise.resolve(result).then(succeeded, (error: unknown) => this.handled(item, schedulerKey, releaseSlot, true, error));
  }

  /** The handler is done: settle its outcome. `run.inFlight` drops once the settlement is over. */
  private handled(item: Item, schedulerKey: string, releaseSlot: () => void, failed: boolean, failure: unknown): Promise<RunOutcome> {
    // Another key may start while this one's settlement is written.
    releaseSlot();
    return failed ? this.settler.fail(item, failure, schedulerKey) : this.settler.succeed(item);
  }

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
    this.membership.stop();
    this.reader.stop();
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
    await this.membership.idle();
    if (result === 'timeout') {
      this.shutdownAbort.abort(new BotqueueError(ErrorCodes.SHUTDOWN_TIMEOUT, 'worker shutdown deadline passed'));
      this.hooks.onClose?.();
      return { timedOut: true };
    }
    await this.membership.leave();
    this.reader.clear();
    this.hooks.onClose?.();
    return { timedOut: false };
  }
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/** The payload's value; a record's text that is not JSON (a plain Kafka producer's) is the string itself. */
function parsePayload(delivery: Delivery): unknown {
  if (delivery.payloadMayBeText !== true) return JSON.parse(delivery.payload);
  try {
    return JSON.parse(delivery.payload);
  } catch {
    return delivery.payload;
  }
}
