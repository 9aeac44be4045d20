/**
 * The shared coordination store on PostgreSQL (see ../store.ts for what it holds and why).
 * Every method is one transaction or one statement, so that workers and publishers on any host
 * see each other's writes; times come from the injected clock or the server's.
 *
 * One concern per file: the class below only composes them, each part taking the store's
 * `StoreContext` (pool, table names, clock, query helpers; database.ts).
 *
 * `pg` is loaded only when a store is opened: users of the other backends never need it.
 */
import type { Pool } from 'pg';
import type { MemberReport, CoordinateRequest, CoordinateResult, DeadLetter, DeadLetterFilter, DeadLetterListOptions, TopicInfo, TopicSettings } from '../../brokers/broker.js';
import { redactUrl } from '../../core/redact.js';
import type { CoordinationStore, DedupEntry, DedupOutcome, GroupSnapshot, HeldReport, MessageFailure, MessageState, NewDeadLetter } from '../store.js';
import * as backfill from './backfill.js';
import { CONNECT_TIMEOUT_MS, IDLE_IN_TRANSACTION_MS, INT8_OID, POOL_SIZE, QUERY_TIMEOUT_MS, StoreContext, loadPg } from './database.js';
import * as deadLetters from './dead-letters.js';
import * as dedup from './dedup.js';
import * as effects from './effects.js';
import { toStoreError } from './errors.js';
import * as leases from './leases.js';
import * as lifecycle from './lifecycle.js';
import * as locks from './locks.js';
import * as states from './message-states.js';
import { quoteSchema, schemaStatements } from './schema.js';
import * as stats from './stats.js';
import * as topics from './topics.js';

export interface PostgresStoreOptions {
  /** The PostgreSQL schema holding the store's tables, created when missing. */
  schema: string;
  /** Injected clock (epoch ms) for tests; the database server's clock otherwise. */
  now?: () => number;
  /** Told when an idle pooled connection breaks (e.g. the server restarted); the next query reconnects. */
  onConnectionError?: (error: Error) => void;
  /** How long one statement may take before its connection is given up (default QUERY_TIMEOUT_MS; tests shorten it). */
  queryTimeoutMs?: number;
}

/**
 * Opens (and on first use creates) the store in `options.schema` of the database at `url`.
 * Several processes may open the same schema at once.
 */
export async function openPostgresStore(url: string, options: PostgresStoreOptions): Promise<PostgresStore> {
  const schema = quoteSchema(options.schema);
  const pg = await loadPg();
  // Counts, times and seqs are BIGINT; as numbers they stay exact far beyond any epoch ms or seq.
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8_OID, (text: string) => Number(text));
  // A client that goes silent inside a transaction (its network cut, its process frozen) would
  // keep its locks, the group row's among them, and stall every member's heartbeat for as long
  // as the silence lasts: the server ends such a transaction after IDLE_IN_TRANSACTION_MS.
  const pool = new pg.Pool({
    connectionString: url,
    max: POOL_SIZE,
    types,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    application_name: 'botqueue',
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    query_timeout: options.queryTimeoutMs ?? QUERY_TIMEOUT_MS,
  });
  // An idle connection that breaks (server restart) is dropped by the pool; without a listener
  // the 'error' event would crash the process. The next query reconnects or reports the failure.
  pool.on('error', (error) => options.onConnectionError?.(error));
  const store = new PostgresStore(pool, schema, options.now);
  try {
    await store.createTables(options.schema);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw toStoreError(error, `open the store in schema "${options.schema}" at ${redactUrl(url)}`);
  }
  return store;
}

/** Drops the schema and everything in it (tests and operators cleaning up). */
export async function dropPostgresSchema(url: string, schema: string): Promise<void> {
  const quoted = quoteSchema(schema);
  const pg = await loadPg();
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
  try {
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${quoted} CASCADE`);
  } catch (error) {
    throw toStoreError(error, `drop schema "${schema}" at ${redactUrl(url)}`);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export class PostgresStore implements CoordinationStore {
  private readonly ctx: StoreContext;
  private readonly schemaStatements: string[];

  constructor(pool: Pool, quotedSchema: string, injectedNow?: () => number) {
    this.ctx = new StoreContext(pool, quotedSchema, injectedNow);
    this.schemaStatements = schemaStatements(quotedSchema);
  }

  /**
   * Creates what is missing (openPostgresStore calls it), one process at a time: concurrent
   * CREATE ... IF NOT EXISTS can still collide on the catalog's unique indexes.
   */
  async createTables(schema: string): Promise<void> {
    await this.ctx.transaction('create the tables', async (db) => {
      await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [schema]);
      for (const statement of this.schemaStatements) await db.query(statement, []);
    });
  }

  withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
    return locks.withLock(this.ctx, name, work);
  }

  tryWithLock<T>(name: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    return locks.tryWithLock(this.ctx, name, work);
  }

  now(): Promise<number> {
    return this.ctx.now();
  }

  // ---- Topics and groups (topics.ts, backfill.ts) ------------------------------------

  ensureTopic(name: string, settings: TopicSettings): Promise<TopicInfo> {
    return topics.ensureTopic(this.ctx, name, settings);
  }

  getTopic(name: string): Promise<TopicInfo | undefined> {
    return topics.getTopic(this.ctx, name);
  }

  listTopics(): Promise<TopicInfo[]> {
    return topics.listTopics(this.ctx);
  }

  ensureGroup(topic: string, group: string): Promise<{ created: boolean; backfillPending: boolean }> {
    return topics.ensureGroup(this.ctx, topic, group);
  }

  backfillPending(topic: string, group: string): Promise<boolean> {
    return backfill.backfillPending(this.ctx, topic, group);
  }

  copiedIds(topic: string, group: string, ids: string[]): Promise<Set<string>> {
    return backfill.copiedIds(this.ctx, topic, group, ids);
  }

  recordCopied(topic: string, group: string, ids: string[], batch: string): Promise<void> {
    return backfill.recordCopied(this.ctx, topic, group, ids, batch);
  }

  beginCopyBatch(topic: string, group: string, batch: string, clean: boolean): Promise<void> {
    return backfill.beginCopyBatch(this.ctx, topic, group, batch, clean);
  }

  unrecordedBatches(topic: string, group: string): Promise<number> {
    return backfill.unrecordedBatches(this.ctx, topic, group);
  }

  cleanBatches(topic: string, group: string, batches: string[]): Promise<Set<string>> {
    return backfill.cleanBatches(this.ctx, topic, group, batches);
  }

  claimCopies(topic: string, group: string, claims: Array<{ id: string; batch: string }>): Promise<Set<string>> {
    return backfill.claimCopies(this.ctx, topic, group, claims);
  }

  finishBackfill(topic: string, group: string): Promise<void> {
    return backfill.finishBackfill(this.ctx, topic, group);
  }

  listGroups(topic: string): Promise<string[]> {
    return topics.listGroups(this.ctx, topic);
  }

  // ---- Lifecycle (lifecycle.ts) --------------------------------------------------------

  deleteGroup(topic: string, group: string, dropBrokerObjects: (partitions: number) => Promise<void>): Promise<boolean> {
    return lifecycle.deleteGroup(this.ctx, topic, group, dropBrokerObjects);
  }

  deleteTopic(topic: string, dropBrokerObjects: (partitions: number, groups: string[]) => Promise<void>): Promise<boolean> {
    return lifecycle.deleteTopic(this.ctx, topic, dropBrokerObjects);
  }

  // ---- Coordination (leases.ts) ------------------------------------------------------

  reportMember(report: MemberReport): Promise<void> {
    return leases.reportMember(this.ctx, report);
  }

  coordinate(request: CoordinateRequest, held: Record<number, HeldReport>): Promise<CoordinateResult> {
    return leases.coordinate(this.ctx, request, held);
  }

  currentFences(topic: string, group: string, partitions: number[]): Promise<Map<number, { owner: string | null; fence: number }>> {
    return leases.currentFences(this.ctx, topic, group, partitions);
  }

  reportHeld(topic: string, group: string, member: string, held: Record<number, HeldReport>): Promise<void> {
    return leases.reportHeld(this.ctx, topic, group, member, held);
  }

  // ---- Dedup and effects (dedup.ts, effects.ts) --------------------------------------

  reserveIds(topic: string, entries: DedupEntry[], windowMs: number, staleAfterMs: number): Promise<DedupOutcome[]> {
    return dedup.reserveIds(this.ctx, topic, entries, windowMs, staleAfterMs);
  }

  confirmIds(topic: string, entries: DedupEntry[], windowMs: number, publishedSeqs?: number[]): Promise<void> {
    return dedup.confirmIds(this.ctx, topic, entries, windowMs, publishedSeqs);
  }

  releaseIds(topic: string, entries: DedupEntry[]): Promise<void> {
    return dedup.releaseIds(this.ctx, topic, entries);
  }

  getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined> {
    return effects.getEffect(this.ctx, topic, group, messageId, name);
  }

  putEffect(topic: string, group: string, messageId: string, name: string, result: string | null, windowMs: number): Promise<void> {
    return effects.putEffect(this.ctx, topic, group, messageId, name, result, windowMs);
  }

  // ---- Message states (message-states.ts) --------------------------------------------

  getMessageStates(topic: string, group: string, ids: string[]): Promise<Map<string, MessageState>> {
    return states.getMessageStates(this.ctx, topic, group, ids);
  }

  recordFailures(topic: string, group: string, failures: MessageFailure[], windowMs: number): Promise<void> {
    return states.recordFailures(this.ctx, topic, group, failures, windowMs);
  }

  clearMessageStates(topic: string, group: string, ids: string[]): Promise<void> {
    return states.clearMessageStates(this.ctx, topic, group, ids);
  }

  // ---- Dead letters (dead-letters.ts) ------------------------------------------------

  addDeadLetters(letters: NewDeadLetter[]): Promise<number[]> {
    return deadLetters.addDeadLetters(this.ctx, letters);
  }

  listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]> {
    return deadLetters.listDeadLetters(this.ctx, options);
  }

  matchDeadLetterIds(filter: DeadLetterFilter, afterDlqId: number, limit: number): Promise<number[]> {
    return deadLetters.matchDeadLetterIds(this.ctx, filter, afterDlqId, limit);
  }

  removeDeadLetters(dlqIds: number[], action: 'redrive' | 'purge'): Promise<DeadLetter[]> {
    return deadLetters.removeDeadLetters(this.ctx, dlqIds, action);
  }

  // ---- Stats and upkeep (stats.ts) ---------------------------------------------------

  groupSnapshots(topic: string): Promise<GroupSnapshot[]> {
    return stats.groupSnapshots(this.ctx, topic);
  }

  housekeeping(): Promise<void> {
    return stats.housekeeping(this.ctx);
  }

  close(): Promise<void> {
    return this.ctx.close();
  }
}
