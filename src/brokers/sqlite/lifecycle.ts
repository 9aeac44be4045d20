import type Database from 'better-sqlite3';
import type { Catalog } from './catalog.js';
import type { Counts } from './counts.js';

/**
 * Deleting groups and topics, with their rows in the count tables (and, in the counts
 * journal, what earlier operations of the transaction recorded for them). Ids of deleted rows may still sit in another process's catalog
 * cache, so every deletion bumps `meta.catalog_version`: each write transaction reads it first
 * and drops its cache when it changed (see WriteTx.begin), so no write lands on a deleted id.
 */
export class Lifecycle {
  private readonly groupIds: Database.Statement<[number], number>;
  private readonly statements: Record<string, Database.Statement>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly counts: Counts,
  ) {
    this.groupIds = db.prepare<[number], number>('SELECT gid FROM groups WHERE tid = ?').pluck();
    const s = (sql: string): Database.Statement => db.prepare(sql);
    this.statements = {
      unref: s('UPDATE messages SET refs = refs - 1 WHERE seq IN (SELECT seq FROM pending WHERE gid = ?)'),
      dropUnreferenced: s('DELETE FROM messages WHERE refs <= 0 AND seq IN (SELECT seq FROM pending WHERE gid = ?)'),
      pending: s('DELETE FROM pending WHERE gid = ?'),
      backlogCounts: s('DELETE FROM backlog_counts WHERE gid = ?'),
      assignments: s('DELETE FROM assignments WHERE gid = ?'),
      members: s('DELETE FROM members WHERE gid = ?'),
      group: s('DELETE FROM groups WHERE gid = ?'),
      deadLetters: s('DELETE FROM dead_letters WHERE topic = ? AND grp = ?'),
      deadLetterCounts: s('DELETE FROM dead_letter_counts WHERE topic = ? AND grp = ?'),
      groupEffects: s('DELETE FROM effects WHERE tid = ? AND grp = ?'),
      topicMessages: s('DELETE FROM messages WHERE tid = ?'),
      topicCounts: s('DELETE FROM topic_counts WHERE tid = ?'),
      topicDedup: s('DELETE FROM dedup WHERE tid = ?'),
      topicEffects: s('DELETE FROM effects WHERE tid = ?'),
      topicDeadLetters: s('DELETE FROM dead_letters WHERE topic = ?'),
      topicDeadLetterCounts: s('DELETE FROM dead_letter_counts WHERE topic = ?'),
      topic: s('DELETE FROM topics WHERE tid = ?'),
      bump: s("INSERT INTO meta (name, value) VALUES ('catalog_version', 1) ON CONFLICT (name) DO UPDATE SET value = value + 1"),
    };
  }

  /** Inside a write transaction. */
  deleteGroup(topicName: string, group: string): boolean {
    this.catalog.forget();
    const ref = this.catalog.group(topicName, group);
    if (ref === undefined) return false;
    this.dropGroup(ref.topic.tid, topicName, ref.gid, group);
    this.statements.bump!.run();
    this.catalog.forget();
    return true;
  }

  /** Inside a write transaction. */
  deleteTopic(topicName: string): boolean {
    this.catalog.forget();
    const topic = this.catalog.topic(topicName);
    if (topic === undefined) return false;
    const st = this.statements;
    const groupNames = new Map<number, string>();
    for (const gid of this.groupIds.all(topic.tid)) groupNames.set(gid, '');
    for (const gid of groupNames.keys()) {
      for (const step of ['pending', 'backlogCounts', 'assignments', 'members', 'group']) st[step]!.run(gid);
      this.counts.forgetGroup(gid);
    }
    for (const step of ['topicMessages', 'topicCounts', 'topicDedup', 'topicEffects']) st[step]!.run(topic.tid);
    this.counts.forgetTopic(topic.tid);
    st.topicDeadLetters!.run(topicName);
    st.topicDeadLetterCounts!.run(topicName);
    this.counts.forgetDeadLetters(topicName, null);
    st.topic!.run(topic.tid);
    st.bump!.run();
    this.catalog.forget();
    return true;
  }

  private dropGroup(tid: number, topicName: string, gid: number, group: string): void {
    const st = this.statements;
    st.unref!.run(gid);
    this.counts.retained(tid, -st.dropUnreferenced!.run(gid).changes);
    for (const step of ['pending', 'backlogCounts', 'assignments', 'members', 'group']) st[step]!.run(gid);
    this.counts.forgetGroup(gid);
    st.deadLetters!.run(topicName, group);
    st.deadLetterCounts!.run(topicName, group);
    this.counts.forgetDeadLetters(topicName, group);
    st.groupEffects!.run(tid, group);
  }
}
