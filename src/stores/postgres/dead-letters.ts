/** Dead letters: added (parking their message when parked), listed, matched by filter and removed for redrive or purge. */
import type { QueryResultRow } from 'pg';
import type { DeadLetter, DeadLetterFilter, DeadLetterListOptions } from '../../brokers/broker.js';
import type { ErrorInfo } from '../../core/errors.js';
import type { NewDeadLetter } from '../store.js';
import { compare, type Queryable, type StoreContext } from './database.js';
import { distinctMessages, park, skip, unpark, type MessageRef } from './message-states.js';

const DEFAULT_LIST_LIMIT = 100;

type DeadLetterRow = {
  dlq_id: number;
  topic: string;
  grp: string;
  partition: number;
  seq: number;
  id: string;
  key: string | null;
  payload: string;
  headers: string | null;
  published_at: number;
  attempts: number;
  first_failed_at: number;
  last_failed_at: number;
  error: string;
  parked: boolean;
};

const DEAD_LETTER_COLUMNS =
  'dlq_id, topic, grp, partition, seq, id, key, payload, headers, published_at, attempts, first_failed_at, last_failed_at, error, parked';

export async function addDeadLetters(ctx: StoreContext, letters: NewDeadLetter[]): Promise<number[]> {
  if (letters.length === 0) return [];
  return ctx.transaction(`add ${letters.length} dead letters`, async (db) => {
    const ids: number[] = [];
    for (const letter of letters) {
      const inserted = await db.query<{ dlq_id: number }>(
        `INSERT INTO ${ctx.t.deadLetters}
           (topic, grp, partition, seq, id, key, payload, headers, published_at, attempts, first_failed_at, last_failed_at, error, error_message, parked)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING dlq_id`,
        [
          letter.topic,
          letter.group,
          letter.partition,
          letter.seq,
          letter.id,
          letter.key,
          letter.payload,
          headersToText(letter.headers),
          Math.round(letter.publishedAt),
          letter.attempts,
          Math.round(letter.firstFailedAt),
          Math.round(letter.lastFailedAt),
          JSON.stringify(letter.error),
          letter.error.message,
          letter.parked,
        ],
      );
      ids.push(inserted.rows[0]!.dlq_id);
      if (letter.parked) await park(ctx, db, letter);
    }
    return ids;
  });
}

export async function listDeadLetters(ctx: StoreContext, options: DeadLetterListOptions): Promise<DeadLetter[]> {
  const rows = await selectDeadLetters<DeadLetterRow>(
    ctx,
    'list dead letters',
    DEAD_LETTER_COLUMNS,
    options,
    options.afterDlqId ?? 0,
    options.limit ?? DEFAULT_LIST_LIMIT,
  );
  return rows.map(deadLetter);
}

export async function matchDeadLetterIds(ctx: StoreContext, filter: DeadLetterFilter, afterDlqId: number, limit: number): Promise<number[]> {
  const rows = await selectDeadLetters<{ dlq_id: number }>(ctx, 'match dead letters', 'dlq_id', filter, afterDlqId, limit);
  return rows.map((r) => r.dlq_id);
}

/** `SELECT <columns>` of the dead letters matching `filter` after `afterDlqId`, oldest first. */
async function selectDeadLetters<R extends QueryResultRow>(
  ctx: StoreContext,
  what: string,
  columns: string,
  filter: DeadLetterFilter,
  afterDlqId: number,
  limit: number,
): Promise<R[]> {
  if (limit <= 0 || (filter.dlqIds !== undefined && filter.dlqIds.length === 0)) return [];
  const params: unknown[] = [];
  const where: string[] = [];
  const add = (condition: (placeholder: string) => string, value: unknown) => {
    params.push(value);
    where.push(condition(`$${params.length}`));
  };
  if (filter.topic !== undefined) add((p) => `topic = ${p}`, filter.topic);
  if (filter.group !== undefined) add((p) => `grp = ${p}`, filter.group);
  if (filter.key !== undefined) add((p) => `key = ${p}`, filter.key);
  if (filter.dlqIds !== undefined) add((p) => `dlq_id = ANY(${p}::bigint[])`, filter.dlqIds);
  // strpos, not LIKE: the text is a plain substring, `%` and `_` in it mean themselves.
  if (filter.errorContains !== undefined) add((p) => `strpos(lower(error_message), lower(${p})) > 0`, filter.errorContains);
  add((p) => `dlq_id > ${p}`, afterDlqId);
  params.push(limit);
  const sql = `SELECT ${columns} FROM ${ctx.t.deadLetters} WHERE ${where.join(' AND ')} ORDER BY dlq_id LIMIT $${params.length}`;
  return ctx.rows<R>(what, ctx.pool, sql, params);
}

export async function removeDeadLetters(ctx: StoreContext, dlqIds: number[], action: 'redrive' | 'purge'): Promise<DeadLetter[]> {
  if (dlqIds.length === 0) return [];
  return ctx.transaction(`${action} ${dlqIds.length} dead letters`, async (db) => {
    const deleted = await db.query<DeadLetterRow>(`DELETE FROM ${ctx.t.deadLetters} WHERE dlq_id = ANY($1::bigint[]) RETURNING ${DEAD_LETTER_COLUMNS}`, [
      dlqIds,
    ]);
    const rows = deleted.rows.sort((a, b) => a.dlq_id - b.dlq_id);
    const parked = distinctMessages(rows.filter((r) => r.parked));
    if (parked.length > 0) {
      if (action === 'redrive') await unpark(ctx, db, parked);
      else await skip(ctx, db, parked);
      await bumpControlVersions(ctx, db, parked);
    }
    return rows.map(deadLetter);
  });
}

/** The workers of these groups learn at their next heartbeat that a parked message changed. */
async function bumpControlVersions(ctx: StoreContext, db: Queryable, messages: MessageRef[]): Promise<void> {
  const groups = new Map<string, [string, string]>();
  for (const m of messages) groups.set(JSON.stringify([m.topic, m.grp]), [m.topic, m.grp]);
  // One group at a time in a fixed order, so two concurrent calls never wait on each other in a cycle.
  const ordered = [...groups.entries()].sort(([a], [b]) => compare(a, b));
  for (const [, [topic, grp]] of ordered) {
    await db.query(`UPDATE ${ctx.t.groups} SET control_version = control_version + 1 WHERE topic = $1 AND name = $2`, [topic, grp]);
  }
}

function deadLetter(r: DeadLetterRow): DeadLetter {
  return {
    dlqId: r.dlq_id,
    topic: r.topic,
    group: r.grp,
    partition: r.partition,
    seq: r.seq,
    id: r.id,
    key: r.key,
    payload: r.payload,
    headers: r.headers === null ? {} : (JSON.parse(r.headers) as Record<string, string>),
    publishedAt: r.published_at,
    attempts: r.attempts,
    firstFailedAt: r.first_failed_at,
    lastFailedAt: r.last_failed_at,
    error: JSON.parse(r.error) as ErrorInfo,
    parked: r.parked,
  };
}

/** Headers are stored as JSON, or NULL when there are none. */
function headersToText(headers: Record<string, string>): string | null {
  return Object.keys(headers).length === 0 ? null : JSON.stringify(headers);
}
