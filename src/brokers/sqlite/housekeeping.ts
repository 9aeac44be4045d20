import type Database from 'better-sqlite3';
import type { Clock } from './options.js';

/** Rows deleted per statement: small, so housekeeping never holds the write lock for long. */
export const HOUSEKEEPING_BATCH = 1000;

/** Deletes expired dedup records and effects, oldest first, through the expiry indexes. */
export class Housekeeping {
  private readonly dedup: Database.Statement<[number, number]>;
  private readonly effects: Database.Statement<[number, number]>;

  constructor(
    db: Database.Database,
    private readonly now: Clock,
  ) {
    this.dedup = db.prepare('DELETE FROM dedup WHERE (tid, id) IN (SELECT tid, id FROM dedup WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)');
    this.effects = db.prepare(
      `DELETE FROM effects WHERE (tid, grp, message_id, name) IN
         (SELECT tid, grp, message_id, name FROM effects WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`,
    );
  }

  /** One small step; returns true when more expired rows may be left. */
  step(): boolean {
    const now = this.now();
    const dedup = this.dedup.run(now, HOUSEKEEPING_BATCH).changes;
    const effects = this.effects.run(now, HOUSEKEEPING_BATCH).changes;
    return dedup === HOUSEKEEPING_BATCH || effects === HOUSEKEEPING_BATCH;
  }
}
