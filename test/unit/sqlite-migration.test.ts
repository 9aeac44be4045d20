/**
 * A SQLite file of schema version 1 (before groups counted RetryLater deferrals) is upgraded in
 * place (counts of backlog, messages and dead letters rebuilt) when botqueue opens it, and keeps its messages.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { connect } from '../../src/index.js';

test('a version-1 file is upgraded to version 3 and keeps its messages', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bq-migrate-'));
  const path = join(dir, 'v1.db');
  try {
    const bq = await connect(`sqlite:${path}`);
    await bq.createTopic('t', { partitions: 2 });
    await bq.broker.ensureGroup('t', 'g');
    await bq.publish('t', { key: 'k', id: 'kept', payload: 1 });
    await bq.close();
    // Back to what version 1 wrote: no deferrals column, no counts kept by triggers.
    const db = new Database(path);
    db.exec('ALTER TABLE groups DROP COLUMN deferrals');
    db.exec('ALTER TABLE groups DROP COLUMN last_seen_at');
    for (const trigger of ['pending_counted', 'pending_uncounted', 'message_counted', 'message_uncounted', 'dead_letter_counted', 'dead_letter_uncounted']) db.exec(`DROP TRIGGER ${trigger}`);
    for (const table of ['backlog_counts', 'topic_counts', 'dead_letter_counts']) db.exec(`DROP TABLE ${table}`);
    db.pragma('user_version = 1');
    db.close();

    const again = await connect(`sqlite:${path}`);
    const [stats] = await again.stats('t');
    assert.equal(stats?.groups[0]?.backlog, 1, 'the message is still there (counted at the upgrade)');
    assert.equal(stats?.retained, 1);
    await again.publish('t', { key: 'k', id: 'after', payload: 2 });
    assert.equal((await again.stats('t'))[0]?.groups[0]?.backlog, 2, 'the triggers count from then on');
    assert.equal(stats?.groups[0]?.deferrals, 0);
    assert.equal(stats?.groups[0]?.lastSeenAt, null, 'version 4 added last_seen_at, empty until a member is seen');
    await again.close();
    const check = new Database(path, { readonly: true });
    assert.equal(check.pragma('user_version', { simple: true }), 4);
    check.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
