/**
 * What the Kafka backend promises beyond the shared conformance suite, against librdkafka's
 * mock cluster: botqueue and a plain Kafka producer agree on a key's partition (murmur2), a
 * member that lost its partition to another process cannot commit for it (no zombie ack), the
 * group's committed offset never passes a message still running, a message's failed attempts
 * reach the partition's next owner (the store is read only below the committed horizon), and
 * fetch and settle wait for a reader that is slow to read.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connect, type Botqueue } from '../../src/index.js';
import { partitionForKey } from '../../src/core/partitioner.js';
import { KafkaNames } from '../../src/brokers/kafka/kafka-broker.js';
import { Worker } from '../../src/worker/worker.js';
import type { PreparedMessage } from '../../src/core/envelope.js';
import { missingServices, reportMissing } from '../support/services.js';
import { ApiKey, KafkaError, buildMockCluster } from '../support/kafka-cluster.js';
import { deferred, sleep, waitFor } from './harness.js';
import { kafkaFactory } from './kafka-harness.js';
import { pausable } from './pausable-broker.js';
import { GroupCommitter, type CommitSnapshot } from '../../src/brokers/kafka/committer.js';
import { loadKafkajs } from '../../src/brokers/kafka/kafkajs-parts.js';

const FAST = { leaseMs: 600, backoffBaseMs: 5, backoffCapMs: 40, shutdownTimeoutMs: 5_000 } as const;
const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
const missing = [await missingServices(), buildMockCluster()].filter((m) => m !== undefined).join(' and ') || undefined;

if (!reportMissing('kafka backend', missing, register)) {
  const factory = await kafkaFactory('bqkb');
  const { Kafka, logLevel } = (await import('kafkajs')).default;
  const kafka = new Kafka({ brokers: factory.cluster.bootstraps, logLevel: logLevel.NOTHING });
  const clients: Botqueue[] = [];
  const open = async (shared?: string): Promise<Botqueue> => {
    const bq = await connect(factory.url(shared));
    clients.push(bq);
    return bq;
  };
  const namespaceOf = (url: string): string => /[?&]namespace=([^&]+)/.exec(url)![1]!;
  /** A client on a namespace of its own with `topic` created, and the topic's name in Kafka. */
  const openTopic = async (topic: string, partitions: number): Promise<{ bq: Botqueue; kafkaTopic: string }> => {
    const url = factory.url();
    const bq = await connect(url);
    clients.push(bq);
    await bq.createTopic(topic, { partitions });
    return { bq, kafkaTopic: new KafkaNames(namespaceOf(url)).topic(topic) };
  };
  after(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await factory.cleanup();
  });

  const message = (id: string): PreparedMessage => ({ id, key: 'k', partition: 0, payload: '1', headers: {}, notBefore: 0, dedup: true });

  describe('kafka backend', () => {
    test('a message from a plain kafkajs producer (default partitioner) is handled on the partition botqueue computes for its key', async () => {
      const partitions = 7;
      const { bq, kafkaTopic } = await openTopic('plain', partitions);
      const producer = kafka.producer({ allowAutoTopicCreation: false });
      await producer.connect();
      const keys = Array.from({ length: 40 }, (_, i) => `chat:${i * 7919}`);
      const placed = new Map<string, number>();
      try {
        for (const key of keys) {
          const [result] = await producer.send({ topic: kafkaTopic, acks: -1, messages: [{ key, value: JSON.stringify({ key }) }] });
          placed.set(key, result!.partition);
        }
      } finally {
        await producer.disconnect();
      }
      const seen = new Map<string, number>();
      const worker = bq.worker<{ key: string }>('plain', (m) => void seen.set(m.key!, m.partition), { group: 'g', ...FAST });
      await waitFor('every plain message handled', () => seen.size === keys.length, 20_000);
      await worker.close();
      for (const key of keys) {
        assert.equal(placed.get(key), partitionForKey(key, partitions), `kafkajs and botqueue agree on ${key}`);
        assert.equal(seen.get(key), placed.get(key), `${key} handled on the partition kafkajs wrote it to`);
      }
      assert.ok(new Set(placed.values()).size > 3, 'the keys spread over the partitions');
    });

    test('a plain producer\'s text that is not JSON reaches the handler as a string, and its dead letter holds it as JSON', async () => {
      const { bq, kafkaTopic } = await openTopic('text', 1);
      const producer = kafka.producer({ allowAutoTopicCreation: false });
      await producer.connect();
      try {
        await producer.send({ topic: kafkaTopic, acks: -1, messages: [{ key: 'a', value: 'hello, not JSON' }, { key: 'a', value: '{"n":1}' }, { key: 'b', value: 'poison text' }] });
      } finally {
        await producer.disconnect();
      }
      const seen: unknown[] = [];
      const worker = bq.worker('text', (m) => {
        if (m.key === 'b') throw new Error('always fails');
        seen.push(m.payload);
      }, { group: 'g', ...FAST, maxAttempts: 1 });
      await waitFor('both of a handled and b dead-lettered', async () => seen.length === 2 && (await bq.deadLetters.list({ topic: 'text' })).length === 1, 20_000);
      await worker.close();
      assert.deepEqual(seen, ['hello, not JSON', { n: 1 }]);
      const [letter] = await bq.deadLetters.list({ topic: 'text' });
      assert.equal(letter!.payload, JSON.stringify('poison text'), 'the dead letter\'s payload is JSON text');
    });

    test('a member whose partition another process took cannot ack: its settlement is fenced and nothing of it is committed', async () => {
      const zombieClient = await open('zombie');
      const healthyClient = await open('zombie');
      await zombieClient.createTopic('z', { partitions: 1 });
      await zombieClient.publish('z', { key: 'a', id: 'z1', payload: 1 });
      const frozen = pausable(zombieClient.broker);
      const started = deferred();
      const release = deferred();
      const handledBy: string[] = [];
      const zombie = new Worker(frozen.broker, 'z', async () => {
        handledBy.push('zombie');
        started.resolve();
        await release.promise;
      }, { group: 'g', ...FAST, leaseMs: 300 });
      await started.promise;
      frozen.pause(); // no heartbeat, no settle: like a process stopped by the OS
      const healthy = healthyClient.worker('z', () => void handledBy.push('healthy'), { group: 'g', ...FAST, leaseMs: 300 });
      await waitFor('the other process handles the message', () => handledBy.includes('healthy'), 10_000);
      await waitFor('the other process committed it', async () => (await healthyClient.stats('z'))[0]?.groups[0]?.backlog === 0, 10_000);
      release.resolve();
      frozen.resume();
      await waitFor('the zombie tried to settle', () => frozen.settleOutcomes.length > 0, 10_000);
      assert.deepEqual(frozen.settleOutcomes, ['fenced'], 'the zombie\'s ack is refused before anything is committed');
      // The healthy member goes on from the group's offset: a message after the takeover is handled once, by it.
      await healthyClient.publish('z', { key: 'a', id: 'z2', payload: 2 });
      await waitFor('z2 handled', () => handledBy.length === 3, 10_000);
      await Promise.all([healthy.close(), zombie.close()]);
      assert.deepEqual(handledBy, ['zombie', 'healthy', 'healthy']);
      assert.equal((await healthyClient.stats('z'))[0]?.groups[0]?.backlog, 0);
    });

    test('the committed offset stops at the lowest unfinished message while later keys of the partition go on', async () => {
      const url = factory.url();
      const bq = await connect(url);
      clients.push(bq);
      await bq.createTopic('low', { partitions: 1 });
      await bq.publishBatch('low', [
        { key: 'slow', id: 'l0', payload: 0 },
        { key: 'b', id: 'l1', payload: 1 },
        { key: 'c', id: 'l2', payload: 2 },
        { key: 'b', id: 'l3', payload: 3 },
      ]);
      const release = deferred();
      const done: number[] = [];
      const worker = bq.worker<number>('low', async (m) => {
        if (m.key === 'slow') await release.promise;
        done.push(m.payload);
      }, { group: 'g', ...FAST });
      await waitFor('the three fast messages handled while the slow one runs', () => done.length === 3, 10_000);
      const names = new KafkaNames(namespaceOf(url));
      const admin = kafka.admin();
      await admin.connect();
      try {
        const committed = async (): Promise<string | undefined> =>
          (await admin.fetchOffsets({ groupId: names.group('low', 'g'), topics: [names.topic('low')] }))[0]?.partitions[0]?.offset;
        await waitFor('the settled messages are committed as metadata', async () => (await bq.stats('low'))[0]?.groups[0]?.backlog === 1, 10_000);
        assert.ok(['-1', '0'].includes((await committed())!), 'the offset stays before the running message');
        release.resolve();
        await waitFor('the offset moves past everything', async () => (await committed()) === '4', 10_000);
      } finally {
        await admin.disconnect();
      }
      await worker.close();
      assert.deepEqual(done.sort(), [0, 1, 2, 3]);
    });

    test('failed attempts recorded by one owner reach the next owner: the store is read below the committed horizon', async () => {
      const firstClient = await open('horizon');
      const nextClient = await open('horizon');
      const [first, next] = [firstClient.broker, nextClient.broker];
      await first.ensureTopic('h', { partitions: 1, dedupWindowMs: 60_000 });
      await first.ensureGroup('h', 'g');
      const receipts = await first.publish('h', [message('h0'), message('h1'), message('h2')]);
      const leaseMs = 300;
      const a = await first.coordinate({ topic: 'h', group: 'g', member: 'A', leaseMs, acquire: [0], release: [] });
      const leaseA = { topic: 'h', group: 'g', partition: 0, member: 'A', fence: a.owned.get(0)! };
      assert.deepEqual((await first.fetch('h', 'g', 0, 0, 10)).map((d) => d.id), ['h0', 'h1', 'h2']);
      const outcomes = await first.settle([
        { kind: 'ack', lease: leaseA, seq: receipts[0]!.seq },
        { kind: 'retry', lease: leaseA, seq: receipts[1]!.seq, attempts: 2, notBefore: 0, error: { message: 'boom' }, failedAt: Date.now() },
      ]);
      assert.deepEqual(outcomes, ['ok', 'ok']);
      // A stops answering (no release, no close): B takes the partition over once A's lease ran out.
      await sleep(leaseMs + 100);
      const b = await next.coordinate({ topic: 'h', group: 'g', member: 'B', leaseMs: 10_000, acquire: [0], release: [] });
      assert.ok(b.owned.has(0), 'B owns the partition');
      // B's process published nothing: its fetch waits for nothing, so the test waits for its reader.
      let seen: Awaited<ReturnType<typeof next.fetch>> = [];
      await waitFor('B read h1 and h2', async () => (seen = await next.fetch('h', 'g', 0, 0, 10)).length === 2, 10_000);
      assert.deepEqual(seen.map((d) => [d.id, d.attempts]), [['h1', 2], ['h2', 0]], 'the next owner sees h1\'s two failed attempts');
      // Their readers would otherwise go on polling the mock (the next test injects Fetch errors).
      await Promise.all([firstClient.close(), nextClient.close()]);
    });

    test('offset commits reach the broker in the order their snapshots were taken, even when finding the coordinator is slow', async () => {
      const { kafkaTopic } = await openTopic('order', 1);
      const cluster = (await loadKafkajs(factory.cluster.bootstraps, 'commit-order')).cluster();
      await cluster.connect();
      try {
        // The first coordinator lookup answers late (a broker connected for the first time under
        // load); the ones after it at once.
        const find = cluster.findGroupCoordinator.bind(cluster);
        let lookups = 0;
        cluster.findGroupCoordinator = async (request) => {
          const slow = lookups++ === 0;
          const coordinator = await find(request);
          if (slow) await sleep(300);
          return coordinator;
        };
        let offset = 1;
        let taken = 0;
        const written: number[] = [];
        const reader = {
          partition: 0,
          snapshot: (): CommitSnapshot => ({ partition: 0, offset, metadata: '', horizon: 0, taken: ++taken }),
          committed: (snapshot: CommitSnapshot): void => void written.push(snapshot.offset),
        };
        const kafkaGroup = `${kafkaTopic}~order`;
        const committer = new GroupCommitter({ cluster, kafkaTopic, kafkaGroup, failed: () => undefined });
        const first = committer.commit(reader);
        await sleep(20); // the first request is looking up the coordinator
        offset = 2;
        await Promise.all([first, committer.commit(reader)]);
        const coordinator = await find({ groupId: kafkaGroup });
        const fetched = await coordinator.offsetFetch({ groupId: kafkaGroup, topics: [{ topic: kafkaTopic, partitions: [{ partition: 0 }] }] });
        assert.deepEqual(written, [1, 2], 'the requests were answered in the order taken');
        assert.equal(Number(fetched.responses[0]!.partitions[0]!.offset), 2, 'the group ends at the newest commit, not the older one written last');
      } finally {
        await cluster.disconnect();
      }
    });

    test('fetch and settle wait for a reader that is slow to read (for the reader, not for a fixed time)', async () => {
      const broker = (await open()).broker;
      await broker.ensureTopic('slow', { partitions: 1, dedupWindowMs: 60_000 });
      await broker.ensureGroup('slow', 'g');
      const [receipt] = await broker.publish('slow', [message('s1')]);
      // The reader's first 3 Fetches fail: it reads after its backoffs (50 + 100 + 200 ms).
      await factory.cluster.pushErrors(ApiKey.Fetch, 3, KafkaError.NOT_LEADER_OR_FOLLOWER);
      const started = Date.now();
      const { owned } = await broker.coordinate({ topic: 'slow', group: 'g', member: 'A', leaseMs: 10_000, acquire: [0], release: [] });
      assert.deepEqual((await broker.fetch('slow', 'g', 0, 0, 10)).map((d) => d.id), ['s1'], 'fetch returns the message published before it');
      const waited = Date.now() - started;
      assert.ok(waited >= 300, `the reader read only after its Fetch backoffs (${waited} ms)`);
      const lease = { topic: 'slow', group: 'g', partition: 0, member: 'A', fence: owned.get(0)! };
      await factory.cluster.pushErrors(ApiKey.Fetch, 3, KafkaError.NOT_LEADER_OR_FOLLOWER);
      const [second] = await broker.publish('slow', [message('s2')]);
      assert.deepEqual(await broker.settle([{ kind: 'ack', lease, seq: second!.seq }, { kind: 'ack', lease, seq: receipt!.seq }]), ['ok', 'ok'], 'a message not yet read is settled once read, not "missing"');
      assert.deepEqual(await broker.fetch('slow', 'g', 0, 0, 10), []);
    });
  });
}
