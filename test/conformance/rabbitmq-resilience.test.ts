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

  test('a broker SIGKILLed with many confirms outstanding loses no acknowledged publish and keeps per-key order', { timeout: 180_000 }, async (t) => {
    const rabbit: PrivateRabbit = await startPrivateRabbit();
    const namespace = `bqk${process.pid}`;
    const namespaces = new Set([namespace]);
    let bq: Botqueue | undefined;
    try {
      bq = await connect(`${rabbit.url}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`);
      await bq.createTopic('chat', { partitions: 4 });
      const chains = 64;
      const perChain = 40;
      const handled = new Set<string>();
      const completions: Array<{ key: string; n: number }> = [];
      const worker = bq.worker<{ n: number }>('chat', (m) => {
        handled.add(m.id);
        completions.push({ key: m.key!, n: m.payload.n });
      }, { group: 'g', concurrency: 16, leaseMs: 3_000 });
      worker.on('error', () => undefined);
      await worker.ready;

      // 64 chains, one key each, publish without pausing: up to 64 publishes await their confirm at any time.
      const acknowledged = new Set<string>();
      let inFlight = 0;
      let inFlightAtKill = -1;
      let retriableFailures = 0;
      const publishing = Promise.all(Array.from({ length: chains }, async (_, c) => {
        for (let n = 0; n < perChain; n++) {
          const id = `c${c}-${n}`;
          for (;;) {
            inFlight++;
            try {
              await bq!.publish('chat', { key: `k${c}`, id, payload: { n } });
              acknowledged.add(id);
              break;
            } catch (error) {
              assert.ok(isBotqueueError(error) && error.retriable, `a publish failed without being retriable: ${String(error)}`);
              retriableFailures++;
              await sleep(100);
            } finally {
              inFlight--;
            }
          }
        }
      }));

      await waitFor('a quarter acknowledged with many in flight', () => acknowledged.size >= (chains * perChain) / 4 && inFlight >= 32, 60_000, 1);
      inFlightAtKill = inFlight;
      const acknowledgedAtKill = new Set(acknowledged);
      await rabbit.kill();
      await rabbit.start();
      await publishing;
      await waitFor('every message handled after the crash', () => handled.size === chains * perChain, 90_000);
      await worker.close();

      t.diagnostic(`killed with ${inFlightAtKill} publishes awaiting their confirm and ${acknowledgedAtKill.size} acknowledged; ${retriableFailures} publishes failed retriably and were retried`);
      assert.ok(inFlightAtKill >= 32, `many confirms outstanding at the kill (${inFlightAtKill})`);
      assert.deepEqual([...acknowledgedAtKill].filter((id) => !handled.has(id)), [], 'every publish acknowledged before the kill was handled');
      assert.equal(handled.size, chains * perChain);
      assert.deepEqual(orderViolations(completions), [], 'no key ran backwards');
      assert.equal(worker.orderViolations, 0);
    } finally {
      await bq?.close();
      await rabbit.destroy();
      await cleanupNamespaces(namespaces).catch(() => undefined);
    }
  });
}
