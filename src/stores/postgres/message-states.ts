/**
 * Message states: the failed attempts of a message held for a retry, and the parked and
 * skipped marks an operator's redrive or purge leaves for the worker holding the message.
 */
import type { MessageFailure, MessageState, NewDeadLetter } from '../store.js';
import { clockSql, type Queryable, type StoreContext } from './database.js';

type StateRow = {
  id: string;
  attempts: number;
  first_failed_at: number | null;
  not_before: number;
  parked: boolean;
  skip: boolean;
};

export interface MessageRef {
  topic: string;
  grp: string;
  id: string;
}

export async function getMessageStates(ctx: StoreContext, topic: string, group: string, ids: string[]): Promise<Map<string, MessageState>> {
  const states = new Map<string, MessageState>();
  if (ids.length === 0) return states;
  const rows = await ctx.rows<StateRow>(
    `read message states of ${topic}/${group}`,
    ctx.pool,
    `SELECT id, attempts, first_failed_at, not_before, parked, skip FROM ${ctx.t.states}
     WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[]) AND (expires_at IS NULL OR expires_at > ${clockSql(4)})`,
    [topic, group, ids, ctx.clock()],
  );
  for (const r of rows) {
    states.set(r.id, { id: r.id, attempts: r.attempts, firstFailedAt: r.first_failed_at, notBefore: r.not_before, parked: r.parked, skip: r.skip });
  }
  return states;
}

export async function recordFailures(ctx: StoreContext, topic: string, group: string, failures: MessageFailure[], windowMs: number): Promise<void> {
  if (failures.length === 0) return;
  await ctx.rows(
    `record failures of ${topic}/${group}`,
    ctx.pool,
    `INSERT INTO ${ctx.t.states} AS s (topic, grp, id, attempts, first_failed_at, not_before, expires_at)
     SELECT $1, $2, f.id, f.attempts, f.failed_at, f.not_before, ${clockSql(8)} + $7::bigint
     FROM unnest($3::text[], $4::int[], $5::bigint[], $6::bigint[]) AS f(id, attempts, failed_at, not_before)
     ORDER BY f.id
     ON CONFLICT (topic, grp, id) DO UPDATE SET attempts = excluded.attempts, first_failed_at = COALESCE(s.first_failed_at, excluded.first_failed_at),
       not_before = excluded.not_before, expires_at = excluded.expires_at`,
    [
      topic,
      group,
      failures.map((f) => f.id),
      failures.map((f) => f.attempts),
      failures.map((f) => Math.round(f.failedAt)),
      failures.map((f) => Math.round(f.notBefore)),
      Math.round(windowMs),
      ctx.clock(),
    ],
  );
}

export async function clearMessageStates(ctx: StoreContext, topic: string, group: string, ids: string[]): Promise<void> {
  if (ids.length === 0) return;
  await ctx.rows(
    `clear message states of ${topic}/${group}`,
    ctx.pool,
    `DELETE FROM ${ctx.t.states} WHERE topic = $1 AND grp = $2 AND id = ANY($3::text[])`,
    [topic, group, ids],
  );
}

/** The message's key waits for an operator: its state is parked and never expires until cleared. */
export async function park(ctx: StoreContext, db: Queryable, letter: NewDeadLetter): Promise<void> {
  await db.query(
    `INSERT INTO ${ctx.t.states} AS s (topic, grp, id, attempts, first_failed_at, not_before, parked, skip, expires_at)
     VALUES ($1, $2, $3, $4, $5, 0, TRUE, FALSE, NULL)
     ON CONFLICT (topic, grp, id) DO UPDATE SET attempts = excluded.attempts, first_failed_at = COALESCE(s.first_failed_at, excluded.first_failed_at),
       not_before = 0, parked = TRUE, skip = FALSE, expires_at = NULL`,
    [letter.topic, letter.group, letter.id, letter.attempts, Math.round(letter.firstFailedAt)],
  );
}

/** Redriven: the held message runs again from its first attempt; the state expires with the topic's dedup window. */
export async function unpark(ctx: StoreContext, db: Queryable, messages: MessageRef[]): Promise<void> {
  await db.query(
    `UPDATE ${ctx.t.states} AS s SET parked = FALSE, attempts = 0, first_failed_at = NULL, not_before = 0, skip = FALSE,
       expires_at = ${clockSql(4)} + t.dedup_window_ms
     FROM unnest($1::text[], $2::text[], $3::text[]) AS m(topic, grp, id) JOIN ${ctx.t.topics} AS t ON t.name = m.topic
     WHERE s.topic = m.topic AND s.grp = m.grp AND s.id = m.id`,
    [...messageColumns(messages), ctx.clock()],
  );
}

/** Purged: the held message must be acked unhandled; the mark stays until the worker clears it. */
export async function skip(ctx: StoreContext, db: Queryable, messages: MessageRef[]): Promise<void> {
  await db.query(
    `INSERT INTO ${ctx.t.states} (topic, grp, id, attempts, first_failed_at, not_before, parked, skip, expires_at)
     SELECT m.topic, m.grp, m.id, 0, NULL, 0, FALSE, TRUE, NULL FROM unnest($1::text[], $2::text[], $3::text[]) AS m(topic, grp, id)
     ON CONFLICT (topic, grp, id) DO UPDATE SET parked = FALSE, skip = TRUE, expires_at = NULL`,
    messageColumns(messages),
  );
}

/** One entry per message: an upsert may not touch the same row twice in one statement. */
export function distinctMessages(rows: MessageRef[]): MessageRef[] {
  const unique = new Map<string, MessageRef>();
  for (const r of rows) unique.set(JSON.stringify([r.topic, r.grp, r.id]), { topic: r.topic, grp: r.grp, id: r.id });
  return [...unique.values()];
}

function messageColumns(messages: MessageRef[]): [string[], string[], string[]] {
  return [messages.map((m) => m.topic), messages.map((m) => m.grp), messages.map((m) => m.id)];
}
