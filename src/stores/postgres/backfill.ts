/**
 * The backfill of a new group: `backfill_pending` while it waits for its copy of the unclaimed
 * backlog, the ledger of ids copied so far (so a copier that died is carried on without copying
 * twice what it recorded), the batches recorded, and the claims that let a consumer drop the
 * twin of a copy whose batch was copied again after a crash (src/brokers/rabbitmq/copy-claims.ts).
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

export async function beginCopyBatch(ctx: StoreContext, topic: string, group: string, batch: string, clean: boolean): Promise<void> {
  await ctx.rows(
    `begin a backfill batch of group "${group}"`,
    ctx.pool,
    `INSERT INTO ${ctx.t.backfillBatches} (topic, grp, batch, clean, recorded, started_at) VALUES ($1, $2, $3, $4, false, $5)`,
    [topic, group, batch, clean, Date.now()],
  );
}

export async function unrecordedBatches(ctx: StoreContext, topic: string, group: string): Promise<number> {
  const rows = await ctx.rows<{ n: string }>(
    `read the backfill batches of group "${group}"`,
    ctx.pool,
    `SELECT count(*) AS n FROM ${ctx.t.backfillBatches} WHERE topic = $1 AND grp = $2 AND NOT recorded`,
    [topic, group],
  );
  return Number(rows[0]?.n ?? 0);
}

export async function recordCopied(ctx: StoreContext, topic: string, group: string, ids: string[], batch: string): Promise<void> {
  await ctx.transaction(`record the backfill of group "${group}"`, async (db) => {
    await db.query(`INSERT INTO ${ctx.t.backfillCopied} (topic, grp, id) SELECT $1, $2, unnest($3::text[]) ON CONFLICT DO NOTHING`, [topic, group, ids]);
    await db.query(`UPDATE ${ctx.t.backfillBatches} SET recorded = true WHERE topic = $1 AND grp = $2 AND batch = $3`, [topic, group, batch]);
  });
}

export async function cleanBatches(ctx: StoreContext, topic: string, group: string, batches: string[]): Promise<Set<string>> {
  const rows = await ctx.rows<{ batch: string }>(
    `read the backfill batches of group "${group}"`,
    ctx.pool,
    `SELECT batch FROM ${ctx.t.backfillBatches} WHERE topic = $1 AND grp = $2 AND batch = ANY($3::text[]) AND recorded AND clean`,
    [topic, group, batches],
  );
  return new Set(rows.map((r) => r.batch));
}

/**
 * First claim of an id wins. The ids not claimed by this call and not already claimed by the
 * same batch (a redelivery of the copy that claimed it) belong to a twin: the SELECT's snapshot
 * may miss a claim committed by a concurrent caller, and a missing claim counts as another's.
 */
export async function claimCopies(ctx: StoreContext, topic: string, group: string, claims: Array<{ id: string; batch: string }>): Promise<Set<string>> {
  const ids = claims.map((c) => c.id);
  const rows = await ctx.rows<{ id: string; batch: string }>(
    `claim backfill copies of group "${group}"`,
    ctx.pool,
    `WITH claimed AS (
       INSERT INTO ${ctx.t.backfillClaims} (topic, grp, id, batch, claimed_at)
       SELECT $1, $2, c.id, c.batch, $5 FROM unnest($3::text[], $4::text[]) AS c(id, batch)
       ON CONFLICT DO NOTHING RETURNING id, batch
     )
     SELECT id, batch FROM claimed
     UNION ALL
     SELECT id, batch FROM ${ctx.t.backfillClaims} WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[])`,
    [topic, group, ids, claims.map((c) => c.batch), Date.now()],
  );
  const owner = new Map(rows.map((r) => [r.id, r.batch]));
  return new Set(claims.filter((c) => owner.get(c.id) !== c.batch).map((c) => c.id));
}

export async function finishBackfill(ctx: StoreContext, topic: string, group: string): Promise<void> {
  await ctx.transaction(`finish the backfill of group "${group}"`, async (db) => {
    await db.query(`UPDATE ${ctx.t.groups} SET backfill_pending = false WHERE topic = $1 AND name = $2`, [topic, group]);
    await db.query(`DELETE FROM ${ctx.t.backfillCopied} WHERE topic = $1 AND grp = $2`, [topic, group]);
    // Twins of a copy can wait in the group's queues after the backfill ends: its batches and
    // claims stay, and those of any backfill finished a week ago go.
    const weekAgo = Date.now() - 7 * 24 * 3_600_000;
    await db.query(`DELETE FROM ${ctx.t.backfillBatches} WHERE started_at < $1`, [weekAgo]);
    await db.query(`DELETE FROM ${ctx.t.backfillClaims} WHERE claimed_at < $1`, [weekAgo]);
  });
}
