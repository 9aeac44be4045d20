/**
 * The CLI against the Kafka backend: librdkafka's mock cluster started here (topics are created
 * through it by this process; the CLI children find them), the real PostgreSQL store. doctor,
 * publish, stats, topics and dlq run as child processes with BOTQUEUE_URL naming the cluster.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connect, type Botqueue } from '../../src/client.js';
import { PermanentError } from '../../src/core/errors.js';
import { KafkaNames } from '../../src/brokers/kafka/kafka-broker.js';
import { dropPostgresSchema } from '../../src/stores/postgres/index.js';
import { buildMockCluster, MockKafkaCluster } from '../support/kafka-cluster.js';
import { missingServices, reportMissing, STORE_URL } from '../support/services.js';
import { waitFor } from '../conformance/harness.js';
import { workspace } from './helpers.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
const missing = [await missingServices(), buildMockCluster()].filter((m) => m !== undefined).join(' and ') || undefined;

if (!reportMissing('botqueue CLI on Kafka', missing, register)) {
  const cluster = await MockKafkaCluster.start();
  const { registerTopicCreator } = await import('../../src/brokers/kafka/index.js');
  registerTopicCreator(cluster.bootstraps, (name, partitions) => cluster.createTopic(name, partitions));
  const namespace = `bqkcli${process.pid}`;
  const baseUrl = `kafka://${cluster.bootstraps.join(',')}?namespace=${namespace}`;
  const fullUrl = `${baseUrl}&store=${encodeURIComponent(STORE_URL)}`;
  const ws = workspace('kafka');
  const env = { BOTQUEUE_URL: baseUrl, BOTQUEUE_STORE_URL: STORE_URL };

  after(async () => {
    await dropPostgresSchema(STORE_URL, new KafkaNames(namespace).schema);
    await cluster.stop();
    ws.cleanup();
  });

  async function withLibrary<T>(fn: (bq: Botqueue) => Promise<T>): Promise<T> {
    const bq = await connect(fullUrl);
    try {
      return await fn(bq);
    } finally {
      await bq.close();
    }
  }

  async function cliJson(args: string[], input?: string): Promise<unknown> {
    const result = await ws.run(args, { env, input });
    assert.equal(result.code, 0, `botqueue ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
    return JSON.parse(result.stdout) as unknown;
  }

  describe('botqueue CLI on Kafka', () => {
    test('doctor checks kafkajs and pg, and connects', async () => {
      const result = await ws.run(['doctor', '--url', fullUrl]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.match(result.stdout, /^OK {4}driver {4}kafkajs 2\.2\.4 and pg \d+\.\d+\.\d+ load$/m);
      assert.match(result.stdout, new RegExp(`^OK {4}url {7}kafka://.*Kafka, namespace ${namespace}`, 'm'));
      assert.match(result.stdout, /^OK {4}connect/m);
    });

    test('publish, stats, topics and dlq work on a kafka: URL', async () => {
      await withLibrary(async (bq) => {
        await bq.createTopic('orders', { partitions: 2 });
        await bq.broker.ensureGroup('orders', 'billing');
      });
      const input = ['chat:1', 'chat:2', 'chat:3', 'chat:1', 'chat:4'].map((key, n) => JSON.stringify({ key, id: `o${n}`, payload: { n, poison: n === 2 } })).join('\n');
      const published = (await cliJson(['publish', 'orders', '--json'], input)) as { stored: number };
      assert.equal(published.stored, 5);

      const stats = (await cliJson(['stats', 'orders', '--json'])) as { topics: { topic: string; partitions: number; groups: { group: string; backlog: number }[] }[] };
      assert.deepEqual(stats.topics.map((t) => [t.topic, t.partitions, t.groups.map((g) => [g.group, g.backlog])]), [['orders', 2, [['billing', 5]]]]);

      const topics = await ws.run(['topics', 'list'], { env });
      assert.equal(topics.code, 0, topics.stderr);
      assert.match(topics.stdout, /orders/);

      await withLibrary(async (bq) => {
        let done = 0;
        const worker = bq.worker<{ poison: boolean }>('orders', (m) => {
          if (m.payload.poison) throw new PermanentError('poison pill');
        }, { group: 'billing' });
        worker.on('completed', () => done++);
        worker.on('dead-lettered', () => done++);
        await waitFor('all settled', () => done === 5, 20_000);
        await worker.close();
      });
      const summary = (await cliJson(['dlq', 'summary', '--json'])) as { total: number; entries: { topic: string; group: string; error: string }[] };
      assert.equal(summary.total, 1);
      assert.deepEqual(summary.entries.map((e) => [e.topic, e.group, e.error]), [['orders', 'billing', 'poison pill']]);
      const after = (await cliJson(['stats', 'orders', '--json'])) as { topics: { groups: { backlog: number; deadLetters: number }[] }[] };
      assert.deepEqual(after.topics[0]!.groups.map((g) => [g.backlog, g.deadLetters]), [[0, 1]]);
    });
  });
}
