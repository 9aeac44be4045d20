/**
 * The SQLite backend's group commit: operations of one turn share a transaction, and one that
 * fails rejects alone (savepoints), whether it is alone in its batch or not.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openSqlite } from '../../src/brokers/sqlite/index.js';
import type { PreparedMessage } from '../../src/core/envelope.js';

const dir = mkdtempSync(join(tmpdir(), 'botqueue-writer-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const message = (id: string): PreparedMessage => ({ id, key: 'k', partition: 0, payload: '1', headers: {}, notBefore: 0, dedup: true });

test('a failing operation in a batch rejects alone; the others are committed', async () => {
  const broker = openSqlite(join(dir, 'batch.db'));
  try {
    await broker.ensureTopic('t', { partitions: 1, dedupWindowMs: 60_000 });
    const results = await Promise.allSettled([
      broker.publish('t', [message('a')]),
      broker.publish('missing-topic', [message('b')]),
      broker.publish('t', [message('c')]),
    ]);
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((results[1] as PromiseRejectedResult).reason), /missing-topic/);
    const [stats] = await broker.stats('t');
    assert.equal(stats?.retained, 2);
  } finally {
    await broker.close();
  }
});

test('a failing operation alone in its batch rejects, writes nothing, and the next one works', async () => {
  const broker = openSqlite(join(dir, 'lone.db'));
  try {
    await broker.ensureTopic('t', { partitions: 1, dedupWindowMs: 60_000 });
    await assert.rejects(broker.publish('missing-topic', [message('x')]), /missing-topic/);
    const [receipt] = await broker.publish('t', [message('x')]);
    assert.equal(receipt?.duplicate, false, 'the failed publish left no dedup record');
    const [stats] = await broker.stats('t');
    assert.equal(stats?.retained, 1);
  } finally {
    await broker.close();
  }
});
