/**
 * Faults injected into the mock Kafka cluster while a publisher and a worker run: a broker
 * down and up again, leaders moved, request errors on Produce and on OffsetCommit. Each test
 * publishes a keyed stream, injects its fault halfway, and checks that every message is
 * handled, per-key order holds, and the group's backlog drains to 0.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connect, type Botqueue } from '../../src/index.js';
import { KafkaNames } from '../../src/brokers/kafka/kafka-broker.js';
import { missingServices, reportMissing } from '../support/services.js';
import { ApiKey, KafkaError, buildMockCluster } from '../support/kafka-cluster.js';
import { orderViolations, sleep, waitFor } from './harness.js';
import { kafkaFactory } from './kafka-harness.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
const missing = [await missingServices(), buildMockCluster()].filter((m) => m !== undefined).join(' and ') || undefined;

if (!reportMissing('kafka resilience', missing, register)) {
  const factory = await kafkaFactory('bqkr');
  const clients: Botqueue[] = [];
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await factory.cleanup();
  });

  const KEYS = 6;
  const PER_KEY = 40;
  const PARTITIONS = 3;

  /** Publishes KEYS × PER_KEY messages one batch (one per key) at a time, runs `fault` halfway, and checks the outcome. */
  async function streamThrough(name: string, fault: (kafkaTopic: string) => Promise<void>, heal: () => Promise<void> = () => Promise.resolve()): Promise<string[]> {
    const url = factory.url();
    const bq = await connect(url);
    clients.push(bq);
    const failures: string[] = [];
    bq.broker.events.on('background-error', (event) => void failures.push(event.operation));
    await bq.createTopic(name, { partitions: PARTITIONS });
    const kafkaTopic = new KafkaNames(/[?&]namespace=([^&]+)/.exec(url)![1]!).topic(name);
    const handled: Array<{ key: string; n: number }> = [];
    const worker = bq.worker<number>(name, (m) => void handled.push({ key: m.key!, n: m.payload }), { group: 'g', leaseMs: 2_000, backoffBaseMs: 10, backoffCapMs: 100 });
    await worker.ready;
    try {
      for (let n = 0; n < PER_KEY; n++) {
        if (n === PER_KEY / 2) await fault(kafkaTopic);
        if (n === (PER_KEY * 3) / 4) await heal();
        await bq.publishBatch(name, Array.from({ length: KEYS }, (_, k) => ({ key: `k${k}`, id: `${name}-${k}-${n}`, payload: n })));
      }
      await waitFor('every message handled', () => new Set(handled.map((h) => `${h.key}/${h.n}`)).size === KEYS * PER_KEY, 30_000);
      await waitFor('the backlog drained', async () => (await bq.stats(name))[0]?.groups[0]?.backlog === 0, 15_000);
    } finally {
      await heal();
      await worker.close();
    }
    assert.deepEqual(orderViolations(handled), [], 'per-key order kept');
    const duplicates = handled.length - KEYS * PER_KEY;
    assert.ok(duplicates >= 0);
    // At least once: a redelivery is allowed, but none of these faults should cause many.
    assert.ok(duplicates <= KEYS, `${duplicates} messages handled twice`);
    return failures;
  }

  describe('kafka resilience (mock cluster faults)', { concurrency: 1 }, () => {
    test('a broker down and up again: publishes wait for it, nothing is lost, order holds', async () => {
      let down = false;
      await streamThrough(
        'down',
        async () => {
          await factory.cluster.brokerDown(2);
          down = true;
          // Publishes to the partitions it leads wait; the ones to the others go on.
          setTimeout(() => void (down && factory.cluster.brokerUp(2).then(() => (down = false))), 1_500).unref();
        },
        async () => {
          if (down) {
            down = false;
            await factory.cluster.brokerUp(2);
          }
        },
      );
    });

    test('a leader change mid-stream: producer and readers follow the new leader', async () => {
      await streamThrough('leader', async (kafkaTopic) => {
        for (let p = 0; p < PARTITIONS; p++) await factory.cluster.setLeader(kafkaTopic, p, ((p + 1) % 3) + 1);
      });
    });

    test('request errors on Produce are retried by the idempotent producer without duplicates', async () => {
      await streamThrough('produce-errors', async () => {
        await factory.cluster.pushErrors(ApiKey.Produce, 3, KafkaError.NOT_ENOUGH_REPLICAS);
      });
    });

    test('request errors on OffsetCommit are retried: nothing is lost or run again', async () => {
      const failures = await streamThrough('commit-errors', async () => {
        await factory.cluster.pushErrors(ApiKey.OffsetCommit, 3, KafkaError.COORDINATOR_LOAD_IN_PROGRESS);
        await sleep(10);
      });
      assert.ok(failures.filter((f) => f.startsWith('commit ')).length >= 3, `the injected commit errors were met and reported: ${failures.join('; ')}`);
    });
  });
}
