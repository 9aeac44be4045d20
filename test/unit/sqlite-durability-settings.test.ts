/**
 * "Stored before acknowledged" on SQLite rests on two settings of every connection botqueue
 * opens: WAL and `synchronous=FULL` (NORMAL only when the URL asks for it). better-sqlite3 is
 * built with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1 (NORMAL), so without these checks a lost
 * `PRAGMA synchronous` line would leave every other test green. The values are read back from
 * SQLite, on a real file, for every way botqueue opens one (the client's URL and the broker's
 * own `open`).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { connect } from '../../src/index.js';
import { open, SqliteBroker } from '../../src/brokers/sqlite/index.js';

const dir = mkdtempSync(join(tmpdir(), 'bq-sync-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('better-sqlite3 alone opens an existing WAL file at synchronous=NORMAL: the checks below are needed', () => {
  const path = join(dir, 'plain.db');
  const first = new Database(path);
  first.pragma('journal_mode = WAL');
  first.close();
  const reopened = new Database(path);
  assert.equal(reopened.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(reopened.pragma('synchronous', { simple: true }), 1, 'NORMAL (1) is the library default for WAL files');
  reopened.close();
});

test('connect() with the default settings runs WAL with synchronous=FULL, on a new file and on one opened again', async () => {
  for (const round of ['new', 'reopened']) {
    const bq = await connect(`sqlite:${join(dir, 'default.db')}`);
    try {
      assert.ok(bq.broker instanceof SqliteBroker);
      assert.deepEqual(bq.broker.settingsInForce(), { journalMode: 'wal', synchronous: 'FULL' }, round);
    } finally {
      await bq.close();
    }
  }
});

test('synchronous=NORMAL only when the URL asks for it', async () => {
  const bq = await connect(`sqlite:${join(dir, 'normal.db')}?synchronous=NORMAL`);
  try {
    assert.ok(bq.broker instanceof SqliteBroker);
    assert.deepEqual(bq.broker.settingsInForce(), { journalMode: 'wal', synchronous: 'NORMAL' });
  } finally {
    await bq.close();
  }
  // The same file opened again without asking is FULL again: the setting is per connection.
  const again = await open(`sqlite:${join(dir, 'normal.db')}`);
  try {
    assert.ok(again instanceof SqliteBroker);
    assert.deepEqual(again.settingsInForce(), { journalMode: 'wal', synchronous: 'FULL' });
  } finally {
    await again.close();
  }
});
