import type Database from 'better-sqlite3';
import type { Catalog } from './catalog.js';
import { unknownTopic } from './errors.js';
import type { Clock } from './options.js';

/** The journal of completed `ctx.once` steps, kept for the topic's dedup window. */
export class Effects {
  private readonly read: Database.Statement<[number, string, string, string, number], [string | null]>;
  private readonly write: Database.Statement<[number, string, string, string, string | null, number]>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly now: Clock,
  ) {
    // An expired row is as good as none, even before housekeeping deletes it.
    this.read = db
      .prepare<[number, string, string, string, number], [string | null]>(
        'SELECT result FROM effects WHERE tid = ? AND grp = ? AND message_id = ? AND name = ? AND expires_at > ?',
      )
      .raw();
    this.write = db.prepare('INSERT OR REPLACE INTO effects (tid, grp, message_id, name, result, expires_at) VALUES (?, ?, ?, ?, ?, ?)');
  }

  get(topic: string, group: string, messageId: string, name: string): string | null | undefined {
    const row = this.catalog.topic(topic);
    if (row === undefined) return undefined;
    return this.read.get(row.tid, group, messageId, name, this.now())?.[0];
  }

  put(topic: string, group: string, messageId: string, name: string, result: string | null): void {
    const row = this.catalog.topic(topic);
    if (row === undefined) throw unknownTopic(topic);
    this.write.run(row.tid, group, messageId, name, result, this.now() + row.dedupWindowMs);
  }
}
