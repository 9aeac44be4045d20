/**
 * The client's events on a real (memory) backend: publish outcomes with duplicates counted, a
 * failed publish, and the backend's events forwarded.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, type ClientEvents } from '../../src/index.js';

test('published reports counts and duplicates; publish-failed reports a failure; backend events are forwarded', async () => {
  const bq = await connect('memory:');
  const published: ClientEvents['published'][0][] = [];
  const failed: ClientEvents['publish-failed'][0][] = [];
  const background: ClientEvents['background-error'][0][] = [];
  bq.events.on('published', (e) => published.push(e));
  bq.events.on('publish-failed', (e) => failed.push(e));
  bq.events.on('background-error', (e) => background.push(e));
  await bq.publishBatch('t', [
    { key: 'a', id: 'm1', payload: 1 },
    { key: 'a', id: 'm2', payload: 2 },
  ]);
  await bq.publish('t', { key: 'a', id: 'm1', payload: 1 });
  assert.deepEqual(
    published.map(({ topic, messages, duplicates }) => ({ topic, messages, duplicates })),
    [
      { topic: 't', messages: 2, duplicates: 0 },
      { topic: 't', messages: 1, duplicates: 1 },
    ],
  );
  assert.ok(published.every((e) => e.durationMs >= 0));

  bq.broker.events.failed('delete expired records', new Error('disk gone'));
  assert.deepEqual(background.map((e) => [e.operation, e.error.message]), [['delete expired records', 'disk gone']]);

  await bq.broker.close();
  await assert.rejects(bq.publish('t', { key: 'a', payload: 3 }), { code: 'BOTQUEUE_CLOSED' });
  assert.equal(failed.length, 1);
  assert.equal(failed[0]?.topic, 't');
  assert.equal(failed[0]?.error.message.includes('closed'), true);
  await bq.close();
});
