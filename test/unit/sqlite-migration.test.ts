/**
 * Older SQLite files are upgraded in place to schema version 4 when botqueue opens them, and
 * keep their messages: version 1 (before groups counted RetryLater deferrals, no count tables)
 * gets its counts of backlog, messages and dead letters rebuilt; version 3 (counts kept by
 * per-row triggers) loses the triggers, since the code keeps the counts now, and its counts
 * are rebuilt from the rows.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { connect } from '../../src/index.js';

const TRIGGERS = ['pending_counted', 'pending_uncounted', 'message_counted', 'message_uncounted', 'dead_letter_counted', 'dead_letter_uncounted'];

/** What schema version 3 created, verbatim. */
const VERSION_3_TRIGGERS = `
CREATE TRIGGER pending_counted AFTER INSERT ON pending BEGIN
  INSERT INTO backlog_counts (gid, partition, n) VALUES (NEW.gid, NEW.partition, 1) ON CONFLICT (gid, partition) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER pending_uncounted AFTER DELETE ON pending BEGIN
  UPDATE backlog_counts SET n = n - 1 WHERE gid = OLD.gid AND partition = OLD.partition;
END;
CREATE TRIGGER message_counted AFTER INSERT ON messages BEGIN
  INSERT INTO topic_counts (tid, n) VALUES (NEW.tid, 1) ON CONFLICT (tid) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER message_uncounted AFTER DELETE ON messages BEGIN
  UPDATE topic_counts SET n = n - 1 WHERE tid = OLD.tid;
END;
CREATE TRIGGER dead_letter_counted AFTER INSERT ON dead_letters BEGIN
  INSERT INTO dead_letter_counts (topic, grp, n) VALUES (NEW.topic, NEW.grp, 1) ON CONFLICT (topic, grp) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER dead_letter_uncounted AFTER DELETE ON dead_letters BEGIN
  UPDATE dead_letter_counts SET n = n - 1 WHERE topic = OLD.topic AND grp = OLD.grp;
END;
`;

async function withFile(run: (path: string) => Promise<void>): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bq-migrate-'));
  try {
    await run(join(dir, 'old.db'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function seed(path: string): Promise<void> {
  const bq = await connect(`sqlite:${path}`);
  await bq.createTopic('t', { partitions: 2 });
  await bq.broker.ensureGroup('t', 'g');
  await bq.publish('t', { key: 'k', id: 'kept', payload: 1 });
  await bq.close();
}

function readBack(path: string): { version: number; triggers: string[] } {
  const check = new Database(path, { readonly: true });
  try {
    const version = check.pragma('user_version', { simple: true }) as number;
    const triggers = check.prepare<[], string>("SELECT name FROM sqlite_master WHERE type = 'trigger'").pluck().all();
    return { version, triggers };
  } finally {
    check.close();
  }
}

test('a version-1 file is upgraded to version 4 and keeps its messages', async () => {
  await withFile(async (path) => {
    await seed(path);
    // Back to what version 1 wrote: no deferrals column, no count tables.
    const db = new Database(path);
    db.exec('ALTER TABLE groups DROP COLUMN deferrals');
    db.exec('ALTER TABLE groups DROP COLUMN last_seen_at');
    for (const table of ['backlog_counts', 'topic_counts', 'dead_letter_counts']) db.exec(`DROP TABLE ${table}`);
    db.pragma('user_version = 1');
    db.close();

    const again = await connect(`sqlite:${path}`);
    const [stats] = await again.stats('t');
    assert.equal(stats?.groups[0]?.backlog, 1, 'the message is still there (counted at the upgrade)');
    assert.equal(stats?.retained, 1);
    await again.publish('t', { key: 'k', id: 'after', payload: 2 });
    assert.equal((await again.stats('t'))[0]?.groups[0]?.backlog, 2, 'the code counts from then on');
    assert.equal(stats?.groups[0]?.deferrals, 0);
    assert.equal(stats?.groups[0]?.lastSeenAt, null, 'version 4 added last_seen_at, empty until a member is seen');
    await again.close();
    assert.deepEqual(readBack(path), { version: 4, triggers: [] });
  });
});

test('a version-3 file loses its count triggers, its counts are rebuilt, and nothing is counted twice', async () => {
  await withFile(async (path) => {
    await seed(path);
    // Back to what version 3 wrote: the triggers, and (as a proof that the upgrade recounts) a wrong count.
    const db = new Database(path);
    db.exec('ALTER TABLE groups DROP COLUMN last_seen_at');
    db.exec(VERSION_3_TRIGGERS);
    db.exec('UPDATE backlog_counts SET n = 7; UPDATE topic_counts SET n = 9');
    db.pragma('user_version = 3');
    db.close();
    assert.deepEqual(readBack(path).triggers.sort(), [...TRIGGERS].sort());

    const again = await connect(`sqlite:${path}`);
    const [stats] = await again.stats('t');
    assert.equal(stats?.groups[0]?.backlog, 1, 'recounted from the pending rows');
    assert.equal(stats?.retained, 1, 'recounted from the messages');
    await again.publish('t', { key: 'k', id: 'after', payload: 2 });
    const [after] = await again.stats('t');
    assert.equal(after?.groups[0]?.backlog, 2, 'one more, not two (a trigger left behind would count it again)');
    assert.equal(after?.retained, 2);
    await again.close();
    assert.deepEqual(readBack(path), { version: 4, triggers: [] });
  });
});
