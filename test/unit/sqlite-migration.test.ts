/**
 * A SQLite file of schema version 1 (before groups counted RetryLater deferrals) is upgraded in
 * place when botqueue opens it, and keeps its messages.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { connect } from '../../src/index.js';

test('a version-1 file is upgraded to version 2 and keeps its messages', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bq-migrate-'));
  const path = join(dir, 'v1.db');
  try {
    const bq = await connect(`sqlite:${path}`);
    await bq.createTopic('t', { partitions: 2 });
    await bq.broker.ensureGroup('t', 'g');
    await bq.publish('t', { key: 'k', id: 'kept', payload: 1 });
    await bq.close();
    // Back to what version 1 wrote: no deferrals column.
    const db = new Database(path);
    db.exec('ALTER TABLE groups DROP COLUMN deferrals');
    db.pragma('user_version = 1');
    db.close();

    const again = await connect(`sqlite:${path}`);
    const [stats] = await again.stats('t');
    assert.equal(stats?.groups[0]?.backlog, 1, 'the message is still there');
    assert.equal(stats?.groups[0]?.deferrals, 0);
    await again.close();
    const check = new Database(path, { readonly: true });
    assert.equal(check.pragma('user_version', { simple: true }), 2);
    check.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
