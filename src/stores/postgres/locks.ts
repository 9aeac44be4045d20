/**
 * Locks every process of the deployment sees: PostgreSQL session advisory locks, named within
 * the store's schema, released when the work ends or the holder's connection dies.
 */
import type { PoolClient } from 'pg';
import { checkout, type CheckedOut, type StoreContext } from './database.js';
import { toStoreError } from './errors.js';

/** Longest pause between two tries at a held lock. */
const LOCK_POLL_MAX_MS = 250;

async function tryLock(client: PoolClient, key: string): Promise<boolean> {
  return (await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [key])).rows[0]?.locked === true;
}

export async function withLock<T>(ctx: StoreContext, name: string, work: () => Promise<T>): Promise<T> {
  ctx.checkOpen();
  const key = `${ctx.t.topics}:${name}`;
  let out: CheckedOut | undefined;
  try {
    out = await checkout(ctx.pool);
    // Asked again until free, not waited for in one statement: a statement ends within the
    // store's query timeout (so a silent network cut is noticed), and a wait that long for a
    // holder still working (a long backfill) failed the waiter with a store error.
    for (let delay = 10; !(await tryLock(out.client, key)); delay = Math.min(LOCK_POLL_MAX_MS, delay * 2)) {
      ctx.checkOpen();
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  } catch (error) {
    out?.release(error instanceof Error ? error : undefined);
    throw toStoreError(error, `take the lock "${name}"`);
  }
  const { client } = out;
  try {
    return await work();
  } finally {
    // A session lock: released explicitly, or by PostgreSQL if this connection dies.
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
    out.release();
  }
}

export async function tryWithLock<T>(ctx: StoreContext, name: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
  ctx.checkOpen();
  const key = `${ctx.t.topics}:${name}`;
  let out: CheckedOut;
  try {
    out = await checkout(ctx.pool);
  } catch (error) {
    throw toStoreError(error, `take the lock "${name}"`);
  }
  const { client } = out;
  let locked: boolean;
  try {
    locked = await tryLock(client, key);
  } catch (error) {
    out.release(error instanceof Error ? error : undefined);
    throw toStoreError(error, `take the lock "${name}"`);
  }
  if (!locked) {
    out.release();
    return { ran: false };
  }
  try {
    return { ran: true, value: await work() };
  } finally {
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [key]).catch(() => undefined);
    out.release();
  }
}
