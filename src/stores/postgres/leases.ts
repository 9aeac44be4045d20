/**
 * Membership and partition leases: coordinate (heartbeat, renewal, release and acquisition in
 * one transaction, fences growing on every change of owner) and the held reports for stats.
 */
import type { CoordinateRequest, CoordinateResult, MemberReport } from '../../brokers/broker.js';
import type { HeldReport } from '../store.js';
import { clockSql, compare, type Queryable, type StoreContext } from './database.js';
import { invalid } from './errors.js';
import { createGroup, requireTopic } from './topics.js';

/** The held report of a lease from the member's JSON report (`$5`), keyed by partition. */
const HELD_COLUMNS = `held_count = COALESCE(($5::jsonb -> partition::text ->> 'count')::int, 0),
  held_oldest = COALESCE(($5::jsonb -> partition::text ->> 'oldestPublishedAt')::bigint, 0)`;

export async function coordinate(ctx: StoreContext, request: CoordinateRequest, held: Record<number, HeldReport>): Promise<CoordinateResult> {
  const where = `coordinate ${request.topic}/${request.group}`;
  checkCoordinateRequest(request, where);
  return ctx.transaction(where, async (db) => {
    const partitions = await requireTopic(ctx, db, request.topic);
    checkPartitions(request, partitions, where);
    // Every coordinate of the group queues here: two members racing for a partition see
    // each other's result, and locks are always taken group row first, then leases.
    const controlVersion = await lockGroup(ctx, db, request.topic, request.group, partitions);
    const key = [request.topic, request.group, request.member];
    const leaseMs = Math.max(1, Math.round(request.leaseMs));
    const now = await heartbeat(ctx, db, key, leaseMs);
    await db.query(`UPDATE ${ctx.t.groups} SET last_seen_at = $3 WHERE topic = $1 AND name = $2`, [request.topic, request.group, now]);
    const until = now + leaseMs;
    const heldReports = JSON.stringify(held);

    await db.query(`DELETE FROM ${ctx.t.members} WHERE topic = $1 AND grp = $2 AND expires_at <= $3`, [request.topic, request.group, now]);
    if (request.release.length > 0) {
      await db.query(`${releaseSql(ctx)} AND owner = $3 AND partition = ANY($4::int[])`, [...key, request.release]);
    }
    await db.query(
      `UPDATE ${ctx.t.leases} SET lease_until = $4, ${HELD_COLUMNS}
       WHERE topic = $1 AND grp = $2 AND owner = $3`,
      [...key, until, heldReports],
    );
    if (request.leaving !== true && request.acquire.length > 0) {
      // The member's own partitions were renewed just before and never match here: taking
      // back an expired lease nobody else took keeps its fence.
      await db.query(
        `UPDATE ${ctx.t.leases} SET owner = $3, fence = fence + 1, lease_until = $4, in_flight = 0, ${HELD_COLUMNS}
         WHERE topic = $1 AND grp = $2 AND partition = ANY($6::int[]) AND (owner IS NULL OR (owner <> $3 AND lease_until <= $7))`,
        [...key, until, heldReports, request.acquire, now],
      );
    }
    if (request.leaving === true) {
      await db.query(`${releaseSql(ctx)} AND owner = $3`, key);
      await db.query(`DELETE FROM ${ctx.t.members} WHERE topic = $1 AND grp = $2 AND member = $3`, key);
    }

    const members = await db.query<{ member: string }>(`SELECT member FROM ${ctx.t.members} WHERE topic = $1 AND grp = $2 AND expires_at > $3`, [
      request.topic,
      request.group,
      now,
    ]);
    const owned = await db.query<{ partition: number; fence: number }>(
      `SELECT partition, fence FROM ${ctx.t.leases} WHERE topic = $1 AND grp = $2 AND owner = $3 ORDER BY partition`,
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

export async function reportHeld(ctx: StoreContext, topic: string, group: string, member: string, held: Record<number, HeldReport>): Promise<void> {
  const partitions = Object.keys(held).map(Number);
  if (partitions.length === 0) return;
  await ctx.rows(
    `report what ${topic}/${group} holds`,
    ctx.pool,
    `UPDATE ${ctx.t.leases}
     SET held_count = COALESCE(($4::jsonb -> partition::text ->> 'count')::int, 0),
         held_oldest = COALESCE(($4::jsonb -> partition::text ->> 'oldestPublishedAt')::bigint, 0)
     WHERE topic = $1 AND grp = $2 AND owner = $3 AND partition = ANY($5::int[])`,
    [topic, group, member, JSON.stringify(held), partitions],
  );
}

/** `UPDATE leases ... WHERE topic = $1 AND grp = $2` that frees a lease; callers add which. */
function releaseSql(ctx: StoreContext): string {
  return `UPDATE ${ctx.t.leases} SET owner = NULL, lease_until = 0, in_flight = 0, held_count = 0, held_oldest = 0 WHERE topic = $1 AND grp = $2`;
}

/** Records the member's heartbeat and returns the store's time, read after the group lock was taken. */
async function heartbeat(ctx: StoreContext, db: Queryable, key: unknown[], leaseMs: number): Promise<number> {
  const result = await db.query<{ now: number }>(
    `INSERT INTO ${ctx.t.members} AS m (topic, grp, member, expires_at) SELECT $1, $2, $3, c.now + $4::bigint FROM (SELECT ${clockSql(5)} AS now) AS c
     ON CONFLICT (topic, grp, member) DO UPDATE SET expires_at = excluded.expires_at
     RETURNING m.expires_at - $4::bigint AS now`,
    [...key, leaseMs, ctx.clock()],
  );
  return result.rows[0]!.now;
}

/** Locks the group row for the transaction (creating the group first if needed) and returns its control version. */
async function lockGroup(ctx: StoreContext, db: Queryable, topic: string, group: string, partitions: number): Promise<number> {
  const lock = `SELECT control_version FROM ${ctx.t.groups} WHERE topic = $1 AND name = $2 FOR UPDATE`;
  let rows = (await db.query<{ control_version: number }>(lock, [topic, group])).rows;
  if (rows.length === 0) {
    // A member may coordinate before anyone called ensureGroup: the group is created then.
    await createGroup(ctx, db, topic, group, partitions);
    rows = (await db.query<{ control_version: number }>(lock, [topic, group])).rows;
  }
  return rows[0]!.control_version;
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

/** A member's report for stats: in flight on the leases it owns, counters added to the group's. */
export async function reportMember(ctx: StoreContext, report: MemberReport): Promise<void> {
  const where = `report member "${report.member}" of ${report.topic}/${report.group}`;
  await ctx.transaction(where, async (db) => {
    const partitions = Object.keys(report.inFlight).map(Number);
    if (partitions.length > 0) {
      await db.query(
        `UPDATE ${ctx.t.leases} SET in_flight = COALESCE(($4::jsonb ->> partition::text)::int, 0)
         WHERE topic = $1 AND grp = $2 AND owner = $3 AND partition = ANY($5::int[])`,
        [report.topic, report.group, report.member, JSON.stringify(report.inFlight), partitions],
      );
    }
    if (report.orderViolations > 0 || report.deferrals > 0) {
      await db.query(`UPDATE ${ctx.t.groups} SET order_violations = order_violations + $3, deferrals = deferrals + $4 WHERE topic = $1 AND name = $2`, [
        report.topic,
        report.group,
        Math.round(report.orderViolations),
        Math.round(report.deferrals),
      ]);
    }
  });
}

export async function currentFences(ctx: StoreContext, topic: string, group: string, partitions: number[]): Promise<Map<number, { owner: string | null; fence: number }>> {
  if (partitions.length === 0) return new Map();
  const rows = await ctx.rows<{ partition: number; owner: string | null; fence: number }>(
    `read the fences of ${topic}/${group}`,
    ctx.pool,
    `SELECT partition, owner, fence FROM ${ctx.t.leases} WHERE topic = $1 AND grp = $2 AND partition = ANY($3::int[])`,
    [topic, group, partitions],
  );
  return new Map(rows.map((r) => [r.partition, { owner: r.owner, fence: r.fence }]));
}
