import type Database from 'better-sqlite3';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { TopicInfo, TopicSettings } from '../broker.js';
import { topicInfo, type Catalog, type GroupRef } from './catalog.js';
import type { Counts } from './counts.js';
import { unknownTopic } from './errors.js';
import type { Clock } from './options.js';
import type { WriteTx } from './transaction.js';

/** Creates topics and subscribes groups (both idempotent). */
export class Topics {
  private readonly insertTopic: Database.Statement<[string, number, number, number]>;
  private readonly insertGroup: Database.Statement<[number, string, number]>;
  /** Parameters: partition count, gid. */
  private readonly insertAssignments: Database.Statement<[number, number]>;
  private readonly backfillPending: Database.Statement<[number, number]>;
  private readonly backfillRefs: Database.Statement<[number]>;
  private readonly countBackfill: Database.Statement<[number]>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly now: Clock,
    private readonly counts: Counts,
  ) {
    this.insertTopic = db.prepare('INSERT INTO topics (name, partitions, dedup_window_ms, created_at) VALUES (?, ?, ?, ?)');
    this.insertGroup = db.prepare('INSERT OR IGNORE INTO groups (tid, name, created_at) VALUES (?, ?, ?)');
    this.insertAssignments = db.prepare(
      `WITH RECURSIVE p(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM p WHERE n + 1 < ?)
       INSERT OR IGNORE INTO assignments (gid, partition, owner, fence, lease_until, in_flight) SELECT ?, n, NULL, 0, 0, 0 FROM p`,
    );
    // A new group receives every message still retained, like Kafka's `earliest`.
    this.backfillPending = db.prepare(
      `INSERT OR IGNORE INTO pending (gid, partition, seq, not_before, attempts, first_failed_at, parked)
       SELECT ?, partition, seq, not_before, 0, NULL, 0 FROM messages WHERE tid = ?`,
    );
    this.backfillRefs = db.prepare('UPDATE messages SET refs = refs + 1 WHERE tid = ?');
    // One grouped count per partition, written absolutely (a stale row of a deleted group with the same id is replaced).
    this.countBackfill = db.prepare(
      `INSERT INTO backlog_counts (gid, partition, n) SELECT gid, partition, count(*) FROM pending WHERE gid = ? GROUP BY partition
       ON CONFLICT (gid, partition) DO UPDATE SET n = excluded.n`,
    );
  }

  ensureTopic(name: string, settings: TopicSettings): TopicInfo {
    const existing = this.catalog.topic(name);
    if (existing !== undefined) {
      if (existing.partitions !== settings.partitions) {
        throw new BotqueueError(
          ErrorCodes.TOPIC_MISMATCH,
          `topic "${name}" exists with ${existing.partitions} partitions, not ${settings.partitions}; the partition count is fixed at creation`,
          { details: { topic: name, partitions: existing.partitions, requested: settings.partitions } },
        );
      }
      return topicInfo(existing);
    }
    this.insertTopic.run(name, settings.partitions, settings.dedupWindowMs, this.now());
    return topicInfo(this.catalog.topic(name)!);
  }

  /** Subscribes the group (idempotent) and returns it. */
  ensureGroup(tx: WriteTx, topicName: string, group: string): GroupRef {
    const existing = this.catalog.group(topicName, group);
    if (existing !== undefined) return existing;
    const topic = this.catalog.topic(topicName);
    if (topic === undefined) throw unknownTopic(topicName);
    this.insertGroup.run(topic.tid, group, this.now());
    tx.forgetGroups();
    const ref = this.catalog.group(topicName, group)!;
    const gid = ref.gid;
    this.insertAssignments.run(topic.partitions, gid);
    if (this.backfillPending.run(gid, topic.tid).changes > 0) {
      this.backfillRefs.run(topic.tid);
      this.counts.forgetGroup(gid);
      this.countBackfill.run(gid);
      for (let p = 0; p < topic.partitions; p++) tx.notify(topicName, p);
    }
    return ref;
  }
}
