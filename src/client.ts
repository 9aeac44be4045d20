import { DEFAULT_MAX_MESSAGE_BYTES, checkName, prepareMessage, type PublishInput, type PublishReceipt } from './core/envelope.js';
import { BotqueueError, ErrorCodes } from './core/errors.js';
import { CONNECT_OPTIONS_SPEC, DEFAULT_DEDUP_WINDOW_MS, DEFAULT_PARTITIONS, TOPIC_SETTINGS_SPEC } from './core/limits.js';
import { validateOptions } from './core/options.js';
import { redactUrl } from './core/redact.js';
import type { Broker, DeadLetter, DeadLetterFilter, DeadLetterListOptions, TopicInfo, TopicStats } from './brokers/broker.js';
import { Worker, type Handler } from './worker/worker.js';
import type { WorkerOptions } from './worker/options.js';

/** Default URL when none is given: the embedded SQLite backend, zero set-up. */
export const DEFAULT_URL = 'sqlite:./data/botqueue.db';

/** Backends by URL scheme. Loaded lazily, so a backend's driver is needed only by its users. */
const backends: Record<string, () => Promise<{ open(url: string): Promise<Broker> }>> = {
  'sqlite:': () => import('./brokers/sqlite/index.js'),
  'memory:': () => import('./brokers/memory/index.js'),
  'amqp:': () => import('./brokers/rabbitmq/index.js'),
  'amqps:': () => import('./brokers/rabbitmq/index.js'),
};

export interface ConnectOptions {
  /** Largest accepted message (payload JSON plus headers), in bytes. Default 256 KiB. */
  maxMessageBytes: number;
  /** Partitions of a topic created implicitly (first publish or worker). Default 16. */
  defaultPartitions: number;
  /** Dedup window of a topic created implicitly, in ms. Default 24 h. */
  defaultDedupWindowMs: number;
}

export interface TopicOptions {
  /** Fixed at creation. Default 16 (or `defaultPartitions`). */
  partitions?: number;
  /** How long a message id is remembered to drop duplicates, in ms. Default 24 h. */
  dedupWindowMs?: number;
}

/**
 * Opens a botqueue on the backend the URL names: `sqlite:./path.db` (the default, embedded),
 * `memory:` (one process, for tests), `amqp://…` (RabbitMQ, with a shared PostgreSQL store from
 * `BOTQUEUE_STORE_URL`).
 *
 * @example
 * const bq = await connect(process.env.BOTQUEUE_URL ?? 'sqlite:./data/botqueue.db');
 */
export async function connect(url: string = DEFAULT_URL, options?: Partial<ConnectOptions>): Promise<Botqueue> {
  const resolved = validateOptions<ConnectOptions>('connect options', CONNECT_OPTIONS_SPEC, options, {
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    defaultPartitions: DEFAULT_PARTITIONS,
    defaultDedupWindowMs: DEFAULT_DEDUP_WINDOW_MS,
  });
  if (typeof url !== 'string') throw new BotqueueError(ErrorCodes.UNSUPPORTED_URL, `connect() needs a URL string, got ${typeof url}`);
  const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase();
  const load = scheme === undefined ? undefined : backends[scheme];
  if (load === undefined) {
    throw new BotqueueError(
      ErrorCodes.UNSUPPORTED_URL,
      `unsupported botqueue URL "${redactUrl(url)}": supported schemes are ${Object.keys(backends).join(', ')} (e.g. sqlite:./data/botqueue.db, memory: or amqp://guest:guest@127.0.0.1:5672)`,
      { details: { supported: Object.keys(backends) } },
    );
  }
  const backend = await load();
  return new Botqueue(await backend.open(url), resolved);
}

/** Dead-letter operations: inspect, redrive (send back to the topic and key) and purge. */
export interface DeadLetters {
  list(options?: DeadLetterListOptions): Promise<DeadLetter[]>;
  redrive(filter: DeadLetterFilter): Promise<number>;
  purge(filter: DeadLetterFilter): Promise<number>;
}

export class Botqueue {
  /** The backend this client runs on (for tools; handlers never need it). */
  readonly broker: Broker;
  readonly options: Readonly<ConnectOptions>;
  readonly deadLetters: DeadLetters;
  private readonly topics = new Map<string, Promise<TopicInfo>>();
  private readonly workers = new Set<{ close(): Promise<unknown> }>();
  private closed = false;

  constructor(broker: Broker, options: ConnectOptions) {
    this.broker = broker;
    this.options = options;
    this.deadLetters = {
      list: (opts = {}) => this.open().listDeadLetters(opts),
      redrive: (filter) => this.open().redriveDeadLetters(checkFilter(filter)),
      purge: (filter) => this.open().purgeDeadLetters(checkFilter(filter)),
    };
  }

  /** Creates a topic (or checks an existing one's partition count). Topics are also created on first use. */
  async createTopic(name: string, options?: TopicOptions): Promise<TopicInfo> {
    checkName('topic', name);
    const resolved = validateOptions<TopicOptions>('topic options', TOPIC_SETTINGS_SPEC, options, {});
    const info = await this.open().ensureTopic(name, {
      partitions: resolved.partitions ?? this.options.defaultPartitions,
      dedupWindowMs: resolved.dedupWindowMs ?? this.options.defaultDedupWindowMs,
    });
    this.topics.set(name, Promise.resolve(info));
    return info;
  }

  private topic(name: string): Promise<TopicInfo> {
    let info = this.topics.get(name);
    if (info === undefined) {
      checkName('topic', name);
      info = this.open()
        .getTopic(name)
        .then((found) => found ?? this.createTopic(name));
      info.catch(() => this.topics.delete(name));
      this.topics.set(name, info);
    }
    return info;
  }

  /**
   * Stores one message durably; resolves once it would survive a crash.
   *
   * @example
   * await bq.publish('updates', { key: 'chat:42', id: 'tg:1001', payload: { text: 'hi' } });
   * // → { id: 'tg:1001', topic: 'updates', partition: 7, seq: 1, duplicate: false }
   */
  async publish<P>(topic: string, message: PublishInput<P>): Promise<PublishReceipt> {
    const [receipt] = await this.publishBatch(topic, [message]);
    return receipt!;
  }

  /** Stores several messages in one atomic, durable write. Nothing is stored if any is invalid. */
  async publishBatch<P>(topic: string, messages: readonly PublishInput<P>[]): Promise<PublishReceipt[]> {
    if (!Array.isArray(messages)) throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, 'publishBatch needs an array of messages');
    const info = await this.topic(topic);
    const now = Date.now();
    const single = messages.length === 1;
    const prepared = messages.map((m, i) => prepareMessage(m, info.partitions, this.options.maxMessageBytes, now, single ? undefined : i));
    if (prepared.length === 0) return [];
    return this.open().publish(topic, prepared);
  }

  /**
   * Starts a worker that runs `handler` for each message of `topic` in its group: one message
   * at a time per key, in order, up to `concurrency` keys at once.
   *
   * @example
   * const worker = bq.worker('updates', async (msg, ctx) => {
   *   await ctx.once('reply', () => sendReply(msg.payload));
   * }, { group: 'bot', concurrency: 32, maxAttempts: 5 });
   */
  worker<P = unknown>(topic: string, handler: Handler<P>, options?: Partial<WorkerOptions>): Worker<P> {
    checkName('topic', topic);
    if (typeof handler !== 'function') throw new BotqueueError(ErrorCodes.INVALID_OPTION, `worker handler must be a function, got ${typeof handler}`);
    const broker = this.open();
    const worker: Worker<P> = new Worker<P>(broker, topic, handler, options, {
      resolveTopic: () => this.topic(topic),
      onClose: () => this.workers.delete(worker),
    });
    this.workers.add(worker);
    return worker;
  }

  /** Backlog, in flight, oldest age, dead letters, parked keys and order violations per topic, group and partition. */
  stats(topic?: string): Promise<TopicStats[]> {
    return this.open().stats(topic);
  }

  /** Closes every worker of this client (each with its shutdown deadline), then the backend. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.workers].map((w) => w.close()));
    await this.broker.close();
  }

  private open(): Broker {
    if (this.closed) throw new BotqueueError(ErrorCodes.CLOSED, 'this botqueue client is closed');
    return this.broker;
  }
}

function checkFilter(filter: DeadLetterFilter): DeadLetterFilter {
  if (typeof filter !== 'object' || filter === null) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'a dead-letter filter must be an object, e.g. { topic, group }');
  return filter;
}
