import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from '../../src/client.js';
import { MAX_PARTITIONS } from '../../src/core/limits.js';

test('the client is the boundary: topic settings outside core/limits.ts never reach a backend', async () => {
  const bq = await connect('memory:');
  try {
    for (const options of [{ partitions: MAX_PARTITIONS + 1 }, { partitions: 0 }, { partitions: 1.5 }, { dedupWindowMs: -1 }]) {
      await assert.rejects(bq.createTopic('t', options), { code: 'BOTQUEUE_INVALID_OPTION' }, JSON.stringify(options));
    }
    assert.deepEqual(await bq.stats(), [], 'nothing was created');
    assert.equal((await bq.createTopic('t', { partitions: MAX_PARTITIONS })).partitions, MAX_PARTITIONS);
    await assert.rejects(connect('memory:', { defaultPartitions: MAX_PARTITIONS + 1 }), { code: 'BOTQUEUE_INVALID_OPTION' });
  } finally {
    await bq.close();
  }
});
