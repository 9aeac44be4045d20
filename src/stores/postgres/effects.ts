/** The `ctx.once` effect journal: a named effect's result per message, kept for the dedup window. */
import { clockSql, type StoreContext } from './database.js';

export async function getEffect(ctx: StoreContext, topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined> {
  // An expired row is as good as none, even before housekeeping deletes it.
  const rows = await ctx.rows<{ result: string | null }>(
    `read effect "${name}" of message "${messageId}"`,
    ctx.pool,
    `SELECT result FROM ${ctx.t.effects} WHERE topic = $1 AND grp = $2 AND message_id = $3 AND name = $4 AND expires_at > ${clockSql(5)}`,
    [topic, group, messageId, name, ctx.clock()],
  );
  return rows[0]?.result;
}

export async function putEffect(ctx: StoreContext, topic: string, group: string, messageId: string, name: string, result: string | null, windowMs: number): Promise<void> {
  await ctx.rows(
    `record effect "${name}" of message "${messageId}"`,
    ctx.pool,
    `INSERT INTO ${ctx.t.effects} (topic, grp, message_id, name, result, expires_at) VALUES ($1, $2, $3, $4, $5, ${clockSql(7)} + $6::bigint)
     ON CONFLICT (topic, grp, message_id, name) DO UPDATE SET result = excluded.result, expires_at = excluded.expires_at`,
    [topic, group, messageId, name, result, Math.round(windowMs), ctx.clock()],
  );
}
