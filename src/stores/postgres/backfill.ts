/**
 * The backfill of a new group: `backfill_pending` while it waits for its copy of the unclaimed
 * backlog, and the ledger of ids copied so far, so a copier that died is carried on without
 * copying twice.
 */
import type { Queryable, StoreContext } from './database.js';

export async function backfillPending(ctx: StoreContext, topic: string, group: string): Promise<boolean> {
  return backfillPendingIn(ctx, ctx.pool, topic, group);
}

export async function backfillPendingIn(ctx: StoreContext, db: Queryable, topic: string, group: string): Promise<boolean> {
  const rows = await ctx.rows<{ pending: boolean }>(`read group "${group}" of topic "${topic}"`, db, `SELECT backfill_pending AS pending FROM ${ctx.t.groups} WHERE topic = $1 AND name = $2`, [topic, group]);
  return rows[0]?.pending === true;
}

export async function copiedIds(ctx: StoreContext, topic: string, group: string, ids: string[]): Promise<Set<string>> {
  const rows = await ctx.rows<{ id: string }>(`read the backfill of group "${group}"`, ctx.pool, `SELECT id FROM ${ctx.t.backfillCopied} WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[])`, [topic, group, ids]);
  return new Set(rows.map((r) => r.id));
}

export async function recordCopied(ctx: StoreContext, topic: string, group: string, ids: string[]): Promise<void> {
  await ctx.rows(
    `record the backfill of group "${group}"`,
    ctx.pool,
    `INSERT INTO ${ctx.t.backfillCopied} (topic, grp, id) SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`,
    [topic, group, ids],
  );
}

export async function finishBackfill(ctx: StoreContext, topic: string, group: string): Promise<void> {
  await ctx.transaction(`finish the backfill of group "${group}"`, async (db) => {
    await db.query(`UPDATE ${ctx.t.groups} SET backfill_pending = false WHERE topic = $1 AND name = $2`, [topic, group]);
    await db.query(`DELETE FROM ${ctx.t.backfillCopied} WHERE topic = $1 AND grp = $2`, [topic, group]);
  });
}
