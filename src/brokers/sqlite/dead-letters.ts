import type Database from 'better-sqlite3';
import type { ErrorInfo } from '../../core/errors.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterListOptions } from '../broker.js';
import type { Catalog } from './catalog.js';
import type { Counts } from './counts.js';
import type { FilterQueries } from './dlq-filter.js';
import { headersFromText, type MessageStore } from './message-store.js';
import type { Clock } from './options.js';
import type { WriteTx } from './transaction.js';

/** Dead letters handled per write transaction, so a huge redrive or purge never holds the write lock long. */
export const DLQ_CHUNK = 500;

const LIST_COLUMNS =
  'dlq_id, topic, grp, partition, seq, id, key, published_at, attempts, first_failed_at, last_failed_at, parked, error, headers, payload';
type ListRow = [number, string, string, number, number, string, string | null, number, number, number, number, number, string, string | null, string];

const REDRIVE_COLUMNS = 'dlq_id, topic, grp, partition, seq, id, key, parked, headers, payload';
type RedriveRow = [number, string, string, number, number, string, string | null, number, string | null, string];

const PURGE_COLUMNS = 'dlq_id, topic, grp, partition, seq, parked';
type PurgeRow = [number, string, string, number, number, number];

export interface ChunkResult {
  /** Dead letters redriven or purged. */
  done: number;
  /** Rows the chunk looked at; fewer than DLQ_CHUNK means the filter is exhausted. */
  scanned: number;
  lastDlqId: number;
}

/** Lists, redrives and purges dead letters. */
export class DeadLetters {
  private readonly deleteRow: Database.Statement<[number]>;
  private readonly unpark: Database.Statement<[number, number, number]>;
  private readonly deleteParked: Database.Statement<[number, number, number]>;
  private readonly bumpControl: Database.Statement<[number]>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly store: MessageStore,
    private readonly queries: FilterQueries,
    private readonly now: Clock,
    private readonly counts: Counts,
  ) {
    this.deleteRow = db.prepare('DELETE FROM dead_letters WHERE dlq_id = ?');
    this.unpark = db.prepare(
      'UPDATE pending SET parked = 0, attempts = 0, not_before = 0, first_failed_at = NULL WHERE gid = ? AND partition = ? AND seq = ? AND parked = 1',
    );
    this.deleteParked = db.prepare('DELETE FROM pending WHERE gid = ? AND partition = ? AND seq = ? AND parked = 1');
    this.bumpControl = db.prepare('UPDATE groups SET control_version = control_version + 1 WHERE gid = ?');
  }

  list(options: DeadLetterListOptions): DeadLetter[] {
    const rows = this.queries.select(LIST_COLUMNS, options, options.afterDlqId ?? 0, options.limit ?? 100) as ListRow[];
    return rows.map((r) => ({
      dlqId: r[0],
      topic: r[1],
      group: r[2],
      partition: r[3],
      seq: r[4],
      id: r[5],
      key: r[6],
      publishedAt: r[7],
      attempts: r[8],
      firstFailedAt: r[9],
      lastFailedAt: r[10],
      parked: r[11] !== 0,
      error: JSON.parse(r[12]) as ErrorInfo,
      headers: headersFromText(r[13]),
      payload: r[14],
    }));
  }

  /**
   * Redrives the next chunk of matching dead letters after `afterDlqId`. A parked one is
   * unparked in place (its key goes on from it); any other, or a parked one whose pending row
   * is gone, is stored again as a new message (new seq, same id, key, payload and headers)
   * pending for its own group only. The dedup table is not touched: the id is already there.
   */
  redriveChunk(tx: WriteTx, filter: DeadLetterFilter, afterDlqId: number): ChunkResult {
    const rows = this.queries.select(REDRIVE_COLUMNS, filter, afterDlqId, DLQ_CHUNK) as RedriveRow[];
    const bumped = new Set<number>();
    const now = this.now();
    let done = 0;
    for (const [dlqId, topic, grp, partition, seq, id, key, parked, headers, payload] of rows) {
      const group = this.catalog.group(topic, grp);
      if (group === undefined) continue;
      const gid = group.gid;
      if (parked !== 0) {
        if (!bumped.has(gid)) {
          this.bumpControl.run(gid);
          bumped.add(gid);
        }
        if (this.unpark.run(gid, partition, seq).changes > 0) {
          this.removeRow(dlqId, topic, grp);
          tx.notify(topic, partition);
          done++;
          continue;
        }
      }
      const newSeq = tx.takeSeq();
      this.store.insert({ seq: newSeq, tid: group.topic.tid, partition, refs: 1, notBefore: 0, publishedAt: now, id, key, headers, payload });
      this.store.insertPending(gid, partition, newSeq, 0);
      this.removeRow(dlqId, topic, grp);
      tx.notify(topic, partition);
      done++;
    }
    return { done, scanned: rows.length, lastDlqId: rows.length === 0 ? afterDlqId : rows[rows.length - 1]![0] };
  }

  /** Purges the next chunk of matching dead letters; a parked one's pending row goes too (its key goes on). */
  purgeChunk(tx: WriteTx, filter: DeadLetterFilter, afterDlqId: number): ChunkResult {
    const rows = this.queries.select(PURGE_COLUMNS, filter, afterDlqId, DLQ_CHUNK) as PurgeRow[];
    const bumped = new Set<number>();
    let done = 0;
    for (const [dlqId, topic, grp, partition, seq, parked] of rows) {
      this.removeRow(dlqId, topic, grp);
      done++;
      if (parked === 0) continue;
      const group = this.catalog.group(topic, grp);
      if (group === undefined) continue;
      if (this.deleteParked.run(group.gid, partition, seq).changes > 0) {
        this.counts.backlog(group.gid, partition, -1);
        this.store.release(group.topic.tid, seq);
      }
      if (!bumped.has(group.gid)) {
        this.bumpControl.run(group.gid);
        bumped.add(group.gid);
      }
      tx.notify(topic, partition);
    }
    return { done, scanned: rows.length, lastDlqId: rows.length === 0 ? afterDlqId : rows[rows.length - 1]![0] };
  }

  private removeRow(dlqId: number, topic: string, group: string): void {
    this.counts.deadLetters(topic, group, -this.deleteRow.run(dlqId).changes);
  }
}
