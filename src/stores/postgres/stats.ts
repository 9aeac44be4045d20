/** Stats and upkeep: every group of a topic in one snapshot, and the deletion of expired rows. */
import type { GroupSnapshot, StoredLease } from '../store.js';
import { clockSql, compare, type StoreContext } from './database.js';

type LeaseRow = {
  grp: string;
  partition: number;
  owner: string | null;
  lease_until: number;
  in_flight: number;
  held_count: number;
  held_oldest: number;
};

export async function groupSnapshots(ctx: StoreContext, topic: string): Promise<GroupSnapshot[]> {
  const isolation = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
  return ctx.transaction(
    `read the groups of topic "${topic}"`,
    async (db) => {
      const head = await db.query<{ partitions: number; now: number }>(`SELECT partitions, ${clockSql(2)} AS now FROM ${ctx.t.topics} WHERE name = $1`, [
        topic,
        ctx.clock(),
      ]);
      const topicRow = head.rows[0];
      if (topicRow === undefined) return [];
      const { partitions, now } = topicRow;
      const groups = await db.query<{ name: string; control_version: number; order_violations: number; deferrals: number; last_seen_at: number | null }>(
        `SELECT name, control_version, order_violations, deferrals, last_seen_at FROM ${ctx.t.groups} WHERE topic = $1`,
        [topic],
      );
      const members = await db.query<{ grp: string; n: number }>(
        `SELECT grp, count(*) AS n FROM ${ctx.t.members} WHERE topic = $1 AND expires_at > $2 GROUP BY grp`,
        [topic, now],
      );
      const leases = await db.query<LeaseRow>(
        `SELECT grp, partition, owner, lease_until, in_flight, held_count, held_oldest FROM ${ctx.t.leases} WHERE topic = $1`,
        [topic],
      );
      // A parked dead letter without a key blocks nothing but itself: it counts on its own.
      const letters = await db.query<{ grp: string; n: number; parked_keys: number }>(
        `SELECT grp, count(*) AS n,
                count(DISTINCT key) FILTER (WHERE parked) + count(*) FILTER (WHERE parked AND key IS NULL) AS parked_keys
         FROM ${ctx.t.deadLetters} WHERE topic = $1 GROUP BY grp`,
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
          deferrals: g.deferrals,
          members: memberCounts.get(g.name) ?? 0,
          leases: snapshotLeases(
            partitions,
            leases.rows.filter((l) => l.grp === g.name),
            now,
          ),
          deadLetters: letterCounts.get(g.name)?.n ?? 0,
          parkedKeys: letterCounts.get(g.name)?.parked_keys ?? 0,
          lastSeenAt: g.last_seen_at,
          now,
        }));
    },
    isolation,
  );
}

export async function housekeeping(ctx: StoreContext): Promise<void> {
  const clock = ctx.clock();
  const expired = (table: string) => `DELETE FROM ${table} WHERE expires_at <= ${clockSql(1)}`;
  // Parked and skipped states have no expiry (NULL never compares <=): an operator decides.
  for (const table of [ctx.t.dedup, ctx.t.effects, ctx.t.states, ctx.t.members]) {
    await ctx.rows('delete expired rows', ctx.pool, expired(table), [clock]);
  }
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
