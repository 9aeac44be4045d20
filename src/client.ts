import { EventEmitter } from 'node:events';
import type { StatsOptions } from './brokers/idle.js';
import type { BrokerEvents } from './brokers/events.js';
import { DEFAULT_MAX_MESSAGE_BYTES, checkName, prepareMessage, type PreparedMessage, type PublishInput, type PublishReceipt } from './core/envelope.js';
import { BotqueueError, ErrorCodes } from './core/errors.js';
import { CONNECT_OPTIONS_SPEC, DEFAULT_DEDUP_WINDOW_MS, DEFAULT_PARTITIONS, TOPIC_SETTINGS_SPEC } from './core/limits.js';
import { validateOptions } from './core/options.js';
import { redactUrl } from './core/redact.js';
import type { Broker, DeadLetter, DeadLetterFilter, DeadLetterListOptions, TopicInfo, TopicStats } from './brokers/broker.js';
import { Worker, type Handler } from './worker/worker.js';
import type { WorkerOptions } from './worker/options.js';
import { PLATFORMS, isPlatform, outboundInput, outboundTopic, type Platform, type ReplyMessage, type SendOptions } from './outbound/address.js';

/** Default URL when none is given: the embedded SQLite backend, zero set-up. */
export const DEFAULT_URL = 'sqlite:./data/botqueue.db';

export type BackendName = 'sqlite' | 'memory' | 'rabbitmq' | 'kafka';

/**
 * What a botqueue URL names, read the way connect() reads it but without opening anything (for
 * tools such as `botqueue doctor`, which must not reach into a backend's folder themselves).
 */
export interface UrlDescription {
  /** The backend the scheme names; undefined when no backend has that scheme. */
  backend: BackendName | undefined;
  /** The URL's scheme, lower-case with its colon (`amqp:`); undefined when it has none. */
  scheme: string | undefined;
  /** The URL to show: passwords hidden; for RabbitMQ the store is taken out of the query (see `store`). */
  url: string;
  /** What connect(url) would throw reading the URL (unsupported scheme, invalid option, no store); undefined when it reads. */
  error?: BotqueueError;
  /** SQLite: the database file as written (a relative one is relative to the working directory), or `:memory:`. */
  path?: string;
  /** RabbitMQ: the namespace of its exchanges, queues and store schema. */
  namespace?: string;
  /** RabbitMQ: the shared store's URL (passwords hidden) and where it came from (`?store=` or BOTQUEUE_STORE_URL). */
  store?: { url: string; from: 'url' | 'env' };
}

interface Backend {
  name: BackendName;
  /** The backend itself (with its driver). */
  load(): Promise<{ open(url: string): Promise<Broker> }>;
  /** What the URL says, read by the backend's own URL parser (loaded without the backend's driver); throws what connect would. */
  describe(url: string, env: NodeJS.ProcessEnv): Promise<Partial<UrlDescription>>;
}

const rabbitmq: Backend = {
  name: 'rabbitmq',
  load: () => import('./brokers/rabbitmq/index.js'),
  describe: async (url, env) => {
    const { parseRabbitmqUrl } = await import('./brokers/rabbitmq/options.js');
    const { options } = parseRabbitmqUrl(url, {}, env);
    const from = new URL(url).searchParams.has('store') ? 'url' : 'env';
    return { namespace: options.namespace, store: { url: redactUrl(options.storeUrl), from } };
  },
};

/** Backends by URL scheme. Loaded lazily, so a backend's driver is needed only by its users. */
const backends: Record<string, Backend> = {
  'sqlite:': {
    name: 'sqlite',
    load: () => import('./brokers/sqlite/index.js'),
    describe: async (url) => ({ path: (await import('./brokers/sqlite/options.js')).parseSqliteUrl(url).path }),
  },
  'memory:': {
    name: 'memory',
    load: () => import('./brokers/memory/index.js'),
    describe: async (url) => {
      (await import('./brokers/memory/url.js')).parseMemoryUrl(url);
      return {};
    },
  },
  'amqp:': rabbitmq,
  'amqps:': rabbitmq,
  'kafka:': {
    name: 'kafka',
    load: () => import('./brokers/kafka/index.js'),
    describe: async (url, env) => {
      const { parseKafkaUrl } = await import('./brokers/kafka/options.js');
      const options = parseKafkaUrl(url, {}, env);
      const from = /[?&]store=/.test(url) ? 'url' : 'env';
      return { namespace: options.namespace, store: { url: redactUrl(options.storeUrl), from } };
    },
  },
};

function schemeOf(url: string): string | undefined {
  return /^[a-z][a-z0-9+.-]*:/i.exec(url)?.[0].toLowerCase();
}

function unsupportedUrl(url: string): BotqueueError {
  return new BotqueueError(
    ErrorCodes.UNSUPPORTED_URL,
    `unsupported botqueue URL "${redactUrl(url)}": supported schemes are ${Object.keys(backends).join(', ')} (e.g. sqlite:./data/botqueue.db, memory: or amqp://guest:guest@127.0.0.1:5672)`,
    { details: { supported: Object.keys(backends) } },
  );
}

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
  const scheme = schemeOf(url);
  const backend = scheme === undefined ? undefined : backends[scheme];
  if (backend === undefined) throw unsupportedUrl(url);
  const opened = await backend.load();
  return new Botqueue(await opened.open(url), resolved);
}

/**
 * Reads a URL as connect() would, opening nothing and loading no driver: which backend it
 * names, how to show it, and what the backend reads from it, or the error connect() would
 * throw reading it (returned in `error`, not thrown). `env` supplies BOTQUEUE_STORE_URL.
 *
 * @example
 * await describeUrl('amqp://bot:pw@rabbit:5672?store=postgres://u:pw@db/app');
 * // → { backend: 'rabbitmq', scheme: 'amqp:', url: 'amqp://bot:***@rabbit:5672', namespace: 'botqueue',
 * //     store: { url: 'postgres://u:***@db/app', from: 'url' } }
 */
export async function describeUrl(url: string, env: NodeJS.ProcessEnv = process.env): Promise<UrlDescription> {
  const scheme = schemeOf(url);
  const backend = scheme === undefined ? undefined : backends[scheme];
  const description: UrlDescription = { backend: backend?.name, scheme, url: backend?.name === 'rabbitmq' || backend?.name === 'kafka' ? withoutStore(redactUrl(url)) : redactUrl(url) };
  if (backend === undefined) return { ...description, error: unsupportedUrl(url) };
  try {
    return { ...description, ...(await backend.describe(url, env)) };
  } catch (error) {
    if (error instanceof BotqueueError) return { ...description, error };
    throw error;
  }
}

/** A RabbitMQ URL without its `store` parameter (shown on its own). */
function withoutStore(url: string): string {
  const at = url.indexOf('?');
  if (at < 0) return url;
  const params = url
    .slice(at + 1)
    .split('&')
    .filter((part) => part !== '' && !/^store(=|$)/.test(part));
  return params.length === 0 ? url.slice(0, at) : `${url.slice(0, at)}?${params.join('&')}`;
}

/** Dead-letter operations: inspect, redrive (send back to the topic and key) and purge. */
export interface DeadLetters {
  list(options?: DeadLetterListOptions): Promise<DeadLetter[]>;
  redrive(filter: DeadLetterFilter): Promise<number>;
  purge(filter: DeadLetterFilter): Promise<number>;
}

/** The client's events (see `Botqueue.events`). */
export interface ClientEvents extends BrokerEvents {
  /**
   * A publish call stored its messages (`duplicates` of them were already stored: dropped, not
   * stored twice). Also for a handler's staged ctx.publish/ctx.reply, once stored with its ack
   * (`durationMs` is then from the handler's start to the ack).
   */
  published: [{ topic: string; messages: number; duplicates: number; durationMs: number }];
  /** A publish call failed: nothing of it may be assumed stored (publish again; ids make it safe). */
  'publish-failed': [{ topic: string; messages: number; error: Error }];
}

export class Botqueue {
  /** The backend this client runs on (for tools; handlers never need it). */
  readonly broker: Broker;
  readonly options: Readonly<ConnectOptions>;
  readonly deadLetters: DeadLetters;
  private readonly topics = new Map<string, Promise<TopicInfo>>();
  private readonly workers = new Set<{ close(): Promise<unknown> }>();
  private closed = false;
  /**
   * What the client does, for logs and metrics: publish outcomes (duplicates counted) and,
   * forwarded from the backend, connection changes and failures of background work. Emitted
   * only while something listens. Workers have their own events (`worker.on(...)`).
   */
  readonly events = new EventEmitter<ClientEvents>();

  constructor(broker: Broker, options: ConnectOptions) {
    this.broker = broker;
    this.options = options;
    // Rare events (a connection dropped, background work failed): forwarded as they come.
    broker.events.on('connection-lost', (payload) => this.events.emit('connection-lost', payload));
    broker.events.on('connection-restored', (payload) => this.events.emit('connection-restored', payload));
    broker.events.on('background-error', (payload) => this.events.emit('background-error', payload));
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
    const prepared = await this.prepare(topic, messages);
    if (prepared.length === 0) return [];
    if (this.events.listenerCount('published') === 0 && this.events.listenerCount('publish-failed') === 0) return this.open().publish(topic, prepared);
    const started = performance.now();
    try {
      const receipts = await this.open().publish(topic, prepared);
      let duplicates = 0;
      for (const receipt of receipts) if (receipt.duplicate) duplicates++;
      this.events.emit('published', { topic, messages: receipts.length, duplicates, durationMs: performance.now() - started });
      return receipts;
    } catch (error) {
      this.events.emit('publish-failed', { topic, messages: prepared.length, error: error instanceof Error ? error : new Error(String(error)) });
      throw error;
    }
  }

  /** Validates messages for `topic` (created on first use) and gives each its partition, id and encoded payload. */
  private async prepare(topic: string, messages: readonly PublishInput[]): Promise<PreparedMessage[]> {
    if (!Array.isArray(messages)) throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, 'publishBatch needs an array of messages');
    const info = await this.topic(topic);
    const now = Date.now();
    const single = messages.length === 1;
    return messages.map((m, i) => prepareMessage(m, info.partitions, this.options.maxMessageBytes, now, single ? undefined : i));
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
      publish: (target, messages) => this.publishBatch(target, messages),
      prepare: (target, messages) => this.prepare(target, messages),
      // Staged publishes are new ids derived from the handled message: none is a duplicate.
      onStagedStored: (target, count, durationMs) => this.events.emit('published', { topic: target, messages: count, duplicates: 0, durationMs }),
    });
    this.workers.add(worker);
    return worker;
  }

  /**
   * Sends a message to a platform chat through its outbound queue (`outbound.<platform>`, keyed
   * by chat): stored durably now, sent by the sender of `botqueue start` (or `startSender`) in
   * the chat's order and within the platform's limits. For proactive messages; a handler
   * answers the update it handles with `ctx.reply`. Give `id` to make a retried call safe.
   *
   * @example
   * await bq.send('telegram', '42', 'The build is green');
   * await bq.send('slack', 'C123', { text: 'deployed', blocks: [...] }, { id: 'deploy-981' });
   */
  send(platform: Platform, chat: string | number, message: ReplyMessage, options: SendOptions & { id?: string } = {}): Promise<PublishReceipt> {
    if (!isPlatform(platform)) throw new BotqueueError(ErrorCodes.INVALID_OPTION, `bq.send: unknown platform ${JSON.stringify(platform)} (known: ${PLATFORMS.join(', ')})`, { details: { option: 'platform' } });
    if ((typeof chat !== 'string' || chat === '') && !Number.isSafeInteger(chat)) throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, `bq.send needs a chat id (a non-empty string or an integer), got ${JSON.stringify(chat)}`);
    const { id, ...sendOptions } = options;
    return this.publish(outboundTopic(platform), outboundInput({ platform, chat: String(chat) }, message, sendOptions, id));
  }

  /**
   * Backlog, in flight, oldest age, dead letters, parked keys and order violations per topic,
   * group and partition; per group when a member was last seen, and `idle` when none is live
   * and none was seen for `idleAfterMs` (default 5 minutes).
   */
  stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]> {
    return this.open().stats(topic, options);
  }

  /**
   * Deletes a consumer group of a topic: its pending messages (those no other group needs go
   * too), leases, dead letters and recorded steps. Refused while the group has live members.
   *
   * @example
   * await bq.deleteGroup('updates', 'readme-example');
   */
  async deleteGroup(topic: string, group: string): Promise<void> {
    checkName('topic', topic);
    checkName('group', group);
    const [stats] = await this.open().stats(topic);
    const found = stats?.groups.find((g) => g.group === group);
    if (stats === undefined) throw new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist`, { details: { topic } });
    if (found === undefined) {
      throw new BotqueueError(ErrorCodes.GROUP_NOT_FOUND, `topic "${topic}" has no group "${group}"; its groups: ${stats.groups.map((g) => g.group).join(', ') || 'none'}`, { details: { topic, group } });
    }
    if (found.members > 0) throw liveMembers(topic, [found]);
    await this.open().deleteGroup(topic, group);
  }

  /**
   * Deletes a topic with its messages, groups, dedup records and dead letters. Refused while
   * any of its groups has live members.
   */
  async deleteTopic(topic: string): Promise<void> {
    checkName('topic', topic);
    const [stats] = await this.open().stats(topic);
    if (stats === undefined) throw new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist`, { details: { topic } });
    const live = stats.groups.filter((g) => g.members > 0);
    if (live.length > 0) throw liveMembers(topic, live);
    await this.open().deleteTopic(topic);
    this.topics.delete(topic);
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

function liveMembers(topic: string, groups: TopicStats['groups']): BotqueueError {
  const which = groups.map((g) => `${g.group} (${g.members} live member${g.members === 1 ? '' : 's'})`).join(', ');
  return new BotqueueError(ErrorCodes.GROUP_HAS_MEMBERS, `topic "${topic}": ${which}; stop its workers first (a member counts as live until its heartbeat expires)`, {
    details: { topic, groups: groups.map((g) => g.group) },
  });
}

function checkFilter(filter: DeadLetterFilter): DeadLetterFilter {
  if (typeof filter !== 'object' || filter === null) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'a dead-letter filter must be an object, e.g. { topic, group }');
  return filter;
}
