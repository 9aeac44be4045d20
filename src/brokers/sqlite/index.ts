/**
 * The embedded SQLite backend (the default): one file holds topics, messages, leases, dead
 * letters and idempotency records, shared by every process that opens it.
 *
 * @example
 * const broker = await open('sqlite:./data/botqueue.db');
 */
import { resolveIdleAfterMs, type StatsOptions } from '../idle.js';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import type Database from 'better-sqlite3';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { checkName, type PreparedMessage, type PublishReceipt } from '../../core/envelope.js';
import { BrokerEventEmitter } from '../events.js';
import type {
  Broker,
  BrokerCapabilities,
  CoordinateRequest,
  CoordinateResult,
  MemberReport,
  DeadLetter,
  DeadLetterFilter,
  DeadLetterListOptions,
  Delivery,
  SettleOutcome,
  Settlement,
  TopicInfo,
  TopicSettings,
  TopicStats,
} from '../broker.js';
import { Catalog, topicInfo } from './catalog.js';
import { Coordinator } from './coordinate.js';
import { Counts } from './counts.js';
import { DeadLetters, DLQ_CHUNK, type ChunkResult } from './dead-letters.js';
import { checkDeadLetterFilter } from '../dead-letter-filter.js';
import { FilterQueries } from './dlq-filter.js';
import { Effects } from './effects.js';
import { closedError, toBrokerError } from './errors.js';
import { Fetcher } from './fetch.js';
import { Housekeeping } from './housekeeping.js';
import { MessageStore } from './message-store.js';
import { parseSqliteUrl, resolvePath, resolveSqliteOptions, type SqliteOptions } from './options.js';
import { Publisher } from './publish.js';
import { openDatabase } from './schema.js';
import { Settler } from './settle.js';
import { Stats } from './stats.js';
import { Lifecycle } from './lifecycle.js';
import { Topics } from './topics.js';
import { WriteTx } from './transaction.js';
import { Watchers } from './watchers.js';
import { GroupCommitWriter } from './writer.js';

export type { SqliteOptions } from './options.js';

/** How often expired dedup records and effects are deleted, in ms. */
const HOUSEKEEPING_INTERVAL_MS = 30_000;

export class SqliteBroker implements Broker {
  readonly capabilities: BrokerCapabilities;
  readonly events = new BrokerEventEmitter();
  /** The absolute path of the file. */
  readonly path: string;

  private readonly db: Database.Database;
  private readonly catalog: Catalog;
  private readonly writer: GroupCommitWriter;
  private readonly watchers: Watchers;
  private readonly topics: Topics;
  private readonly publisher: Publisher;
  private readonly fetcher: Fetcher;
  private readonly settler: Settler;
  private readonly coordinator: Coordinator;
  private readonly effects: Effects;
  private readonly deadLetters: DeadLetters;
  private readonly statistics: Stats;
  private readonly lifecycle: Lifecycle;
  private readonly housekeeping: Housekeeping;
  private readonly housekeepingTimer: NodeJS.Timeout;
  private closed = false;
  private closing: Promise<void> | undefined;

  /**
   * The durability settings in force on this broker's connection, read back from SQLite (not
   * from the options asked for): what a test or an operator checks against the contract.
   */
  settingsInForce(): { journalMode: string; synchronous: 'OFF' | 'NORMAL' | 'FULL' | 'EXTRA' } {
    const journalMode = String(this.db.pragma('journal_mode', { simple: true }));
    const level = Number(this.db.pragma('synchronous', { simple: true }));
    return { journalMode, synchronous: (['OFF', 'NORMAL', 'FULL', 'EXTRA'] as const)[level] ?? 'OFF' };
  }

  /** Opens (creating when missing, with its directory) the file at `path`. */
  constructor(path: string, options?: SqliteOptions) {
    const settings = resolveSqliteOptions('openSqlite', options);
    this.path = resolvePath(path);
    try {
      if (this.path !== ':memory:') mkdirSync(dirname(this.path), { recursive: true });
      this.db = openDatabase(this.path, settings);
    } catch (error) {
      throw toBrokerError(error, `open ${this.path}`);
    }
    // `:memory:` (handy in tests) lives and dies with this connection.
    const onDisk = this.path !== ':memory:';
    this.capabilities = Object.freeze({ assignsSeq: true, multiProcess: onDisk, durable: onDisk, publishWithAck: true });
    const db = this.db;
    const now = settings.now;
    this.catalog = new Catalog(db);
    const dataVersion = db.prepare<[], number>('PRAGMA data_version').pluck();
    this.watchers = new Watchers(() => dataVersion.get()!);
    const counts = new Counts(db);
    const tx = new WriteTx(
      db,
      counts,
      (topic) => this.watchers.has(topic),
      () => this.catalog.forget(),
    );
    this.writer = new GroupCommitWriter(db, tx, settings.maxBatch, settings.busyTimeoutMs, (notes) => this.watchers.dispatch(notes));
    const store = new MessageStore(db, counts);
    this.topics = new Topics(db, this.catalog, now, counts);
    this.publisher = new Publisher(db, this.catalog, store, now);
    this.fetcher = new Fetcher(db, this.catalog);
    this.settler = new Settler(db, this.catalog, store, counts, this.publisher);
    this.coordinator = new Coordinator(db, this.catalog, this.topics, now);
    this.effects = new Effects(db, this.catalog, now);
    this.deadLetters = new DeadLetters(db, this.catalog, store, new FilterQueries(db), now, counts);
    this.statistics = new Stats(db, this.catalog, now);
    this.lifecycle = new Lifecycle(db, this.catalog, counts);
    this.housekeeping = new Housekeeping(db, now);
    this.housekeepingTimer = setInterval(this.runHousekeeping, HOUSEKEEPING_INTERVAL_MS);
    this.housekeepingTimer.unref();
  }

  ensureTopic(topic: string, settings: TopicSettings): Promise<TopicInfo> {
    return this.guard('create the topic', () => {
      checkName('topic', topic);
      // The settings were checked by the client (core/limits.ts).
      return this.write(1, `create topic "${topic}"`, () => this.topics.ensureTopic(topic, settings));
    });
  }

  getTopic(topic: string): Promise<TopicInfo | undefined> {
    return this.read('read the topic', () => {
      const row = this.catalog.topic(topic);
      return row === undefined ? undefined : topicInfo(row);
    });
  }

  deleteGroup(topic: string, group: string): Promise<boolean> {
    return this.guard('delete the group', () => this.write(1, `delete group "${group}" of topic "${topic}"`, () => this.lifecycle.deleteGroup(topic, group)));
  }

  deleteTopic(topic: string): Promise<boolean> {
    return this.guard('delete the topic', () => this.write(1, `delete topic "${topic}"`, () => this.lifecycle.deleteTopic(topic)));
  }

  ensureGroup(topic: string, group: string): Promise<void> {
    return this.guard('subscribe the group', () => {
      checkName('topic', topic);
      checkName('group', group);
      return this.write(1, `subscribe group "${group}" to topic "${topic}"`, (tx) => void this.topics.ensureGroup(tx, topic, group));
    });
  }

  publish(topic: string, messages: PreparedMessage[]): Promise<PublishReceipt[]> {
    return this.guard('publish', () => {
      if (messages.length === 0) return Promise.resolve([]);
      this.publisher.check(topic, messages);
      return this.write(messages.length, `publish to topic "${topic}"`, (tx) => this.publisher.publish(tx, topic, messages));
    });
  }

  report(report: MemberReport): Promise<void> {
    return this.guard('report', () => this.write(1, `report member "${report.member}"`, (tx) => this.coordinator.report(tx, report)));
  }

  coordinate(request: CoordinateRequest): Promise<CoordinateResult> {
    return this.guard('coordinate', () => {
      checkName('group', request.group);
      return this.write(1, `coordinate member "${request.member}"`, (tx) => this.coordinator.coordinate(tx, request));
    });
  }

  fetch(topic: string, group: string, partition: number, afterSeq: number, limit: number): Promise<Delivery[]> {
    return this.read('fetch messages', () => this.fetcher.fetch(topic, group, partition, afterSeq, limit));
  }

  settle(settlements: Settlement[]): Promise<SettleOutcome[]> {
    if (settlements.length === 0) return this.guard('settle', () => Promise.resolve([]));
    return this.write(settlements.length, 'settle messages', (tx) => this.settler.settle(settlements, tx));
  }

  getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined> {
    return this.read('read an effect', () => this.effects.get(topic, group, messageId, name));
  }

  putEffect(topic: string, group: string, messageId: string, name: string, result: string | null): Promise<void> {
    return this.write(1, 'record an effect', () => this.effects.put(topic, group, messageId, name, result));
  }

  listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]> {
    return this.read('list dead letters', () => this.deadLetters.list(checkDeadLetterFilter('listDeadLetters', options, true)));
  }

  redriveDeadLetters(filter: DeadLetterFilter): Promise<number> {
    return this.inChunks('redrive dead letters', 'redriveDeadLetters', filter, (tx, checked, after) => this.deadLetters.redriveChunk(tx, checked, after));
  }

  purgeDeadLetters(filter: DeadLetterFilter): Promise<number> {
    return this.inChunks('purge dead letters', 'purgeDeadLetters', filter, (tx, checked, after) => this.deadLetters.purgeChunk(tx, checked, after));
  }

  stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]> {
    return this.read('read stats', () => this.statistics.stats(topic, resolveIdleAfterMs(options)));
  }

  watch(topic: string, listener: (partition: number) => void): () => void {
    if (this.closed) throw closedError();
    if (typeof listener !== 'function') {
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'watch: listener must be a function', { details: { option: 'listener' } });
    }
    return this.watchers.add(topic, listener);
  }

  /** Writes what is queued, stops the timers and closes the file. Calling it again is harmless. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    clearInterval(this.housekeepingTimer);
    this.watchers.close();
    await this.writer.idle();
    try {
      this.db.close();
    } catch (error) {
      throw toBrokerError(error, `close ${this.path}`);
    }
  }

  /** A write, queued for the next group commit. */
  private write<T>(weight: number, what: string, run: (tx: WriteTx) => T): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    return this.writer.submit(weight, what, run);
  }

  /** A read, run at once (WAL readers never wait for the writer). */
  private read<T>(what: string, run: () => T): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    try {
      return Promise.resolve(run());
    } catch (error) {
      return Promise.reject(toBrokerError(error, what));
    }
  }

  /** Turns synchronous throws (validation) into a rejected promise. */
  private guard<T>(what: string, run: () => Promise<T>): Promise<T> {
    if (this.closed) return Promise.reject(closedError());
    try {
      return run();
    } catch (error) {
      return Promise.reject(toBrokerError(error, what));
    }
  }

  /** Redrive and purge: one write transaction per chunk of DLQ_CHUNK dead letters. */
  private async inChunks(
    what: string,
    where: string,
    filter: DeadLetterFilter,
    chunk: (tx: WriteTx, filter: DeadLetterFilter, afterDlqId: number) => ChunkResult,
  ): Promise<number> {
    const checked = checkDeadLetterFilter(where, filter, false);
    let after = 0;
    let total = 0;
    for (;;) {
      const result = await this.write(DLQ_CHUNK, what, (tx: WriteTx) => chunk(tx, checked, after));
      total += result.done;
      after = result.lastDlqId;
      if (result.scanned < DLQ_CHUNK) return total;
    }
  }

  private readonly runHousekeeping = (): void => {
    if (this.closed) return;
    this.writer.submit(1, 'delete expired records', () => this.housekeeping.step()).then(
      (more) => {
        if (more) setImmediate(this.runHousekeeping);
      },
      (error: unknown) => this.events.failed('delete expired records', error), // the next interval tries again
    );
  };
}

/** Opens the SQLite file at `path` (its directory is created when missing). */
export function openSqlite(path: string, options?: SqliteOptions): SqliteBroker {
  return new SqliteBroker(path, options);
}

/**
 * Opens a broker from a URL: `sqlite:<path>[?synchronous=FULL|NORMAL&busyTimeoutMs=N&maxBatch=N]`.
 *
 * @example
 * const broker = await open('sqlite:./data/botqueue.db?busyTimeoutMs=10000');
 */
export function open(url: string): Promise<Broker> {
  try {
    const { path, options } = parseSqliteUrl(url);
    return Promise.resolve(new SqliteBroker(path, options));
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
