import type Database from 'better-sqlite3';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { PreparedMessage, PublishReceipt } from '../../core/envelope.js';
import type { Catalog } from './catalog.js';
import type { Clock } from './options.js';
import { unknownTopic } from './errors.js';
import { headersToText, type MessageStore } from './message-store.js';
import type { WriteTx } from './transaction.js';

/**
 * Stores messages: a dedup record when the id came from the producer, the message row, and
 * one pending row per group subscribed at this moment (read inside the write transaction, so
 * a group another process creates is either seen here or backfills the message itself).
 */
export class Publisher {
  /**
   * Claims the id for this message unless a live record holds it: an expired record is
   * replaced, a live one is left alone (no row changed = duplicate). One statement in the
   * common case of a new id.
   */
  private readonly claimId: Database.Statement<[number, string, number, number, number, number]>;
  private readonly readClaim: Database.Statement<[number, string], [number, number]>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly store: MessageStore,
    private readonly now: Clock,
  ) {
    this.claimId = db.prepare(
      `INSERT INTO dedup (tid, id, partition, seq, expires_at) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (tid, id) DO UPDATE SET partition = excluded.partition, seq = excluded.seq, expires_at = excluded.expires_at
       WHERE dedup.expires_at <= ?`,
    );
    this.readClaim = db.prepare<[number, string], [number, number]>('SELECT partition, seq FROM dedup WHERE tid = ? AND id = ?').raw();
  }

  /** Throws before writing anything when the topic is unknown or a partition is out of range. */
  check(topicName: string, messages: PreparedMessage[]): void {
    const topic = this.catalog.topic(topicName);
    if (topic === undefined) return; // checked again inside the transaction: another process may create it
    for (let i = 0; i < messages.length; i++) {
      const partition = messages[i]!.partition;
      if (!Number.isInteger(partition) || partition < 0 || partition >= topic.partitions) {
        throw new BotqueueError(
          ErrorCodes.INVALID_MESSAGE,
          `message #${i}: partition ${String(partition)} is outside topic "${topicName}" (partitions 0-${topic.partitions - 1})`,
          { details: { field: 'partition', index: i } },
        );
      }
    }
  }

  publish(tx: WriteTx, topicName: string, messages: PreparedMessage[]): PublishReceipt[] {
    const topic = this.catalog.topic(topicName);
    if (topic === undefined) throw unknownTopic(topicName);
    this.check(topicName, messages);
    const now = this.now();
    const expiresAt = now + topic.dedupWindowMs;
    const tid = topic.tid;
    const groups = tx.groupsOf(tid);
    const receipts: PublishReceipt[] = new Array<PublishReceipt>(messages.length);
    for (let i = 0; i < messages.length; i++) {
      const m = messages[i]!;
      const seq = tx.peekSeq();
      if (m.dedup && this.claimId.run(tid, m.id, m.partition, seq, expiresAt, now).changes === 0) {
        const [partition, firstSeq] = this.readClaim.get(tid, m.id)!;
        receipts[i] = { id: m.id, topic: topicName, partition, seq: firstSeq, duplicate: true };
        continue;
      }
      tx.takeSeq();
      this.store.insert({
        seq,
        tid,
        partition: m.partition,
        refs: groups.length,
        notBefore: m.notBefore,
        publishedAt: now,
        id: m.id,
        key: m.key,
        headers: headersToText(m.headers),
        payload: m.payload,
      });
      for (const gid of groups) this.store.insertPending(gid, m.partition, seq, m.notBefore);
      tx.notify(topicName, m.partition);
      receipts[i] = { id: m.id, topic: topicName, partition: m.partition, seq, duplicate: false };
    }
    return receipts;
  }
}
