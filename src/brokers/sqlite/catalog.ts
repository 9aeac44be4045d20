import type Database from 'better-sqlite3';
import type { TopicInfo } from '../broker.js';

export interface TopicRow extends TopicInfo {
  tid: number;
}

export interface GroupRef {
  gid: number;
  topic: TopicRow;
}

type TopicTuple = [tid: number, name: string, partitions: number, dedupWindowMs: number, createdAt: number];

/**
 * Name -> id lookups for topics and groups. Rows of `topics` and `groups` are never updated
 * in the columns cached here nor deleted, so once a row is seen committed it may be cached
 * for the life of the connection, even with other processes writing the same file. Missing
 * names are never cached: another process may create them at any time.
 */
export class Catalog {
  private readonly topics = new Map<string, TopicRow>();
  /** `${topic}\n${group}` (names cannot hold a newline) -> group. */
  private readonly groups = new Map<string, GroupRef>();

  private readonly selectTopic: Database.Statement<[string], TopicTuple>;
  private readonly selectTopics: Database.Statement<[], TopicTuple>;
  private readonly selectGroup: Database.Statement<[number, string], number>;

  constructor(db: Database.Database) {
    this.selectTopic = db.prepare<[string], TopicTuple>('SELECT tid, name, partitions, dedup_window_ms, created_at FROM topics WHERE name = ?').raw();
    this.selectTopics = db.prepare<[], TopicTuple>('SELECT tid, name, partitions, dedup_window_ms, created_at FROM topics ORDER BY name').raw();
    this.selectGroup = db.prepare<[number, string], number>('SELECT gid FROM groups WHERE tid = ? AND name = ?').pluck();
  }

  topic(name: string): TopicRow | undefined {
    const cached = this.topics.get(name);
    if (cached !== undefined) return cached;
    const row = this.selectTopic.get(name);
    if (row === undefined) return undefined;
    const topic = toTopic(row);
    this.topics.set(name, topic);
    return topic;
  }

  allTopics(): TopicRow[] {
    return this.selectTopics.all().map((row) => {
      const topic = this.topics.get(row[1]) ?? toTopic(row);
      this.topics.set(topic.name, topic);
      return topic;
    });
  }

  group(topicName: string, group: string): GroupRef | undefined {
    const cacheKey = `${topicName}\n${group}`;
    const cached = this.groups.get(cacheKey);
    if (cached !== undefined) return cached;
    const topic = this.topic(topicName);
    if (topic === undefined) return undefined;
    const gid = this.selectGroup.get(topic.tid, group);
    if (gid === undefined) return undefined;
    const ref = { gid, topic };
    this.groups.set(cacheKey, ref);
    return ref;
  }

  /**
   * Drops everything cached: called when a transaction (or one of its operations) is rolled
   * back, since a lookup inside it may have seen a row that was never committed.
   */
  forget(): void {
    this.topics.clear();
    this.groups.clear();
  }
}

function toTopic(row: TopicTuple): TopicRow {
  return { tid: row[0], name: row[1], partitions: row[2], dedupWindowMs: row[3], createdAt: row[4] };
}

/** Public view of a topic row. */
export function topicInfo(topic: TopicRow): TopicInfo {
  return { name: topic.name, partitions: topic.partitions, dedupWindowMs: topic.dedupWindowMs, createdAt: topic.createdAt };
}
