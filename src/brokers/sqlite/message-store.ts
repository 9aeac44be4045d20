import type Database from 'better-sqlite3';
import type { Counts } from './counts.js';

/** Headers are stored as JSON, or NULL when there are none (the common case costs nothing). */
export function headersToText(headers: Record<string, string>): string | null {
  for (const _name in headers) return JSON.stringify(headers);
  return null;
}

export function headersFromText(text: string | null): Record<string, string> {
  return text === null ? {} : (JSON.parse(text) as Record<string, string>);
}

export interface NewMessage {
  seq: number;
  tid: number;
  partition: number;
  /** Pending rows that will point at it (one per group it is delivered to). */
  refs: number;
  notBefore: number;
  publishedAt: number;
  id: string;
  key: string | null;
  headers: string | null;
  payload: string;
}

/**
 * The rows every write path shares: a message, its pending rows (one per group), and the
 * removal of a pending row, which deletes the message once no group has it pending
 * (`messages.refs` counts them).
 */
export class MessageStore {
  private readonly insertMessage: Database.Statement<[number, number, number, number, number, number, string, string | null, string | null, string]>;
  private readonly insertPendingRow: Database.Statement<[number, number, number, number]>;
  private readonly deletePendingRow: Database.Statement<[number, number, number]>;
  private readonly deleteIfLast: Database.Statement<[number]>;
  private readonly dropRef: Database.Statement<[number]>;

  constructor(
    db: Database.Database,
    private readonly counts: Counts,
  ) {
    this.insertMessage = db.prepare(
      'INSERT INTO messages (seq, tid, partition, refs, not_before, published_at, id, key, headers, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
    );
    this.insertPendingRow = db.prepare(
      'INSERT INTO pending (gid, partition, seq, not_before, attempts, first_failed_at, parked) VALUES (?, ?, ?, ?, 0, NULL, 0)',
    );
    this.deletePendingRow = db.prepare('DELETE FROM pending WHERE gid = ? AND partition = ? AND seq = ?');
    this.deleteIfLast = db.prepare('DELETE FROM messages WHERE seq = ? AND refs <= 1');
    this.dropRef = db.prepare('UPDATE messages SET refs = refs - 1 WHERE seq = ?');
  }

  insert(m: NewMessage): void {
    this.insertMessage.run(m.seq, m.tid, m.partition, m.refs, m.notBefore, m.publishedAt, m.id, m.key, m.headers, m.payload);
    this.counts.retained(m.tid, 1);
  }

  insertPending(gid: number, partition: number, seq: number, notBefore: number): void {
    this.insertPendingRow.run(gid, partition, seq, notBefore);
    this.counts.backlog(gid, partition, 1);
  }

  /** Removes a group's pending row; false when there was none. `tid` is the group's topic. */
  removePending(gid: number, tid: number, partition: number, seq: number): boolean {
    if (this.deletePendingRow.run(gid, partition, seq).changes === 0) return false;
    this.counts.backlog(gid, partition, -1);
    this.release(tid, seq);
    return true;
  }

  /**
   * One pending row of the message (of topic `tid`) is gone, and counted by the caller: drop
   * the message with its last reference.
   */
  release(tid: number, seq: number): void {
    if (this.deleteIfLast.run(seq).changes === 0) this.dropRef.run(seq);
    else this.counts.retained(tid, -1);
  }
}
