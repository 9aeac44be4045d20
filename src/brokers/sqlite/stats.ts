import type Database from 'better-sqlite3';
import type { GroupStats, PartitionStats, TopicStats } from '../broker.js';
import { isIdle } from '../idle.js';
import { sumPartitions } from '../partition-stats.js';
import type { Catalog, TopicRow } from './catalog.js';
import type { Clock } from './options.js';

type GroupRow = [gid: number, name: string, orderViolations: number, deferrals: number, lastSeenAt: number | null];
type BacklogRow = [partition: number, count: number, oldestSeq: number];
type AssignmentRow = [partition: number, owner: string | null, leaseUntil: number, inFlight: number];

/**
 * Counts for the dashboard, the CLI and /metrics, read in one snapshot. Backlogs, retained
 * messages and dead letters come from the count tables (counts.ts keeps them); a partition's oldest message is its lowest seq (seqs follow
 * publish order), so its age costs one lookup.
 */
export class Stats {
  private readonly retained: Database.Statement<[number], number>;
  private readonly groups: Database.Statement<[number], GroupRow>;
  private readonly backlog: Database.Statement<[number], BacklogRow>;
  private readonly publishedAt: Database.Statement<[number], number>;
  private readonly assignments: Database.Statement<[number], AssignmentRow>;
  private readonly deadLetters: Database.Statement<[string, string], number>;
  private readonly parkedKeys: Database.Statement<[number], number>;
  private readonly members: Database.Statement<[number, number], number>;
  private readonly snapshot: (topics: TopicRow[], idleAfterMs: number) => TopicStats[];

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    now: Clock,
  ) {
    this.retained = db.prepare<[number], number>('SELECT coalesce((SELECT n FROM topic_counts WHERE tid = ?), 0)').pluck();
    this.groups = db.prepare<[number], GroupRow>('SELECT gid, name, order_violations, deferrals, last_seen_at FROM groups WHERE tid = ? ORDER BY name').raw();
    // The oldest seq of each partition is one index seek (MIN on the primary key's prefix).
    this.backlog = db
      .prepare<[number], BacklogRow>('SELECT c.partition, c.n, (SELECT min(seq) FROM pending p WHERE p.gid = c.gid AND p.partition = c.partition) FROM backlog_counts c WHERE c.gid = ? AND c.n > 0')
      .raw();
    this.publishedAt = db.prepare<[number], number>('SELECT published_at FROM messages WHERE seq = ?').pluck();
    this.assignments = db.prepare<[number], AssignmentRow>('SELECT partition, owner, lease_until, in_flight FROM assignments WHERE gid = ?').raw();
    this.deadLetters = db.prepare<[string, string], number>('SELECT coalesce((SELECT n FROM dead_letter_counts WHERE topic = ? AND grp = ?), 0)').pluck();
    this.parkedKeys = db
      .prepare<[number], number>('SELECT count(DISTINCT m.key) FROM pending p JOIN messages m ON m.seq = p.seq WHERE p.gid = ? AND p.parked = 1')
      .pluck();
    this.members = db.prepare<[number, number], number>('SELECT count(*) FROM members WHERE gid = ? AND expires_at > ?').pluck();
    this.snapshot = db.transaction((topics: TopicRow[], idleAfterMs: number) => topics.map((topic) => this.topicStats(topic, now(), idleAfterMs)));
  }

  stats(topicName: string | undefined, idleAfterMs: number): TopicStats[] {
    let topics: TopicRow[];
    if (topicName === undefined) topics = this.catalog.allTopics();
    else {
      const topic = this.catalog.topic(topicName);
      topics = topic === undefined ? [] : [topic];
    }
    return topics.length === 0 ? [] : this.snapshot(topics, idleAfterMs);
  }

  private topicStats(topic: TopicRow, now: number, idleAfterMs: number): TopicStats {
    const groups = this.groups.all(topic.tid).map((row) => this.groupStats(topic, row, now, idleAfterMs));
    return { topic: topic.name, partitions: topic.partitions, retained: this.retained.get(topic.tid)!, groups };
  }

  private groupStats(topic: TopicRow, [gid, name, orderViolations, deferrals, lastSeenAt]: GroupRow, now: number, idleAfterMs: number): GroupStats {
    const partitions: PartitionStats[] = [];
    for (let p = 0; p < topic.partitions; p++) partitions.push({ partition: p, backlog: 0, inFlight: 0, oldestAgeMs: 0, owner: null });
    for (const [p, count, oldestSeq] of this.backlog.all(gid)) {
      const stats = partitions[p];
      if (stats === undefined) continue;
      stats.backlog = count;
      const publishedAt = this.publishedAt.get(oldestSeq);
      stats.oldestAgeMs = publishedAt === undefined ? 0 : Math.max(0, now - publishedAt);
    }
    for (const [p, owner, leaseUntil, inFlight] of this.assignments.all(gid)) {
      const stats = partitions[p];
      if (stats === undefined || owner === null || leaseUntil <= now) continue;
      stats.owner = owner;
      stats.inFlight = inFlight;
    }
    const members = this.members.get(gid, now)!;
    return {
      group: name,
      ...sumPartitions(partitions),
      deadLetters: this.deadLetters.get(topic.name, name)!,
      parkedKeys: this.parkedKeys.get(gid)!,
      members,
      orderViolations,
      deferrals,
      lastSeenAt,
      idle: isIdle(members, lastSeenAt, now, idleAfterMs),
      partitions,
    };
  }
}
