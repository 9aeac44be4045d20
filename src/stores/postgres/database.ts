/**
 * The plumbing every part of the PostgreSQL store shares: `pg` loaded lazily, the pool's
 * settings, the table names, the store's clock (the injected one, or the server's and its SQL)
 * and the two ways to run SQL: one statement, or a transaction run again on conflicts.
 *
 * `pg` is loaded only when a store is opened: users of the other backends never need it.
 */
import type * as Pg from 'pg';
import type { Pool, PoolClient, QueryResult, QueryResultRow } from 'pg';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { closedError, isConflict, toStoreError } from './errors.js';

/** Connections per process: coordinate, publish and settle paths rarely need more at once. */
export const POOL_SIZE = 8;
/** A server that does not answer within this is reported as unavailable rather than waited on forever. */
export const CONNECT_TIMEOUT_MS = 10_000;
/**
 * The store's transactions never wait on their client for more than a few ms; one idle longer
 * than this belongs to a client that is cut off or frozen, and the server rolls it back (its
 * locks would otherwise stall the whole group: reliability scenario e).
 */
export const IDLE_IN_TRANSACTION_MS = 5_000;
/**
 * A statement whose answer has not come back after this is given up and its connection
 * destroyed. A connection cut mid-statement is otherwise waited on forever (the server has
 * dropped the session; TCP keepalive probes only after the system's 75 s): a worker whose
 * heartbeat call hangs never heartbeats again (reliability scenario e, cut holding the lock).
 */
export const QUERY_TIMEOUT_MS = 15_000;
/** Serialization failures and deadlocks are retried this many times before they reach the caller. */
const CONFLICT_ATTEMPTS = 5;
/** The type oid of BIGINT (int8), whose parser the pool overrides. */
export const INT8_OID = 20;

/** The server's clock in epoch ms; `clock_timestamp()` moves within a transaction, unlike `now()`. */
export const SERVER_NOW = '(extract(epoch from clock_timestamp()) * 1000)::bigint';

/** The store's clock inside a statement: the injected time passed as parameter `n`, else the server's, read once. */
export function clockSql(n: number): string {
  return `(SELECT COALESCE($${n}::bigint, ${SERVER_NOW}))`;
}

export type PgModule = typeof Pg;

export async function loadPg(): Promise<PgModule> {
  try {
    return await import('pg');
  } catch (error) {
    throw new BotqueueError(ErrorCodes.DRIVER_MISSING, 'the shared PostgreSQL store (of the RabbitMQ backend) needs the "pg" package: npm install pg', {
      cause: error,
    });
  }
}

/** What both a pool and a checked-out client offer: a parameterised query. */
export interface Queryable {
  query<R extends QueryResultRow>(text: string, values: unknown[]): Promise<QueryResult<R>>;
}

/** The store's tables, by the names the code uses. */
export type Tables = Record<'topics' | 'groups' | 'members' | 'leases' | 'dedup' | 'effects' | 'states' | 'deadLetters' | 'backfillCopied' | 'backfillBatches' | 'backfillClaims', string>;

/**
 * What every part of the store works with: the pool, the table names, the clock and the two
 * ways to run SQL. One per open store; a closed one refuses every call (BOTQUEUE_CLOSED).
 */
export class StoreContext {
  private closed = false;
  /** Table names qualified with the quoted schema. */
  readonly t: Tables;

  constructor(
    readonly pool: Pool,
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
      backfillBatches: q('backfill_batches'),
      backfillClaims: q('backfill_claims'),
    };
  }

  /** The injected time, or null to let each statement read the server's clock. */
  clock(): number | null {
    return this.injectedNow === undefined ? null : Math.round(this.injectedNow());
  }

  async now(): Promise<number> {
    const injected = this.clock();
    if (injected !== null) return injected;
    const rows = await this.rows<{ now: number }>('read the clock', this.pool, `SELECT ${SERVER_NOW} AS now`, []);
    return rows[0]!.now;
  }

  async rows<R extends QueryResultRow = QueryResultRow>(what: string, db: Queryable, sql: string, params: unknown[]): Promise<R[]> {
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
  async transaction<T>(what: string, work: (db: PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    this.checkOpen();
    for (let attempt = 1; ; attempt++) {
      let client: CheckedOut;
      try {
        client = await checkout(this.pool);
      } catch (error) {
        throw this.failure(error, what);
      }
      let broken: Error | undefined;
      try {
        await client.client.query(begin);
        const result = await work(client.client);
        await client.client.query('COMMIT');
        return result;
      } catch (error) {
        // A timed-out statement is still pending on the connection: a ROLLBACK would queue behind
        // it. The connection is destroyed instead, and the server rolls the transaction back.
        broken = isReadTimeout(error) ? (error as Error) : await rollback(client.client);
        if (attempt < CONFLICT_ATTEMPTS && isConflict(error)) continue;
        throw this.failure(error, what);
      } finally {
        client.release(broken);
      }
    }
  }

  checkOpen(): void {
    if (this.closed) throw closedError();
  }

  /** A call that close() overtook reports the close, not the pool's complaint about it. */
  failure(error: unknown, what: string): Error {
    return this.closed && !(error instanceof BotqueueError) ? closedError() : toStoreError(error, what);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** A connection taken from the pool, to give back with `release` (not `client.release`). */
export interface CheckedOut {
  client: PoolClient;
  /** Gives the connection back; with an error (or after the connection broke) the pool discards it. */
  release(error?: Error): void;
}

/**
 * Takes a connection with an 'error' listener for as long as it is out. The pool listens only
 * to idle connections: one that breaks while checked out (the server restarted, or ended the
 * session: idle_in_transaction_session_timeout) would otherwise crash the process with an
 * unhandled 'error' event. Its pending or next query fails instead, and the pool discards it.
 */
export async function checkout(pool: Pool): Promise<CheckedOut> {
  const client = await pool.connect();
  let broke: Error | undefined;
  const onError = (error: Error): void => {
    broke ??= error;
  };
  client.on('error', onError);
  return {
    client,
    release(error?: Error): void {
      client.off('error', onError);
      client.release(error ?? broke);
    },
  };
}

/** node-postgres's `query_timeout` error. */
function isReadTimeout(error: unknown): boolean {
  return error instanceof Error && error.message === 'Query read timeout';
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

/** Plain code-unit order, as every backend sorts members. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
