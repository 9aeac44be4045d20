/**
 * Resilience of the RabbitMQ backend against a broker restart, on a PRIVATE RabbitMQ node (its
 * own node name, ports and data directory; the shared node on 5672 is never touched): while a
 * producer publishes and a worker handles, the node is restarted. Every publish is either
 * confirmed or fails with a retriable error (the producer then publishes the same id again);
 * afterwards every message was handled and no key's messages ran out of order.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, type Botqueue } from '../../src/index.js';
import { isBotqueueError } from '../../src/core/errors.js';
import { missingServices, reportMissing, STORE_URL } from '../support/services.js';
import { findRabbitmqScripts, startPrivateRabbit, type PrivateRabbit } from '../support/private-rabbitmq.js';
import { orderViolations, sleep, waitFor } from './harness.js';
import { cleanupNamespaces } from './rabbitmq-harness.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
const missing = (await missingServices()) ?? (findRabbitmqScripts() === undefined ? 'rabbitmq-server (to start a private node)' : undefined);

if (!reportMissing('rabbitmq resilience', missing, register)) {
  test('a broker restart mid-run loses no message and keeps per-key order; publishes are confirmed or fail retriably', { timeout: 180_000 }, async (t) => {
    const rabbit: PrivateRabbit = await startPrivateRabbit();
    const namespace = `bqr${process.pid}`;
    const namespaces = new Set([namespace]);
    let bq: Botqueue | undefined;
    try {
      bq = await connect(`${rabbit.url}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`);
      await bq.createTopic('chat', { partitions: 4 });
      const keys = 20;
      const total = 1_200;
      const handled = new Set<string>();
      const completions: Array<{ key: string; n: number }> = [];
      let repeats = 0;
      const errors: string[] = [];
      const worker = bq.worker<{ n: number }>('chat', (m) => {
        if (handled.has(m.id)) repeats++;
        handled.add(m.id);
        completions.push({ key: m.key!, n: m.payload.n });
      }, { group: 'g', concurrency: 8, leaseMs: 3_000 });
      worker.on('error', (error) => errors.push(error.message));
      await worker.ready;

      let retriableFailures = 0;
      let published = 0;
      const publishing = (async () => {
        for (let i = 0; i < total; i++) {
          for (;;) {
            try {
              await bq.publish('chat', { key: `k${i % keys}`, id: `m${i}`, payload: { n: Math.floor(i / keys) } });
              break;
            } catch (error) {
              // The contract under test: a publish that fails says it can be retried, and retrying the same id is safe.
              assert.ok(isBotqueueError(error) && error.retriable, `a publish failed without being retriable: ${String(error)}`);
              retriableFailures++;
              await sleep(100);
            }
          }
          published = i + 1;
          if (i % 10 === 0) await sleep(5);
        }
      })();

      await waitFor('a third published and some handled', () => published >= total / 3 && handled.size > 50, 60_000);
      const restartStarted = Date.now();
      await rabbit.restart();
      const restartMs = Date.now() - restartStarted;
      await publishing;
      await waitFor('every message handled after the restart', () => handled.size === total, 90_000);
      await worker.close();

      t.diagnostic(`restart took ${restartMs} ms; ${retriableFailures} publishes failed retriably and were retried; ${repeats} handled twice (acks lost with the connection); worker errors: ${errors.length}`);
      assert.equal(handled.size, total, 'every published message was handled');
      assert.deepEqual(orderViolations(completions), [], 'no key ran backwards');
      assert.equal(worker.orderViolations, 0);
      assert.ok(repeats <= keys, `at most one repeat per key (the message whose ack was in flight), saw ${repeats}`);
      const [stats] = await bq.stats('chat');
      assert.equal(stats?.groups[0]?.backlog, 0);
    } finally {
      await bq?.close();
      await rabbit.destroy();
      await cleanupNamespaces(namespaces).catch(() => undefined);
    }
  });
}
