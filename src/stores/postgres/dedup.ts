/** Dedup records: ids reserved before a publish, confirmed after it, released when it failed. */
import type { DedupEntry, DedupOutcome } from '../store.js';
import { clockSql, type StoreContext } from './database.js';

type DedupRow = { id: string; partition: number; seq: number; state: 'reserved' | 'confirmed' };

export async function reserveIds(ctx: StoreContext, topic: string, entries: DedupEntry[], windowMs: number, staleAfterMs: number): Promise<DedupOutcome[]> {
  if (entries.length === 0) return [];
  const ids = entries.map((e) => e.id);
  return ctx.transaction(`reserve ids on topic "${topic}"`, async (db) => {
    // One statement decides for the whole batch; the conflicting row is locked even when the
    // WHERE refuses the update, so the read below sees what won. Rows go in id order so two
    // overlapping batches lock in the same order.
    const reserved = await db.query<{ id: string }>(
      `INSERT INTO ${ctx.t.dedup} AS d (topic, id, partition, seq, state, reserved_at, expires_at)
       SELECT $1, e.id, e.partition, e.seq, 'reserved', c.now, c.now + $5::bigint
       FROM unnest($2::text[], $3::int[], $4::bigint[]) AS e(id, partition, seq) CROSS JOIN (SELECT ${clockSql(7)} AS now) AS c
       ORDER BY e.id
       ON CONFLICT (topic, id) DO UPDATE
         SET partition = excluded.partition, seq = excluded.seq, state = 'reserved', reserved_at = excluded.reserved_at, expires_at = excluded.expires_at
         WHERE d.expires_at <= excluded.reserved_at OR (d.state = 'reserved' AND d.reserved_at <= excluded.reserved_at - $6::bigint)
       RETURNING d.id`,
      [topic, ids, entries.map((e) => e.partition), entries.map((e) => e.seq), Math.round(windowMs), Math.round(staleAfterMs), ctx.clock()],
    );
    const won = new Set(reserved.rows.map((r) => r.id));
    const others = ids.filter((id) => !won.has(id));
    const existing = new Map<string, DedupRow>();
    if (others.length > 0) {
      const rows = await db.query<DedupRow>(`SELECT id, partition, seq, state FROM ${ctx.t.dedup} WHERE topic = $1 AND id = ANY($2::text[])`, [
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

export async function confirmIds(ctx: StoreContext, topic: string, entries: DedupEntry[], windowMs: number, publishedSeqs?: number[]): Promise<void> {
  if (entries.length === 0) return;
  await ctx.rows(
    `confirm ids on topic "${topic}"`,
    ctx.pool,
    `UPDATE ${ctx.t.dedup} AS d SET state = 'confirmed', expires_at = ${clockSql(6)} + $5::bigint, seq = e.published
     FROM unnest($2::text[], $3::int[], $4::bigint[], $7::bigint[]) AS e(id, partition, seq, published)
     WHERE d.topic = $1 AND d.id = e.id AND d.partition = e.partition AND d.seq = e.seq`,
    [topic, ...dedupColumns(entries), Math.round(windowMs), ctx.clock(), publishedSeqs ?? entries.map((e) => e.seq)],
  );
}

export async function releaseIds(ctx: StoreContext, topic: string, entries: DedupEntry[]): Promise<void> {
  if (entries.length === 0) return;
  await ctx.rows(
    `release ids on topic "${topic}"`,
    ctx.pool,
    `DELETE FROM ${ctx.t.dedup} AS d USING unnest($2::text[], $3::int[], $4::bigint[]) AS e(id, partition, seq)
     WHERE d.topic = $1 AND d.id = e.id AND d.partition = e.partition AND d.seq = e.seq AND d.state = 'reserved'`,
    [topic, ...dedupColumns(entries)],
  );
}

function dedupColumns(entries: DedupEntry[]): [string[], number[], number[]] {
  return [entries.map((e) => e.id), entries.map((e) => e.partition), entries.map((e) => e.seq)];
}
