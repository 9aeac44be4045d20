import type Database from 'better-sqlite3';
import type { ErrorInfo } from '../../core/errors.js';
import type { Lease, SettleOutcome, Settlement } from '../broker.js';
import type { Catalog } from './catalog.js';
import type { Counts } from './counts.js';
import type { MessageStore } from './message-store.js';
import type { Publisher } from './publish.js';
import type { WriteTx } from './transaction.js';

type DeadSource = [firstFailedAt: number | null, id: string, key: string | null, publishedAt: number, headers: string | null, payload: string];

/**
 * Applies settlements, each checked against its lease. Only a new owner fences a lease: an
 * owner whose lease ran out but whom nobody replaced may still settle (its work is valid).
 */
export class Settler {
  private readonly readOwner: Database.Statement<[number, number], [string | null, number]>;
  private readonly updateRetry: Database.Statement<[number, number, number, number, number, number]>;
  private readonly readDeadSource: Database.Statement<[number, number, number], DeadSource>;
  private readonly insertDeadLetter: Database.Statement<
    [string, string, number, number, string, string | null, number, number, number, number, number, string, string, string | null, string]
  >;
  private readonly park: Database.Statement<[number, number, number, number, number]>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly store: MessageStore,
    private readonly counts: Counts,
    private readonly publisher: Publisher,
  ) {
    this.readOwner = db.prepare<[number, number], [string | null, number]>('SELECT owner, fence FROM assignments WHERE gid = ? AND partition = ?').raw();
    this.updateRetry = db.prepare(
      `UPDATE pending SET attempts = ?, not_before = ?, first_failed_at = coalesce(first_failed_at, ?)
       WHERE gid = ? AND partition = ? AND seq = ?`,
    );
    this.readDeadSource = db
      .prepare<[number, number, number], DeadSource>(
        `SELECT p.first_failed_at, m.id, m.key, m.published_at, m.headers, m.payload
         FROM pending p JOIN messages m ON m.seq = p.seq WHERE p.gid = ? AND p.partition = ? AND p.seq = ?`,
      )
      .raw();
    this.insertDeadLetter = db.prepare(
      `INSERT INTO dead_letters (topic, grp, partition, seq, id, key, published_at, attempts, first_failed_at, last_failed_at, parked,
         error_message, error, headers, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.park = db.prepare(
      'UPDATE pending SET parked = 1, attempts = ?, first_failed_at = coalesce(first_failed_at, ?) WHERE gid = ? AND partition = ? AND seq = ?',
    );
  }

  /** Runs inside one write (`tx`): an ack's staged publishes are stored in the same transaction. */
  settle(settlements: Settlement[], tx: WriteTx): SettleOutcome[] {
    const outcomes: SettleOutcome[] = new Array<SettleOutcome>(settlements.length);
    // Settlements come in runs for one lease: check each lease once per call.
    let checked: Lease | undefined;
    let checkedGid = 0;
    let checkedTid = 0;
    let checkedOk = false;
    for (let i = 0; i < settlements.length; i++) {
      const s = settlements[i]!;
      const lease = s.lease;
      if (lease !== checked) {
        checked = lease;
        const group = this.catalog.group(lease.topic, lease.group);
        checkedGid = group?.gid ?? 0;
        checkedTid = group?.topic.tid ?? 0;
        if (group === undefined) checkedOk = false;
        else {
          const row = this.readOwner.get(group.gid, lease.partition);
          checkedOk = row !== undefined && row[0] === lease.member && row[1] === lease.fence;
        }
      }
      outcomes[i] = checkedOk ? this.apply(checkedGid, checkedTid, s, tx) : 'fenced';
    }
    return outcomes;
  }

  private apply(gid: number, tid: number, s: Settlement, tx: WriteTx): SettleOutcome {
    const partition = s.lease.partition;
    switch (s.kind) {
      case 'ack': {
        if (!this.store.removePending(gid, tid, partition, s.seq)) return 'missing';
        // The handler's publishes commit with its ack or not at all; their ids are derived from
        // the handled message, so an ack applied twice cannot store them twice either.
        if (s.publish !== undefined) for (const staged of s.publish) this.publisher.publish(tx, staged.topic, staged.messages);
        return 'ok';
      }
      case 'retry':
        return this.updateRetry.run(s.attempts, s.notBefore, s.failedAt, gid, partition, s.seq).changes === 0 ? 'missing' : 'ok';
      case 'dead': {
        const source = this.readDeadSource.get(gid, partition, s.seq);
        if (source === undefined) return 'missing';
        const [firstFailedAt, id, key, publishedAt, headers, payload] = source;
        this.insertDeadLetter.run(
          s.lease.topic,
          s.lease.group,
          partition,
          s.seq,
          id,
          key,
          publishedAt,
          s.attempts,
          firstFailedAt ?? s.failedAt,
          s.failedAt,
          s.park ? 1 : 0,
          s.error.message,
          errorToText(s.error),
          headers,
          payload,
        );
        this.counts.deadLetters(s.lease.topic, s.lease.group, 1);
        if (s.park) this.park.run(s.attempts, s.failedAt, gid, partition, s.seq);
        else this.store.removePending(gid, tid, partition, s.seq);
        return 'ok';
      }
    }
  }
}

function errorToText(error: ErrorInfo): string {
  const info: ErrorInfo = { message: error.message };
  if (error.stack !== undefined) info.stack = error.stack;
  if (error.code !== undefined) info.code = error.code;
  if (error.name !== undefined) info.name = error.name;
  return JSON.stringify(info);
}
