import type Database from 'better-sqlite3';
import type { DeadLetterFilter } from '../broker.js';

/** Name of the SQL function the filter uses for a case-insensitive substring of the error. */
const ICONTAINS = 'botqueue_icontains';

/**
 * Builds and caches (per shape of filter) `SELECT <columns> FROM dead_letters WHERE ...
 * AND dlq_id > ? ORDER BY dlq_id LIMIT ?`; the indexes on (topic, grp) and key serve it.
 */
export class FilterQueries {
  private readonly cache = new Map<string, Database.Statement<unknown[], unknown[]>>();

  constructor(private readonly db: Database.Database) {
    db.function(ICONTAINS, { deterministic: true }, (text: unknown, needle: unknown) =>
      typeof text === 'string' && typeof needle === 'string' && text.toLowerCase().includes(needle) ? 1 : 0,
    );
  }

  /** Rows (as arrays of `columns`) matching `filter` after `afterDlqId`, oldest first. */
  select(columns: string, filter: DeadLetterFilter, afterDlqId: number, limit: number): unknown[][] {
    if (limit <= 0 || (filter.dlqIds !== undefined && filter.dlqIds.length === 0)) return [];
    const where: string[] = [];
    const params: unknown[] = [];
    if (filter.topic !== undefined) {
      where.push('topic = ?');
      params.push(filter.topic);
    }
    if (filter.group !== undefined) {
      where.push('grp = ?');
      params.push(filter.group);
    }
    if (filter.key !== undefined) {
      where.push('key = ?');
      params.push(filter.key);
    }
    if (filter.dlqIds !== undefined) {
      where.push('dlq_id IN (SELECT value FROM json_each(?))');
      params.push(JSON.stringify(filter.dlqIds));
    }
    if (filter.errorContains !== undefined) {
      where.push(`${ICONTAINS}(error_message, ?)`);
      params.push(filter.errorContains.toLowerCase());
    }
    where.push('dlq_id > ?');
    params.push(afterDlqId, limit);
    const sql = `SELECT ${columns} FROM dead_letters WHERE ${where.join(' AND ')} ORDER BY dlq_id LIMIT ?`;
    let statement = this.cache.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare<unknown[], unknown[]>(sql).raw();
      this.cache.set(sql, statement);
    }
    return statement.all(...params);
  }
}
