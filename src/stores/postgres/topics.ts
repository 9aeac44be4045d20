/** Topics and groups: a topic's partition count is fixed at creation; a group gets one lease row per partition. */
import type { TopicInfo, TopicSettings } from '../../brokers/broker.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { backfillPendingIn } from './backfill.js';
import { clockSql, compare, type Queryable, type StoreContext } from './database.js';
import { invalid } from './errors.js';

type TopicRow = { name: string; partitions: number; dedup_window_ms: number; created_at: number };

export async function ensureTopic(ctx: StoreContext, name: string, settings: TopicSettings): Promise<TopicInfo> {
  const what = `create topic "${name}"`;
  checkTopicSettings(settings, what);
  const inserted = await ctx.rows<TopicRow>(
    what,
    ctx.pool,
    `INSERT INTO ${ctx.t.topics} (name, partitions, dedup_window_ms, created_at) VALUES ($1, $2, $3, ${clockSql(4)})
     ON CONFLICT (name) DO NOTHING RETURNING name, partitions, dedup_window_ms, created_at`,
    [name, settings.partitions, Math.round(settings.dedupWindowMs), ctx.clock()],
  );
  const row = inserted[0] ?? (await topicRow(ctx, ctx.pool, name, what));
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

export async function getTopic(ctx: StoreContext, name: string): Promise<TopicInfo | undefined> {
  const row = await topicRow(ctx, ctx.pool, name, `read topic "${name}"`);
  return row === undefined ? undefined : topicInfo(row);
}

export async function listTopics(ctx: StoreContext): Promise<TopicInfo[]> {
  const rows = await ctx.rows<TopicRow>('list topics', ctx.pool, `SELECT name, partitions, dedup_window_ms, created_at FROM ${ctx.t.topics}`, []);
  return rows.map(topicInfo).sort((a, b) => compare(a.name, b.name));
}

export async function ensureGroup(ctx: StoreContext, topic: string, group: string): Promise<{ created: boolean; backfillPending: boolean }> {
  return ctx.transaction(`subscribe group "${group}" to topic "${topic}"`, async (db) => {
    const partitions = await requireTopic(ctx, db, topic);
    const created = await createGroup(ctx, db, topic, group, partitions);
    return { created, backfillPending: created || (await backfillPendingIn(ctx, db, topic, group)) };
  });
}

export async function listGroups(ctx: StoreContext, topic: string): Promise<string[]> {
  const rows = await ctx.rows<{ name: string }>(`list the groups of topic "${topic}"`, ctx.pool, `SELECT name FROM ${ctx.t.groups} WHERE topic = $1`, [
    topic,
  ]);
  return rows.map((r) => r.name).sort(compare);
}

/** Inserts the group with a free lease row per partition; false when it already existed. */
export async function createGroup(ctx: StoreContext, db: Queryable, topic: string, group: string, partitions: number): Promise<boolean> {
  const inserted = await db.query(
    // A new group waits for its copy of what was published while the topic had no group.
    `INSERT INTO ${ctx.t.groups} (topic, name, created_at, backfill_pending) VALUES ($1, $2, ${clockSql(3)}, true) ON CONFLICT (topic, name) DO NOTHING RETURNING name`,
    [topic, group, ctx.clock()],
  );
  if (inserted.rows.length === 0) return false;
  await db.query(`INSERT INTO ${ctx.t.leases} (topic, grp, partition) SELECT $1, $2, p FROM generate_series(0, $3::int - 1) AS p`, [
    topic,
    group,
    partitions,
  ]);
  return true;
}

export async function topicRow(ctx: StoreContext, db: Queryable, name: string, what: string): Promise<TopicRow | undefined> {
  const rows = await ctx.rows<TopicRow>(what, db, `SELECT name, partitions, dedup_window_ms, created_at FROM ${ctx.t.topics} WHERE name = $1`, [name]);
  return rows[0];
}

/** The topic's partition count; BOTQUEUE_TOPIC_NOT_FOUND when it was never created. */
export async function requireTopic(ctx: StoreContext, db: Queryable, name: string): Promise<number> {
  const row = await topicRow(ctx, db, name, `read topic "${name}"`);
  if (row === undefined) throw unknownTopic(name);
  return row.partitions;
}

function topicInfo(row: TopicRow): TopicInfo {
  return { name: row.name, partitions: row.partitions, dedupWindowMs: row.dedup_window_ms, createdAt: row.created_at };
}

function checkTopicSettings(settings: TopicSettings, where: string): void {
  if (!Number.isInteger(settings.partitions) || settings.partitions < 1) {
    throw invalid(where, `partitions must be a positive integer, got ${String(settings.partitions)}`, 'partitions');
  }
  if (!Number.isFinite(settings.dedupWindowMs) || settings.dedupWindowMs < 0) {
    throw invalid(where, `dedupWindowMs must be a non-negative number, got ${String(settings.dedupWindowMs)}`, 'dedupWindowMs');
  }
}

function unknownTopic(topic: string): BotqueueError {
  return new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist; create it with ensureTopic first`, { details: { topic } });
}
