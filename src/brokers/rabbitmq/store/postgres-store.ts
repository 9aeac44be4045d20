/**
 * The shared store of the RabbitMQ backend on PostgreSQL (see store.ts for what it holds and
 * why). Every method is one transaction or one statement, so that workers and publishers on
 * any host see each other's writes; times come from the injected clock or the server's.
 *
 * `pg` is loaded only when a store is opened: users of the other backends never need it.
 */
import type * as Pg from 'pg';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { BotqueueError, ErrorCodes, type ErrorInfo } from '../../../core/errors.js';
import { redactUrl } from '../../../core/redact.js';
import type { CoordinateRequest, CoordinateResult, DeadLetter, DeadLetterFilter, DeadLetterListOptions, TopicInfo, TopicSettings } from '../../broker.js';
import { quoteSchema, schemaStatements } from './postgres-schema.js';
import type {
  CoordinationStore,
  DedupEntry,
  DedupOutcome,
  GroupSnapshot,
  HeldReport,
  MessageFailure,
  MessageState,
  NewDeadLetter,
  StoredLease,
} from './store.js';

export interface PostgresStoreOptions {
  /** The PostgreSQL schema holding the store's tables, created when missing. */
  schema: string;
  /** Injected clock (epoch ms) for tests; the database server's clock otherwise. */
  now?: () => number;
}

/** Connections per process: coordinate, publish and settle paths rarely need more at once. */
const POOL_SIZE = 8;
/** A server that does not answer within this is reported as unavailable rather than waited on forever. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Serialization failures and deadlocks are retried this many times before they reach the caller. */
const CONFLICT_ATTEMPTS = 5;
const INT8_OID = 20;
const DEFAULT_LIST_LIMIT = 100;

/** The server's clock in epoch ms; `clock_timestamp()` moves within a transaction, unlike `now()`. */
const SERVER_NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** The store's clock inside a statement: the injected time passed as parameter `n`, else the server's, read once. */
function clockSql(n: number): string {
  return `(SELECT COALESCE($${n}::bigint, ${SERVER_NOW}))`;
}

type PgModule = typeof Pg;

async function loadPg(): Promise<PgModule> {
  try {
    return await import('pg');
  } catch (error) {
    throw new BotqueueError(ErrorCodes.DRIVER_MISSING, 'the RabbitMQ backend needs the "pg" package for its shared store: npm install pg', {
      cause: error,
    });
  }
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
  const pool = new pg.Pool({ connectionString: url, max: POOL_SIZE, types, connectionTimeoutMillis: CONNECT_TIMEOUT_MS, application_name: 'botqueue' });
  // An idle connection that breaks (server restart) is dropped by the pool; without a listener
  // the 'error' event would crash the process. The next query reconnects or reports the failure.
  pool.on('error', () => undefined);
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

/** What both a pool and a checked-out client offer: a parameterised query. */
interface Queryable {
  query<R extends QueryResultRow>(text: string, values: unknown[]): Promise<QueryResult<R>>;
}

type TopicRow = { name: string; partitions: number; dedup_window_ms: number; created_at: number };
type DedupRow = { id: string; partition: number; seq: number; state: 'reserved' | 'confirmed' };
type StateRow = {
  id: string;
  attempts: number;
  first_failed_at: number | null;
  not_before: number;
  parked: boolean;
  skip: boolean;
};
type DeadLetterRow = {
  dlq_id: number;
  topic: string;
  grp: string;
  partition: number;
  seq: number;
  id: string;
  key: string | null;
  payload: string;
  headers: string | null;
  published_at: number;
  attempts: number;
  first_failed_at: number;
  last_failed_at: number;
  error: string;
  parked: boolean;
};
type LeaseRow = {
  grp: string;
  partition: number;
  owner: string | null;
  lease_until: number;
  in_flight: number;
  held_count: number;
  held_oldest: number;
};

const DEAD_LETTER_COLUMNS =
  'dlq_id, topic, grp, partition, seq, id, key, payload, headers, published_at, attempts, first_failed_at, last_failed_at, error, parked';

export class PostgresStore implements CoordinationStore {
  private closed = false;
  /** Table names qualified with the quoted schema. */
  private readonly t: Record<'topics' | 'groups' | 'members' | 'leases' | 'dedup' | 'effects' | 'states' | 'deadLetters' | 'backfillCopied', string>;
  private readonly schemaStatements: string[];

  constructor(
    private readonly pool: Pool,
    quotedSchema: string,
    private readonly injectedNow?: () => number,
  ) {
    const q = (table: string) => `${quotedSchema}.${table}`;
    this.t = {
      topics: q('topics'),
      groups: q('groups'),
      members: q('members'),
      leases: q('leases'),
      dedup: q('dedup'),
      effects: q('effects'),
      states: q('message_states'),
      deadLetters: q('dead_letters'),
      backfillCopied: q('backfill_copied'),
    };
    this.schemaStatements = schemaStatements(quotedSchema);
  }

  /**
   * Creates what is missing (openPostgresStore calls it), one process at a time: concurrent
   * CREATE ... IF NOT EXISTS can still collide on the catalog's unique indexes.
   */
  async createTables(schema: string): Promise<void> {
    await this.transaction('create the tables', async (db) => {
      await db.query('SELECT pg_advisory_xact_lock(hashtext($1))', [schema]);
      for (const statement of this.schemaStatements) await db.query(statement, []);
    });
  }

  async withLock<T>(name: string, work: () => Promise<T>): Promise<T> {
    this.checkOpen();
    const key = `${this.t.topics}:${name}`;
    let client: PoolClient;
    try {
      client = await this.pool.connect();
      await client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
    } catch (error) {
      throw toStoreError(error, `take the lock "${name}"`);
    }
    try {
      return await work();
    } finally {
      // A session lock: released explicitly, or by PostgreSQL if this connection dies.
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
      client.release();
    }
  }

  async tryWithLock<T>(name: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    this.checkOpen();
    const key = `${this.t.topics}:${name}`;
    let client: PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      throw toStoreError(error, `take the lock "${name}"`);
    }
    let locked: boolean;
    try {
      locked = (await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [key])).rows[0]?.locked === true;
    } catch (error) {
      client.release();
      throw toStoreError(error, `take the lock "${name}"`);
    }
    if (!locked) {
      client.release();
      return { ran: false };
    }
    try {
      return { ran: true, value: await work() };
    } finally {
      await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
      client.release();
    }
  }

  async now(): Promise<number> {
    const injected = this.clock();
    if (injected !== null) return injected;
    const rows = await this.rows<{ now: number }>('read the clock', this.pool, `SELECT ${SERVER_NOW} AS now`, []);
    return rows[0]!.now;
  }

  // ---- Topics and groups -------------------------------------------------------------

  async ensureTopic(name: string, settings: TopicSettings): Promise<TopicInfo> {
    const what = `create topic "${name}"`;
    checkTopicSettings(settings, what);
    const inserted = await this.rows<TopicRow>(
      what,
      this.pool,
      `INSERT INTO ${this.t.topics} (name, partitions, dedup_window_ms, created_at) VALUES ($1, $2, $3, ${clockSql(4)})
       ON CONFLICT (name) DO NOTHING RETURNING name, partitions, dedup_window_ms, created_at`,
      [name, settings.partitions, Math.round(settings.dedupWindowMs), this.clock()],
    );
    const row = inserted[0] ?? (await this.topicRow(this.pool, name, what));
    if (row === undefined) throw unknownTopic(name); // created and gone: topics are never deleted, so not expected
    if (row.partitions !== settings.partitions) {
      throw new BotqueueError(
        ErrorCodes.TOPIC_MISMATCH,
        `topic "${name}" exists with ${row.partitions} partitions, not ${settings.partitions}; the partition count is fixed at creation`,
        { details: { topic: name, partitions: row.partitions, requested: settings.partitions } },
      );
    }
    return topicInfo(row);
  }

  async getTopic(name: string): Promise<TopicInfo | undefined> {
    const row = await this.topicRow(this.pool, name, `read topic "${name}"`);
    return row === undefined ? undefined : topicInfo(row);
  }

  async listTopics(): Promise<TopicInfo[]> {
    const rows = await this.rows<TopicRow>('list topics', this.pool, `SELECT name, partitions, dedup_window_ms, created_at FROM ${this.t.topics}`, []);
    return rows.map(topicInfo).sort((a, b) => compare(a.name, b.name));
  }

  async ensureGroup(topic: string, group: string): Promise<{ created: boolean; backfillPending: boolean }> {
    return this.transaction(`subscribe group "${group}" to topic "${topic}"`, async (db) => {
      const partitions = await this.requireTopic(db, topic);
      const created = await this.createGroup(db, topic, group, partitions);
      return { created, backfillPending: created || (await this.backfillPendingIn(db, topic, group)) };
    });
  }

  async backfillPending(topic: string, group: string): Promise<boolean> {
    return this.backfillPendingIn(this.pool, topic, group);
  }

  private async backfillPendingIn(db: Queryable, topic: string, group: string): Promise<boolean> {
    const rows = await this.rows<{ pending: boolean }>(`read group "${group}" of topic "${topic}"`, db, `SELECT backfill_pending AS pending FROM ${this.t.groups} WHERE topic = $1 AND name = $2`, [topic, group]);
    return rows[0]?.pending === true;
  }

  async copiedIds(topic: string, group: string, ids: string[]): Promise<Set<string>> {
    const rows = await this.rows<{ id: string }>(`read the backfill of group "${group}"`, this.pool, `SELECT id FROM ${this.t.backfillCopied} WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[])`, [topic, group, ids]);
    return new Set(rows.map((r) => r.id));
  }

  async recordCopied(topic: string, group: string, ids: string[]): Promise<void> {
    await this.rows(
      `record the backfill of group "${group}"`,
      this.pool,
      `INSERT INTO ${this.t.backfillCopied} (topic, grp, id) SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`,
      [topic, group, ids],
    );
  }

  async finishBackfill(topic: string, group: string): Promise<void> {
    await this.transaction(`finish the backfill of group "${group}"`, async (db) => {
      await db.query(`UPDATE ${this.t.groups} SET backfill_pending = false WHERE topic = $1 AND name = $2`, [topic, group]);
      await db.query(`DELETE FROM ${this.t.backfillCopied} WHERE topic = $1 AND grp = $2`, [topic, group]);
    });
  }

  async listGroups(topic: string): Promise<string[]> {
    const rows = await this.rows<{ name: string }>(`list the groups of topic "${topic}"`, this.pool, `SELECT name FROM ${this.t.groups} WHERE topic = $1`, [
      topic,
    ]);
    return rows.map((r) => r.name).sort(compare);
  }

  // ---- Coordination ------------------------------------------------------------------

  async coordinate(request: CoordinateRequest, held: Record<number, HeldReport>): Promise<CoordinateResult> {
    const where = `coordinate ${request.topic}/${request.group}`;
    checkCoordinateRequest(request, where);
    return this.transaction(where, async (db) => {
      const partitions = await this.requireTopic(db, request.topic);
      checkPartitions(request, partitions, where);
      // Every coordinate of the group queues here: two members racing for a partition see
      // each other's result, and locks are always taken group row first, then leases.
      const controlVersion = await this.lockGroup(db, request.topic, request.group, partitions);
      const key = [request.topic, request.group, request.member];
      const leaseMs = Math.max(1, Math.round(request.leaseMs));
      const now = await this.heartbeat(db, key, leaseMs);
      const until = now + leaseMs;
      const reports = JSON.stringify(request.inFlight);
      const heldReports = JSON.stringify(held);

      await db.query(`DELETE FROM ${this.t.members} WHERE topic = $1 AND grp = $2 AND expires_at <= $3`, [request.topic, request.group, now]);
      if (request.release.length > 0) {
        await db.query(`${this.releaseSql()} AND owner = $3 AND partition = ANY($4::int[])`, [...key, request.release]);
      }
      await db.query(
        `UPDATE ${this.t.leases} SET lease_until = $4, ${REPORTED_COLUMNS}
         WHERE topic = $1 AND grp = $2 AND owner = $3`,
        [...key, until, reports, heldReports],
      );
      if (request.leaving !== true && request.acquire.length > 0) {
        // The member's own partitions were renewed just before and never match here: taking
        // back an expired lease nobody else took keeps its fence.
        await db.query(
          `UPDATE ${this.t.leases} SET owner = $3, fence = fence + 1, lease_until = $4, ${REPORTED_COLUMNS}
           WHERE topic = $1 AND grp = $2 AND partition = ANY($7::int[]) AND (owner IS NULL OR (owner <> $3 AND lease_until <= $8))`,
          [...key, until, reports, heldReports, request.acquire, now],
        );
      }
      if (request.orderViolations > 0) {
        await db.query(`UPDATE ${this.t.groups} SET order_violations = order_violations + $3 WHERE topic = $1 AND name = $2`, [
          request.topic,
          request.group,
          Math.round(request.orderViolations),
        ]);
      }
      if (request.leaving === true) {
        await db.query(`${this.releaseSql()} AND owner = $3`, key);
        await db.query(`DELETE FROM ${this.t.members} WHERE topic = $1 AND grp = $2 AND member = $3`, key);
      }

      const members = await db.query<{ member: string }>(`SELECT member FROM ${this.t.members} WHERE topic = $1 AND grp = $2 AND expires_at > $3`, [
        request.topic,
        request.group,
        now,
      ]);
      const owned = await db.query<{ partition: number; fence: number }>(
        `SELECT partition, fence FROM ${this.t.leases} WHERE topic = $1 AND grp = $2 AND owner = $3 ORDER BY partition`,
        key,
      );
      return {
        members: members.rows.map((r) => r.member).sort(compare),
        owned: new Map(owned.rows.map((r) => [r.partition, r.fence])),
        controlVersion,
        partitions,
      };
    });
  }

  async reportHeld(topic: string, group: string, member: string, held: Record<number, HeldReport>): Promise<void> {
    const partitions = Object.keys(held).map(Number);
    if (partitions.length === 0) return;
    await this.rows(
      `report what ${topic}/${group} holds`,
      this.pool,
      `UPDATE ${this.t.leases}
       SET held_count = COALESCE(($4::jsonb -> partition::text ->> 'count')::int, 0),
           held_oldest = COALESCE(($4::jsonb -> partition::text ->> 'oldestPublishedAt')::bigint, 0)
       WHERE topic = $1 AND grp = $2 AND owner = $3 AND partition = ANY($5::int[])`,
      [topic, group, member, JSON.stringify(held), partitions],
    );
  }

  /** `UPDATE leases ... WHERE topic = $1 AND grp = $2` that frees a lease; callers add which. */
  private releaseSql(): string {
    return `UPDATE ${this.t.leases} SET owner = NULL, lease_until = 0, in_flight = 0, held_count = 0, held_oldest = 0 WHERE topic = $1 AND grp = $2`;
  }

  /** Records the member's heartbeat and returns the store's time, read after the group lock was taken. */
  private async heartbeat(db: Queryable, key: unknown[], leaseMs: number): Promise<number> {
    const result = await db.query<{ now: number }>(
      `INSERT INTO ${this.t.members} AS m (topic, grp, member, expires_at) SELECT $1, $2, $3, c.now + $4::bigint FROM (SELECT ${clockSql(5)} AS now) AS c
       ON CONFLICT (topic, grp, member) DO UPDATE SET expires_at = excluded.expires_at
       RETURNING m.expires_at - $4::bigint AS now`,
      [...key, leaseMs, this.clock()],
    );
    return result.rows[0]!.now;
  }

  /** Locks the group row for the transaction (creating the group first if needed) and returns its control version. */
  private async lockGroup(db: Queryable, topic: string, group: string, partitions: number): Promise<number> {
    const lock = `SELECT control_version FROM ${this.t.groups} WHERE topic = $1 AND name = $2 FOR UPDATE`;
    let rows = (await db.query<{ control_version: number }>(lock, [topic, group])).rows;
    if (rows.length === 0) {
      // A member may coordinate before anyone called ensureGroup: the group is created then.
      await this.createGroup(db, topic, group, partitions);
      rows = (await db.query<{ control_version: number }>(lock, [topic, group])).rows;
    }
    return rows[0]!.control_version;
  }

  /** Inserts the group with a free lease row per partition; false when it already existed. */
  private async createGroup(db: Queryable, topic: string, group: string, partitions: number): Promise<boolean> {
    const inserted = await db.query(
      // A new group waits for its copy of what was published while the topic had no group.
      `INSERT INTO ${this.t.groups} (topic, name, created_at, backfill_pending) VALUES ($1, $2, ${clockSql(3)}, true) ON CONFLICT (topic, name) DO NOTHING RETURNING name`,
      [topic, group, this.clock()],
    );
    if (inserted.rows.length === 0) return false;
    await db.query(`INSERT INTO ${this.t.leases} (topic, grp, partition) SELECT $1, $2, p FROM generate_series(0, $3::int - 1) AS p`, [
      topic,
      group,
      partitions,
    ]);
    return true;
  }

  // ---- Dedup -------------------------------------------------------------------------

  async reserveIds(topic: string, entries: DedupEntry[], windowMs: number, staleAfterMs: number): Promise<DedupOutcome[]> {
    if (entries.length === 0) return [];
    const ids = entries.map((e) => e.id);
    return this.transaction(`reserve ids on topic "${topic}"`, async (db) => {
      // One statement decides for the whole batch; the conflicting row is locked even when the
      // WHERE refuses the update, so the read below sees what won. Rows go in id order so two
      // overlapping batches lock in the same order.
      const reserved = await db.query<{ id: string }>(
        `INSERT INTO ${this.t.dedup} AS d (topic, id, partition, seq, state, reserved_at, expires_at)
         SELECT $1, e.id, e.partition, e.seq, 'reserved', c.now, c.now + $5::bigint
         FROM unnest($2::text[], $3::int[], $4::bigint[]) AS e(id, partition, seq) CROSS JOIN (SELECT ${clockSql(7)} AS now) AS c
         ORDER BY e.id
         ON CONFLICT (topic, id) DO UPDATE
           SET partition = excluded.partition, seq = excluded.seq, state = 'reserved', reserved_at = excluded.reserved_at, expires_at = excluded.expires_at
           WHERE d.expires_at <= excluded.reserved_at OR (d.state = 'reserved' AND d.reserved_at <= excluded.reserved_at - $6::bigint)
         RETURNING d.id`,
        [topic, ids, entries.map((e) => e.partition), entries.map((e) => e.seq), Math.round(windowMs), Math.round(staleAfterMs), this.clock()],
      );
      const won = new Set(reserved.rows.map((r) => r.id));
      const others = ids.filter((id) => !won.has(id));
      const existing = new Map<string, DedupRow>();
      if (others.length > 0) {
        const rows = await db.query<DedupRow>(`SELECT id, partition, seq, state FROM ${this.t.dedup} WHERE topic = $1 AND id = ANY($2::text[])`, [
          topic,
          others,
        ]);
        for (const row of rows.rows) existing.set(row.id, row);
      }
      return ids.map((id): DedupOutcome => {
        if (won.has(id)) return { status: 'reserved' };
        const row = existing.get(id);
        // Not taken over means live: confirmed is a duplicate, a fresh reservation is under way.
        if (row?.state === 'confirmed') return { status: 'duplicate', partition: row.partition, seq: row.seq };
        return { status: 'in-progress' };
      });
    });
  }

  async confirmIds(topic: string, entries: DedupEntry[], windowMs: number): Promise<void> {
    if (entries.length === 0) return;
    await this.rows(
      `confirm ids on topic "${topic}"`,
      this.pool,
      `UPDATE ${this.t.dedup} AS d SET state = 'confirmed', expires_at = ${clockSql(6)} + $5::bigint
       FROM unnest($2::text[], $3::int[], $4::bigint[]) AS e(id, partition, seq)
       WHERE d.topic = $1 AND d.id = e.id AND d.partition = e.partition AND d.seq = e.seq`,
      [topic, ...dedupColumns(entries), Math.round(windowMs), this.clock()],
    );
  }

  async releaseIds(topic: string, entries: DedupEntry[]): Promise<void> {
    if (entries.length === 0) return;
    await this.rows(
      `release ids on topic "${topic}"`,
      this.pool,
      `DELETE FROM ${this.t.dedup} AS d USING unnest($2::text[], $3::int[], $4::bigint[]) AS e(id, partition, seq)
       WHERE d.topic = $1 AND d.id = e.id AND d.partition = e.partition AND d.seq = e.seq AND d.state = 'reserved'`,
      [topic, ...dedupColumns(entries)],
    );
  }

  // ---- Effects -----------------------------------------------------------------------

  async getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined> {
    // An expired row is as good as none, even before housekeeping deletes it.
    const rows = await this.rows<{ result: string | null }>(
      `read effect "${name}" of message "${messageId}"`,
      this.pool,
      `SELECT result FROM ${this.t.effects} WHERE topic = $1 AND grp = $2 AND message_id = $3 AND name = $4 AND expires_at > ${clockSql(5)}`,
      [topic, group, messageId, name, this.clock()],
    );
    return rows[0]?.result;
  }

  async putEffect(topic: string, group: string, messageId: string, name: string, result: string | null, windowMs: number): Promise<void> {
    await this.rows(
      `record effect "${name}" of message "${messageId}"`,
      this.pool,
      `INSERT INTO ${this.t.effects} (topic, grp, message_id, name, result, expires_at) VALUES ($1, $2, $3, $4, $5, ${clockSql(7)} + $6::bigint)
       ON CONFLICT (topic, grp, message_id, name) DO UPDATE SET result = excluded.result, expires_at = excluded.expires_at`,
      [topic, group, messageId, name, result, Math.round(windowMs), this.clock()],
    );
  }

  // ---- Message states ----------------------------------------------------------------

  async getMessageStates(topic: string, group: string, ids: string[]): Promise<Map<string, MessageState>> {
    const states = new Map<string, MessageState>();
    if (ids.length === 0) return states;
    const rows = await this.rows<StateRow>(
      `read message states of ${topic}/${group}`,
      this.pool,
      `SELECT id, attempts, first_failed_at, not_before, parked, skip FROM ${this.t.states}
       WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[]) AND (expires_at IS NULL OR expires_at > ${clockSql(4)})`,
      [topic, group, ids, this.clock()],
    );
    for (const r of rows) {
      states.set(r.id, { id: r.id, attempts: r.attempts, firstFailedAt: r.first_failed_at, notBefore: r.not_before, parked: r.parked, skip: r.skip });
    }
    return states;
  }

  async recordFailures(topic: string, group: string, failures: MessageFailure[], windowMs: number): Promise<void> {
    if (failures.length === 0) return;
    await this.rows(
      `record failures of ${topic}/${group}`,
      this.pool,
      `INSERT INTO ${this.t.states} AS s (topic, grp, id, attempts, first_failed_at, not_before, expires_at)
       SELECT $1, $2, f.id, f.attempts, f.failed_at, f.not_before, ${clockSql(8)} + $7::bigint
       FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bigint[]) AS f(id, attempts, failed_at, not_before)
       ORDER BY f.id
       ON CONFLICT (topic, grp, id) DO UPDATE SET attempts = excluded.attempts, first_failed_at = COALESCE(s.first_failed_at, excluded.first_failed_at),
         not_before = excluded.not_before, expires_at = excluded.expires_at`,
      [
        topic,
        group,
        failures.map((f) => f.id),
        failures.map((f) => f.attempts),
        failures.map((f) => Math.round(f.failedAt)),
        failures.map((f) => Math.round(f.notBefore)),
        Math.round(windowMs),
        this.clock(),
      ],
    );
  }

  async clearMessageStates(topic: string, group: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.rows(
      `clear message states of ${topic}/${group}`,
      this.pool,
      `DELETE FROM ${this.t.states} WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[])`,
      [topic, group, ids],
    );
  }

  // ---- Dead letters ------------------------------------------------------------------

  async addDeadLetters(letters: NewDeadLetter[]): Promise<number[]> {
    if (letters.length === 0) return [];
    return this.transaction(`add ${letters.length} dead letters`, async (db) => {
      const ids: number[] = [];
      for (const letter of letters) {
        const inserted = await db.query<{ dlq_id: number }>(
          `INSERT INTO ${this.t.deadLetters}
             (topic, grp, partition, seq, id, key, payload, headers, published_at, attempts, first_failed_at, last_failed_at, error, error_message, parked)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING dlq_id`,
          [
            letter.topic,
            letter.group,
            letter.partition,
            letter.seq,
            letter.id,
            letter.key,
            letter.payload,
            headersToText(letter.headers),
            Math.round(letter.publishedAt),
            letter.attempts,
            Math.round(letter.firstFailedAt),
            Math.round(letter.lastFailedAt),
            JSON.stringify(letter.error),
            letter.error.message,
            letter.parked,
          ],
        );
        ids.push(inserted.rows[0]!.dlq_id);
        if (letter.parked) await this.park(db, letter);
      }
      return ids;
    });
  }

  /** The message's key waits for an operator: its state is parked and never expires until cleared. */
  private async park(db: Queryable, letter: NewDeadLetter): Promise<void> {
    await db.query(
      `INSERT INTO ${this.t.states} AS s (topic, grp, id, attempts, first_failed_at, not_before, parked, skip, expires_at)
       VALUES ($1, $2, $3, $4, $5, 0, TRUE, FALSE, NULL)
       ON CONFLICT (topic, grp, id) DO UPDATE SET attempts = excluded.attempts, first_failed_at = COALESCE(s.first_failed_at, excluded.first_failed_at),
         not_before = 0, parked = TRUE, skip = FALSE, expires_at = NULL`,
      [letter.topic, letter.group, letter.id, letter.attempts, Math.round(letter.firstFailedAt)],
    );
  }

  async listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]> {
    const rows = await this.selectDeadLetters<DeadLetterRow>(
      'list dead letters',
      DEAD_LETTER_COLUMNS,
      options,
      options.afterDlqId ?? 0,
      options.limit ?? DEFAULT_LIST_LIMIT,
    );
    return rows.map(deadLetter);
  }

  async matchDeadLetterIds(filter: DeadLetterFilter, afterDlqId: number, limit: number): Promise<number[]> {
    const rows = await this.selectDeadLetters<{ dlq_id: number }>('match dead letters', 'dlq_id', filter, afterDlqId, limit);
    return rows.map((r) => r.dlq_id);
  }

  /** `SELECT <columns>` of the dead letters matching `filter` after `afterDlqId`, oldest first. */
  private async selectDeadLetters<R extends QueryResultRow>(
    what: string,
    columns: string,
    filter: DeadLetterFilter,
    afterDlqId: number,
    limit: number,
  ): Promise<R[]> {
    if (limit <= 0 || (filter.dlqIds !== undefined && filter.dlqIds.length === 0)) return [];
    const params: unknown[] = [];
    const where: string[] = [];
    const add = (condition: (placeholder: string) => string, value: unknown) => {
      params.push(value);
      where.push(condition(`$${params.length}`));
    };
    if (filter.topic !== undefined) add((p) => `topic = ${p}`, filter.topic);
    if (filter.group !== undefined) add((p) => `grp = ${p}`, filter.group);
    if (filter.key !== undefined) add((p) => `key = ${p}`, filter.key);
    if (filter.dlqIds !== undefined) add((p) => `dlq_id = ANY(${p}::bigint[])`, filter.dlqIds);
    // strpos, not LIKE: the text is a plain substring, `%` and `_` in it mean themselves.
    if (filter.errorContains !== undefined) add((p) => `strpos(lower(error_message), lower(${p})) > 0`, filter.errorContains);
    add((p) => `dlq_id > ${p}`, afterDlqId);
    params.push(limit);
    const sql = `SELECT ${columns} FROM ${this.t.deadLetters} WHERE ${where.join(' AND ')} ORDER BY dlq_id LIMIT $${params.length}`;
    return this.rows<R>(what, this.pool, sql, params);
  }

  async removeDeadLetters(dlqIds: number[], action: 'redrive' | 'purge'): Promise<DeadLetter[]> {
    if (dlqIds.length === 0) return [];
    return this.transaction(`${action} ${dlqIds.length} dead letters`, async (db) => {
      const deleted = await db.query<DeadLetterRow>(`DELETE FROM ${this.t.deadLetters} WHERE dlq_id = ANY($1::bigint[]) RETURNING ${DEAD_LETTER_COLUMNS}`, [
        dlqIds,
      ]);
      const rows = deleted.rows.sort((a, b) => a.dlq_id - b.dlq_id);
      const parked = distinctMessages(rows.filter((r) => r.parked));
      if (parked.length > 0) {
        if (action === 'redrive') await this.unpark(db, parked);
        else await this.skip(db, parked);
        await this.bumpControlVersions(db, parked);
      }
      return rows.map(deadLetter);
    });
  }

  /** Redriven: the held message runs again from its first attempt; the state expires with the topic's dedup window. */
  private async unpark(db: Queryable, messages: MessageRef[]): Promise<void> {
    await db.query(
      `UPDATE ${this.t.states} AS s SET parked = FALSE, attempts = 0, first_failed_at = NULL, not_before = 0, skip = FALSE,
         expires_at = ${clockSql(4)} + t.dedup_window_ms
       FROM unnest($1::text[], $2::text[], $3::text[]) AS m(topic, grp, id) JOIN ${this.t.topics} AS t ON t.name = m.topic
       WHERE s.topic = m.topic AND s.grp = m.grp AND s.id = m.id`,
      [...messageColumns(messages), this.clock()],
    );
  }

  /** Purged: the held message must be acked unhandled; the mark stays until the worker clears it. */
  private async skip(db: Queryable, messages: MessageRef[]): Promise<void> {
    await db.query(
      `INSERT INTO ${this.t.states} (topic, grp, id, attempts, first_failed_at, not_before, parked, skip, expires_at)
       SELECT m.topic, m.grp, m.id, 0, NULL, 0, FALSE, TRUE, NULL FROM unnest($1::text[], $2::text[], $3::text[]) AS m(topic, grp, id)
       ON CONFLICT (topic, grp, id) DO UPDATE SET parked = FALSE, skip = TRUE, expires_at = NULL`,
      messageColumns(messages),
    );
  }

  /** The workers of these groups learn at their next heartbeat that a parked message changed. */
  private async bumpControlVersions(db: Queryable, messages: MessageRef[]): Promise<void> {
    const groups = new Map<string, [string, string]>();
    for (const m of messages) groups.set(JSON.stringify([m.topic, m.grp]), [m.topic, m.grp]);
    // One group at a time in a fixed order, so two concurrent calls never wait on each other in a cycle.
    const ordered = [...groups.entries()].sort(([a], [b]) => compare(a, b));
    for (const [, [topic, grp]] of ordered) {
      await db.query(`UPDATE ${this.t.groups} SET control_version = control_version + 1 WHERE topic = $1 AND name = $2`, [topic, grp]);
    }
  }

  // ---- Stats and upkeep --------------------------------------------------------------

  async groupSnapshots(topic: string): Promise<GroupSnapshot[]> {
    const isolation = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
    return this.transaction(
      `read the groups of topic "${topic}"`,
      async (db) => {
        const head = await db.query<{ partitions: number; now: number }>(`SELECT partitions, ${clockSql(2)} AS now FROM ${this.t.topics} WHERE name = $1`, [
          topic,
          this.clock(),
        ]);
        const topicRow = head.rows[0];
        if (topicRow === undefined) return [];
        const { partitions, now } = topicRow;
        const groups = await db.query<{ name: string; control_version: number; order_violations: number }>(
          `SELECT name, control_version, order_violations FROM ${this.t.groups} WHERE topic = $1`,
          [topic],
        );
        const members = await db.query<{ grp: string; n: number }>(
          `SELECT grp, count(*) AS n FROM ${this.t.members} WHERE topic = $1 AND expires_at > $2 GROUP BY grp`,
          [topic, now],
        );
        const leases = await db.query<LeaseRow>(
          `SELECT grp, partition, owner, lease_until, in_flight, held_count, held_oldest FROM ${this.t.leases} WHERE topic = $1`,
          [topic],
        );
        // A parked dead letter without a key blocks nothing but itself: it counts on its own.
        const letters = await db.query<{ grp: string; n: number; parked_keys: number }>(
          `SELECT grp, count(*) AS n,
                  count(DISTINCT key) FILTER (WHERE parked) + count(*) FILTER (WHERE parked AND key IS NULL) AS parked_keys
           FROM ${this.t.deadLetters} WHERE topic = $1 GROUP BY grp`,
          [topic],
        );
        const memberCounts = new Map(members.rows.map((r) => [r.grp, r.n]));
        const letterCounts = new Map(letters.rows.map((r) => [r.grp, r]));
        return groups.rows
          .sort((a, b) => compare(a.name, b.name))
          .map((g) => ({
            group: g.name,
            controlVersion: g.control_version,
            orderViolations: g.order_violations,
            members: memberCounts.get(g.name) ?? 0,
            leases: snapshotLeases(
              partitions,
              leases.rows.filter((l) => l.grp === g.name),
              now,
            ),
            deadLetters: letterCounts.get(g.name)?.n ?? 0,
            parkedKeys: letterCounts.get(g.name)?.parked_keys ?? 0,
          }));
      },
      isolation,
    );
  }

  async housekeeping(): Promise<void> {
    const clock = this.clock();
    const expired = (table: string) => `DELETE FROM ${table} WHERE expires_at <= ${clockSql(1)}`;
    // Parked and skipped states have no expiry (NULL never compares <=): an operator decides.
    for (const table of [this.t.dedup, this.t.effects, this.t.states, this.t.members]) {
      await this.rows('delete expired rows', this.pool, expired(table), [clock]);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  // ---- Plumbing ----------------------------------------------------------------------

  /** The injected time, or null to let each statement read the server's clock. */
  private clock(): number | null {
    return this.injectedNow === undefined ? null : Math.round(this.injectedNow());
  }

  private async topicRow(db: Queryable, name: string, what: string): Promise<TopicRow | undefined> {
    const rows = await this.rows<TopicRow>(what, db, `SELECT name, partitions, dedup_window_ms, created_at FROM ${this.t.topics} WHERE name = $1`, [name]);
    return rows[0];
  }

  /** The topic's partition count; BOTQUEUE_TOPIC_NOT_FOUND when it was never created. */
  private async requireTopic(db: Queryable, name: string): Promise<number> {
    const row = await this.topicRow(db, name, `read topic "${name}"`);
    if (row === undefined) throw unknownTopic(name);
    return row.partitions;
  }

  private async rows<R extends QueryResultRow = QueryResultRow>(what: string, db: Queryable, sql: string, params: unknown[]): Promise<R[]> {
    this.checkOpen();
    try {
      return (await db.query<R>(sql, params)).rows;
    } catch (error) {
      throw this.failure(error, what);
    }
  }

  /**
   * Runs `work` in a transaction on one connection. Serialization failures and deadlocks roll
   * back and run it again (work only talks to the database, so repeating it is safe).
   */
  private async transaction<T>(what: string, work: (db: PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    this.checkOpen();
    for (let attempt = 1; ; attempt++) {
      let client: PoolClient;
      try {
        client = await this.pool.connect();
      } catch (error) {
        throw this.failure(error, what);
      }
      let broken: Error | undefined;
      try {
        await client.query(begin);
        const result = await work(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        broken = await rollback(client);
        if (attempt < CONFLICT_ATTEMPTS && isConflict(error)) continue;
        throw this.failure(error, what);
      } finally {
        client.release(broken);
      }
    }
  }

  private checkOpen(): void {
    if (this.closed) throw closedError();
  }

  /** A call that close() overtook reports the close, not the pool's complaint about it. */
  private failure(error: unknown, what: string): Error {
    return this.closed && !(error instanceof BotqueueError) ? closedError() : toStoreError(error, what);
  }
}

function closedError(): BotqueueError {
  return new BotqueueError(ErrorCodes.CLOSED, 'the PostgreSQL store is closed; open a new one to go on');
}

/** Rolls back; returns the error when the connection is unusable, so the pool discards it. */
async function rollback(client: PoolClient): Promise<Error | undefined> {
  try {
    await client.query('ROLLBACK');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

// ---- Row mapping -------------------------------------------------------------------------

/** `in_flight` and the held report of a lease from the member's JSON reports (`$5`, `$6`), keyed by partition. */
const REPORTED_COLUMNS = `in_flight = COALESCE(($5::jsonb ->> partition::text)::int, 0),
  held_count = COALESCE(($6::jsonb -> partition::text ->> 'count')::int, 0),
  held_oldest = COALESCE(($6::jsonb -> partition::text ->> 'oldestPublishedAt')::bigint, 0)`;

function topicInfo(row: TopicRow): TopicInfo {
  return { name: row.name, partitions: row.partitions, dedupWindowMs: row.dedup_window_ms, createdAt: row.created_at };
}

function deadLetter(r: DeadLetterRow): DeadLetter {
  return {
    dlqId: r.dlq_id,
    topic: r.topic,
    group: r.grp,
    partition: r.partition,
    seq: r.seq,
    id: r.id,
    key: r.key,
    payload: r.payload,
    headers: r.headers === null ? {} : (JSON.parse(r.headers) as Record<string, string>),
    publishedAt: r.published_at,
    attempts: r.attempts,
    firstFailedAt: r.first_failed_at,
    lastFailedAt: r.last_failed_at,
    error: JSON.parse(r.error) as ErrorInfo,
    parked: r.parked,
  };
}

/** Every partition's lease; an expired one shows no owner and nothing in flight. */
function snapshotLeases(partitions: number, rows: LeaseRow[], now: number): StoredLease[] {
  const leases: StoredLease[] = [];
  for (let p = 0; p < partitions; p++) leases.push({ partition: p, owner: null, inFlight: 0, held: { count: 0, oldestPublishedAt: 0 } });
  for (const row of rows) {
    const lease = leases[row.partition];
    if (lease === undefined || row.owner === null || row.lease_until <= now) continue;
    lease.owner = row.owner;
    lease.inFlight = row.in_flight;
    lease.held = { count: row.held_count, oldestPublishedAt: row.held_oldest };
  }
  return leases;
}

/** Headers are stored as JSON, or NULL when there are none. */
function headersToText(headers: Record<string, string>): string | null {
  return Object.keys(headers).length === 0 ? null : JSON.stringify(headers);
}

function dedupColumns(entries: DedupEntry[]): [string[], number[], number[]] {
  return [entries.map((e) => e.id), entries.map((e) => e.partition), entries.map((e) => e.seq)];
}

interface MessageRef {
  topic: string;
  grp: string;
  id: string;
}

/** One entry per message: an upsert may not touch the same row twice in one statement. */
function distinctMessages(rows: MessageRef[]): MessageRef[] {
  const unique = new Map<string, MessageRef>();
  for (const r of rows) unique.set(JSON.stringify([r.topic, r.grp, r.id]), { topic: r.topic, grp: r.grp, id: r.id });
  return [...unique.values()];
}

function messageColumns(messages: MessageRef[]): [string[], string[], string[]] {
  return [messages.map((m) => m.topic), messages.map((m) => m.grp), messages.map((m) => m.id)];
}

/** Plain code-unit order, as every backend sorts members. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

// ---- Validation --------------------------------------------------------------------------

function invalid(where: string, message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: ${message}`, { details: { option } });
}

function checkTopicSettings(settings: TopicSettings, where: string): void {
  if (!Number.isInteger(settings.partitions) || settings.partitions < 1) {
    throw invalid(where, `partitions must be a positive integer, got ${String(settings.partitions)}`, 'partitions');
  }
  if (!Number.isFinite(settings.dedupWindowMs) || settings.dedupWindowMs < 0) {
    throw invalid(where, `dedupWindowMs must be a non-negative number, got ${String(settings.dedupWindowMs)}`, 'dedupWindowMs');
  }
}

function checkCoordinateRequest(request: CoordinateRequest, where: string): void {
  if (typeof request.member !== 'string' || request.member.length === 0) throw invalid(where, 'member must be a non-empty string', 'member');
  if (typeof request.leaseMs !== 'number' || !Number.isFinite(request.leaseMs) || request.leaseMs <= 0) {
    throw invalid(where, `leaseMs must be a positive number, got ${String(request.leaseMs)}`, 'leaseMs');
  }
}

function checkPartitions(request: CoordinateRequest, partitions: number, where: string): void {
  for (const partition of [...request.acquire, ...request.release]) {
    if (!Number.isInteger(partition) || partition < 0 || partition >= partitions) {
      throw invalid(where, `partition ${String(partition)} is outside 0-${partitions - 1}`, 'partition');
    }
  }
}

function unknownTopic(topic: string): BotqueueError {
  return new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist; create it with ensureTopic first`, { details: { topic } });
}

// ---- Errors ------------------------------------------------------------------------------

/** Node socket errors and PostgreSQL codes (57P01-03 shutdown, class 08 connection) meaning the server is out of reach. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', '57P01', '57P02', '57P03']);
/** pg reports a dropped or never-made connection with these messages and no code. */
const UNREACHABLE_MESSAGE = /connection terminated|timeout exceeded when trying to connect|connection timeout|client has encountered a connection error/i;
/** Serialization failure and deadlock: the transaction can simply run again. */
const CONFLICT_CODES = new Set(['40001', '40P01']);

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function isConflict(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && CONFLICT_CODES.has(code);
}

function isUnreachable(error: unknown): boolean {
  const code = errorCode(error);
  if (code !== undefined && (UNREACHABLE_CODES.has(code) || code.startsWith('08'))) return true;
  if (error instanceof AggregateError) return error.errors.some(isUnreachable);
  return error instanceof Error && UNREACHABLE_MESSAGE.test(error.message);
}

/**
 * Wraps what pg threw into BOTQUEUE_BROKER_UNAVAILABLE: retriable when the server was out of
 * reach or the transaction kept conflicting; botqueue's own errors go through unchanged.
 */
function toStoreError(error: unknown, what: string): Error {
  if (error instanceof BotqueueError) return error;
  const code = errorCode(error);
  const text = error instanceof Error && error.message !== '' ? error.message : String(error);
  const suffix = code === undefined ? '' : ` (${code})`;
  const details = code === undefined ? undefined : { pgCode: code };
  if (isUnreachable(error)) {
    return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `PostgreSQL store could not ${what}: ${text}${suffix} — is PostgreSQL running?`, {
      retriable: true,
      cause: error,
      details,
    });
  }
  const retriable = isConflict(error) || (code !== undefined && code.startsWith('53'));
  return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `PostgreSQL store could not ${what}: ${text}${suffix}`, { retriable, cause: error, details });
}
