/**
 * Deleting a group or a topic from the shared store. Each runs in one transaction that first
 * locks the row (coordinate locks the group row too, so no member joins meanwhile), refuses a
 * group with live members, runs `dropBrokerObjects` (the RabbitMQ queues and exchanges), and
 * only then deletes the rows. A crash before COMMIT leaves every row in place, with the
 * RabbitMQ objects possibly gone: the group or topic is still listed, and deleting it again
 * finishes the job (deleting a RabbitMQ object that is gone succeeds).
 */
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { clockSql, type Queryable, type StoreContext } from './database.js';

/** What a group owns, by (topic, grp). The groups row goes last (it is the one that was locked). */
const GROUP_TABLES = ['leases', 'members', 'states', 'deadLetters', 'effects', 'backfillCopied', 'backfillBatches', 'backfillClaims'] as const;

export async function deleteGroup(ctx: StoreContext, topic: string, group: string, dropBrokerObjects: (partitions: number) => Promise<void>): Promise<boolean> {
  return ctx.transaction(`delete group "${group}" of topic "${topic}"`, async (db) => {
    const topicRows = await db.query<{ partitions: number }>(`SELECT partitions FROM ${ctx.t.topics} WHERE name = $1 FOR SHARE`, [topic]);
    const partitions = topicRows.rows[0]?.partitions;
    if (partitions === undefined) return false;
    const locked = await db.query(`SELECT name FROM ${ctx.t.groups} WHERE topic = $1 AND name = $2 FOR UPDATE`, [topic, group]);
    if (locked.rows.length === 0) return false;
    await refuseLiveMembers(ctx, db, topic, [group]);
    await dropBrokerObjects(partitions);
    for (const table of GROUP_TABLES) await db.query(`DELETE FROM ${ctx.t[table]} WHERE topic = $1 AND grp = $2`, [topic, group]);
    await db.query(`DELETE FROM ${ctx.t.groups} WHERE topic = $1 AND name = $2`, [topic, group]);
    return true;
  });
}

export async function deleteTopic(ctx: StoreContext, topic: string, dropBrokerObjects: (partitions: number, groups: string[]) => Promise<void>): Promise<boolean> {
  return ctx.transaction(`delete topic "${topic}"`, async (db) => {
    const topicRows = await db.query<{ partitions: number }>(`SELECT partitions FROM ${ctx.t.topics} WHERE name = $1 FOR UPDATE`, [topic]);
    const partitions = topicRows.rows[0]?.partitions;
    if (partitions === undefined) return false;
    const groups = (await db.query<{ name: string }>(`SELECT name FROM ${ctx.t.groups} WHERE topic = $1 ORDER BY name FOR UPDATE`, [topic])).rows.map((r) => r.name);
    await refuseLiveMembers(ctx, db, topic, groups);
    await dropBrokerObjects(partitions, groups);
    for (const table of [...GROUP_TABLES, 'dedup', 'groups'] as const) await db.query(`DELETE FROM ${ctx.t[table]} WHERE topic = $1`, [topic]);
    await db.query(`DELETE FROM ${ctx.t.topics} WHERE name = $1`, [topic]);
    return true;
  });
}

/** BOTQUEUE_GROUP_HAS_MEMBERS when a member of one of the groups has a live heartbeat. */
async function refuseLiveMembers(ctx: StoreContext, db: Queryable, topic: string, groups: string[]): Promise<void> {
  if (groups.length === 0) return;
  const live = await db.query<{ grp: string; n: number }>(
    `SELECT grp, count(*)::int AS n FROM ${ctx.t.members} WHERE topic = $1 AND grp = ANY($2::text[]) AND expires_at > ${clockSql(3)} GROUP BY grp ORDER BY grp`,
    [topic, groups, ctx.clock()],
  );
  if (live.rows.length === 0) return;
  const which = live.rows.map((r) => `group "${r.grp}" has ${r.n} live member(s)`).join(', ');
  throw new BotqueueError(ErrorCodes.GROUP_HAS_MEMBERS, `topic "${topic}": ${which}; stop its workers first (a member counts as live until its heartbeat expires)`, {
    details: { topic, groups: live.rows.map((r) => r.grp) },
  });
}
