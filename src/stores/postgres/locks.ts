/**
 * Locks every process of the deployment sees: PostgreSQL session advisory locks, named within
 * the store's schema, released when the work ends or the holder's connection dies.
 */
import { checkout, type CheckedOut, type StoreContext } from './database.js';
import { toStoreError } from './errors.js';

export async function withLock<T>(ctx: StoreContext, name: string, work: () => Promise<T>): Promise<T> {
  ctx.checkOpen();
  const key = `${ctx.t.topics}:${name}`;
  let out: CheckedOut | undefined;
  try {
    out = await checkout(ctx.pool);
    await out.client.query('SELECT pg_advisory_lock(hashtext($1))', [key]);
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
    locked = (await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS locked', [key])).rows[0]?.locked === true;
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
