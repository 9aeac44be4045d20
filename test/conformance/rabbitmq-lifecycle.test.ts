/**
 * Deleting groups and topics on the RabbitMQ backend, against the real RabbitMQ and PostgreSQL
 * on 127.0.0.1: live members refused, the queues, exchanges and store rows gone, a deletion cut
 * off halfway finished by running it again, and another process that had the topic cached
 * told BOTQUEUE_TOPIC_NOT_FOUND rather than recreating anything.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import amqplib from 'amqplib';
import pg from 'pg';
import { ErrorCodes, connect, type Botqueue } from '../../src/index.js';
import { Names } from '../../src/brokers/rabbitmq/names.js';
import { missingServices, reportMissing, RABBITMQ_URL, STORE_URL } from '../support/services.js';
import { rabbitmqFactory } from './rabbitmq-harness.js';
import { waitFor } from './harness.js';

const missing = await missingServices();

/** The store's tables that hold rows per (topic, grp). */
const GROUP_TABLES = ['leases', 'members', 'message_states', 'dead_letters', 'effects', 'backfill_copied', 'backfill_batches', 'backfill_claims'];

if (!reportMissing('RabbitMQ lifecycle', missing, test)) {
  const factory = rabbitmqFactory('bqlc');
  const db = new pg.Client({ connectionString: STORE_URL });
  await db.connect();
  const amqp = await amqplib.connect(RABBITMQ_URL);
  const closers: Array<() => Promise<unknown>> = [];
  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    await factory.cleanup();
    await amqp.close();
    await db.end();
  });

  /** Whether a queue or exchange exists (a passive check on a throwaway channel: a miss closes it). */
  const exists = async (kind: 'queue' | 'exchange', name: string): Promise<boolean> => {
    const channel = await amqp.createChannel();
    channel.on('error', () => undefined);
    try {
      if (kind === 'queue') await channel.checkQueue(name);
      else await channel.checkExchange(name);
      await channel.close();
      return true;
    } catch {
      return false;
    }
  };

  const open = async (url: string): Promise<Botqueue> => {
    const bq = await connect(url);
    closers.push(() => bq.close());
    return bq;
  };

  const namespaceOf = (url: string): Names => new Names(new URL(url).searchParams.get('namespace')!);

  /** Rows of the group (or of every group of the topic) left in the store, per table. */
  const rowsLeft = async (names: Names, topic: string, group?: string): Promise<Record<string, number>> => {
    const left: Record<string, number> = {};
    const tables = group === undefined ? [...GROUP_TABLES, 'dedup', 'groups'] : GROUP_TABLES;
    for (const table of tables) {
      const sql = `SELECT count(*)::int AS n FROM "${names.schema}".${table} WHERE topic = $1${group === undefined ? '' : ' AND grp = $2'}`;
      const n = (await db.query<{ n: number }>(sql, group === undefined ? [topic] : [topic, group])).rows[0]!.n;
      if (n > 0) left[table] = n;
    }
    return left;
  };

  describe('RabbitMQ lifecycle', () => {
    test('deleteGroup refuses live members, then removes the queues and rows; deleteTopic removes everything of the topic', async () => {
      const url = factory.url();
      const names = namespaceOf(url);
      const bq = await open(url);
      await bq.createTopic('t', { partitions: 2 });
      await bq.broker.ensureGroup('t', 'abandoned');
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      let calls = 0;
      const worker = bq.worker('t', () => ((calls += 1), gate), { group: 'live', shutdownTimeoutMs: 5_000 });
      await worker.ready;
      await bq.publishBatch('t', [{ key: 'a', id: '1', payload: 1 }, { key: 'b', id: '2', payload: 2 }]);
      // A dead letter and a recorded step of the abandoned group, so its rows are really there to delete.
      await bq.broker.putEffect('t', 'abandoned', '1', 'step', 'done');
      assert.ok(Object.keys(await rowsLeft(names, 't', 'abandoned')).includes('effects'));

      // Refused by the client's check and by the broker's own (under the store's lock).
      await assert.rejects(bq.deleteGroup('t', 'live'), { code: ErrorCodes.GROUP_HAS_MEMBERS });
      await assert.rejects(bq.deleteTopic('t'), { code: ErrorCodes.GROUP_HAS_MEMBERS });
      await assert.rejects(bq.broker.deleteGroup('t', 'live'), { code: ErrorCodes.GROUP_HAS_MEMBERS });
      await assert.rejects(bq.broker.deleteTopic('t'), { code: ErrorCodes.GROUP_HAS_MEMBERS });
      assert.equal(await exists('queue', names.partitionQueue('t', 'live', 0)), true, 'a refused deletion deleted nothing');
      await assert.rejects(bq.deleteGroup('t', 'nope'), { code: ErrorCodes.GROUP_NOT_FOUND });

      await bq.deleteGroup('t', 'abandoned');
      for (const p of [0, 1]) assert.equal(await exists('queue', names.partitionQueue('t', 'abandoned', p)), false);
      assert.deepEqual(await rowsLeft(names, 't', 'abandoned'), {});
      const [stats] = await bq.stats('t');
      assert.deepEqual(stats!.groups.map((g) => g.group), ['live']);
      assert.equal(stats!.groups[0]!.backlog, 2, 'the live group keeps both messages');
      assert.equal(await bq.broker.deleteGroup('t', 'abandoned'), false, 'gone: false');

      release();
      await waitFor('the live group handled both', async () => (await bq.stats('t'))[0]!.groups[0]!.backlog === 0, 10_000);
      // The refused deletions did not disturb the live worker here (its subscriptions stayed open): no redelivery.
      assert.equal(calls, 2);
      await worker.close();
      await waitFor('no live member', async () => (await bq.stats('t'))[0]!.groups[0]!.members === 0, 10_000);
      await bq.deleteTopic('t');
      assert.deepEqual(await bq.stats(), []);
      for (const [kind, name] of [
        ['queue', names.partitionQueue('t', 'live', 0)],
        ['queue', names.partitionQueue('t', 'live', 1)],
        ['queue', names.unclaimedQueue('t')],
        ['queue', names.deadLetterQueue('t')],
        ['exchange', names.exchange('t')],
        ['exchange', names.unclaimedExchange('t')],
        ['exchange', names.deadLetterExchange('t')],
      ] as const) {
        assert.equal(await exists(kind, name), false, `${kind} ${name} deleted`);
      }
      assert.deepEqual(await rowsLeft(names, 't'), {});
      assert.equal((await db.query(`SELECT 1 FROM "${names.schema}".topics WHERE name = 't'`)).rowCount, 0);

      // Made again, the topic starts empty: the id is new (its dedup record went) and a new group gets it.
      await bq.createTopic('t', { partitions: 2 });
      const receipt = await bq.publish('t', { key: 'a', id: '1', payload: 1 });
      assert.equal(receipt.duplicate, false);
      const handled: unknown[] = [];
      const again = bq.worker('t', (message) => void handled.push(message.payload), { group: 'fresh' });
      await waitFor('the new group handles the message', () => handled.length === 1, 15_000);
      await again.close();
    });

    test('a deletion cut off after the queues went (rows still there) is finished by running it again', async () => {
      const url = factory.url();
      const names = namespaceOf(url);
      const bq = await open(url);
      await bq.createTopic('half', { partitions: 2 });
      await bq.broker.ensureGroup('half', 'g');
      await bq.publish('half', { key: 'a', id: 'x', payload: 1 });
      // What a crash between dropping the RabbitMQ objects and the store's COMMIT leaves behind.
      const channel = await amqp.createChannel();
      for (const p of [0, 1]) await channel.deleteQueue(names.partitionQueue('half', 'g', p));
      await channel.close();
      const [stats] = await bq.stats('half');
      assert.deepEqual(stats!.groups.map((g) => g.group), ['g'], 'still listed, so the operator can run it again');
      await bq.deleteGroup('half', 'g');
      assert.deepEqual(await rowsLeft(names, 'half', 'g'), {});
      assert.deepEqual((await bq.stats('half'))[0]!.groups, []);

      // The same for a topic whose exchanges and queues went but whose rows stayed.
      await bq.broker.ensureGroup('half', 'h');
      const channel2 = await amqp.createChannel();
      for (const p of [0, 1]) await channel2.deleteQueue(names.partitionQueue('half', 'h', p));
      await channel2.deleteQueue(names.unclaimedQueue('half'));
      await channel2.deleteExchange(names.exchange('half'));
      await channel2.close();
      await bq.deleteTopic('half');
      assert.deepEqual(await bq.stats(), []);
      assert.deepEqual(await rowsLeft(names, 'half'), {});
      assert.equal(await exists('exchange', names.deadLetterExchange('half')), false);
    });

    test('another process with the topic cached gets TOPIC_NOT_FOUND and recreates nothing; made again, it publishes', async () => {
      const url = factory.url();
      const names = namespaceOf(url);
      const admin = await open(url);
      const other = await open(url);
      await admin.createTopic('cached', { partitions: 1 });
      await other.broker.ensureGroup('cached', 'g');
      await other.publish('cached', { key: 'a', id: 'before', payload: 1 });
      await admin.deleteTopic('cached');
      await assert.rejects(other.publish('cached', { key: 'a', id: 'after', payload: 2 }), { code: ErrorCodes.TOPIC_NOT_FOUND });
      assert.equal(await exists('exchange', names.exchange('cached')), false, 'the exchange was not recreated');
      assert.equal(await exists('queue', names.partitionQueue('cached', 'g', 0)), false, 'nor the group queue');
      assert.equal(await admin.broker.getTopic('cached'), undefined, 'nor the store row');
      await assert.rejects(other.broker.coordinate({ topic: 'cached', group: 'g', member: 'm', leaseMs: 1_000, acquire: [0], release: [] }), {
        code: ErrorCodes.TOPIC_NOT_FOUND,
      });

      // Created again (by the admin process): the other process's next publish goes through to a new group.
      await admin.createTopic('cached', { partitions: 1 });
      await admin.broker.ensureGroup('cached', 'g2');
      await other.publish('cached', { key: 'a', id: 'after', payload: 2 }).catch(() => other.publish('cached', { key: 'a', id: 'after', payload: 2 }));
      await waitFor('the message reaches the new group', async () => (await admin.stats('cached'))[0]!.groups[0]!.backlog === 1, 10_000);
    });
  });
}
