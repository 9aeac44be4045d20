/**
 * The CLI against the RabbitMQ backend: the real RabbitMQ and PostgreSQL (test/support/services.ts),
 * skipped loudly outside CI when one is not reachable, a failure in CI. Everything runs in one
 * namespace of this run, whose queues, exchanges and store schema are deleted at the end.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type Botqueue } from '../../src/client.js';
import { PermanentError } from '../../src/core/errors.js';
import { cleanupNamespaces } from '../conformance/rabbitmq-harness.js';
import { missingServices, RABBITMQ_URL, reportMissing, STORE_URL } from '../support/services.js';
import { consume, workspace } from './helpers.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);

if (!reportMissing('botqueue CLI on RabbitMQ', await missingServices(), register)) {
  const namespace = `bqcli${process.pid}`;
  /** Without a store: the CLI gets it from BOTQUEUE_STORE_URL, or not at all. */
  const baseUrl = `${RABBITMQ_URL}?namespace=${namespace}`;
  /** With the store in the URL, for `--url` and for the library in this process. */
  const fullUrl = `${baseUrl}&store=${encodeURIComponent(STORE_URL)}`;
  const ws = workspace('rabbitmq');
  /** The environment form: BOTQUEUE_URL names RabbitMQ, BOTQUEUE_STORE_URL the store. */
  const env = { BOTQUEUE_URL: baseUrl, BOTQUEUE_STORE_URL: STORE_URL };

  after(async () => {
    await cleanupNamespaces(new Set([namespace]));
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

  async function deadLetterIds(): Promise<string[]> {
    return withLibrary(async (bq) => (await bq.deadLetters.list({ limit: 1000 })).map((d) => d.id).sort());
  }

  describe('botqueue doctor on RabbitMQ', () => {
    test('passes with the store in the URL, checking amqplib and pg instead of better-sqlite3', async () => {
      const result = await ws.run(['doctor', '--url', fullUrl]);
      assert.equal(result.code, 0, result.stdout + result.stderr);
      assert.equal(result.stderr, '');
      const lines = result.stdout.trimEnd().split('\n');
      assert.deepEqual(
        lines.map((line) => line.split(/\s+/).slice(0, 2).join(' ')),
        ['OK node', 'OK config', 'OK driver', 'OK url', 'SKIP data-dir', 'OK connect', 'all checks'],
      );
      assert.match(result.stdout, /^OK {4}driver {4}amqplib \d+\.\d+\.\d+ and pg \d+\.\d+\.\d+ load$/m);
      assert.doesNotMatch(result.stdout, /better-sqlite3/);
      assert.match(result.stdout, new RegExp(`^OK {4}url {7}amqp://.*namespace ${namespace}, store postgres://`, 'm'));
      assert.match(result.stdout, /^SKIP {2}data-dir {2}not a file-based backend$/m);
      assert.doesNotMatch(result.stdout, /guest:guest@/, 'the password is masked');
    });

    test('fails with exit 1 when there is no store, and says to set BOTQUEUE_STORE_URL', async () => {
      assert.equal(ws.env.BOTQUEUE_STORE_URL, undefined, 'the child must not inherit a store');
      const result = await ws.run(['doctor', '--url', baseUrl]);
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, /^OK {4}driver {4}amqplib /m);
      // guest's password is guest: the user name, being the password too, is masked as well.
      assert.match(result.stdout, /^FAIL {2}url {7}amqp:\/\/\*\*\*:\*\*\*@.*no shared store.*\(BOTQUEUE_STORE_REQUIRED\) — set BOTQUEUE_STORE_URL=postgres:\/\//m);
      assert.match(result.stdout, /^SKIP {2}connect {3}the URL is not usable$/m);
      assert.equal(result.errorLines.length, 1);
      assert.match(result.errorLines[0]!, /^botqueue: 1 check failed \(url\) — /);
    });
  });

  describe('botqueue publish and stats on RabbitMQ', () => {
    test('stats --json shows the backlog per partition of a group created before the publish', async () => {
      const created = (await cliJson(['topics', 'create', 'orders', '--partitions', '2', '--json'])) as { created: boolean; topic: { partitions: number } };
      assert.deepEqual([created.created, created.topic.partitions], [true, 2]);
      await withLibrary((bq) => bq.broker.ensureGroup('orders', 'billing'));

      const input = ['chat:1', 'chat:2', 'chat:3', 'chat:1', 'chat:4'].map((key, n) => JSON.stringify({ key, id: `o${n}`, payload: { n } })).join('\n');
      const published = (await cliJson(['publish', 'orders', '--json'], input)) as { stored: number; receipts: { partition: number }[] };
      assert.equal(published.stored, 5);
      const expected = [0, 0];
      for (const receipt of published.receipts) expected[receipt.partition] = (expected[receipt.partition] ?? 0) + 1;

      const doc = (await cliJson(['stats', 'orders', '--json'])) as {
        topics: { topic: string; partitions: number; groups: { group: string; backlog: number; inFlight: number; deadLetters: number; partitions: { partition: number; backlog: number }[] }[] }[];
      };
      assert.equal(doc.topics.length, 1);
      const topic = doc.topics[0]!;
      assert.deepEqual([topic.topic, topic.partitions], ['orders', 2]);
      assert.deepEqual(
        topic.groups.map((g) => [g.group, g.backlog, g.inFlight, g.deadLetters]),
        [['billing', 5, 0, 0]],
      );
      assert.deepEqual(
        topic.groups[0]!.partitions.map((p) => [p.partition, p.backlog]),
        expected.map((count, partition) => [partition, count]),
      );

      const table = await ws.run(['stats', 'orders'], { env });
      assert.equal(table.code, 0, table.stderr);
      assert.match(table.stdout, /^orders\s+billing\s+5\s+0\s+/m);
    });
  });

  describe('botqueue dlq on RabbitMQ', () => {
    before(async () => {
      await withLibrary(async (bq) => {
        await bq.createTopic('chat', { partitions: 2 });
        await bq.broker.ensureGroup('chat', 'bot');
      });
      const input = [
        { key: 'chat:1', id: 'm1', payload: { text: 'ok' } },
        { key: 'chat:1', id: 'm2', payload: { text: 'bad', poison: 'poison pill' }, headers: { trace: 'abc' } },
        { key: 'chat:2', id: 'm3', payload: { poison: 'poison pill' } },
        { key: 'chat:3', id: 'm4', payload: { poison: 'other failure' } },
        { key: 'chat:1', id: 'm5', payload: { text: 'after' } },
      ]
        .map((m) => JSON.stringify(m))
        .join('\n');
      const published = await ws.run(['publish', 'chat'], { env, input });
      assert.equal(published.code, 0, published.stderr);

      // A worker of this process dead-letters the poison ones.
      await withLibrary(async (bq) => {
        let dead = 0;
        let completed = 0;
        const worker = bq.worker(
          'chat',
          (message) => {
            const poison = (message.payload as { poison?: string }).poison;
            if (poison !== undefined) throw new PermanentError(poison);
            return Promise.resolve();
          },
          { group: 'bot' },
        );
        try {
          await new Promise<void>((resolve, reject) => {
            const check = (): void => {
              if (dead === 3 && completed === 2) resolve();
            };
            worker.on('dead-lettered', () => {
              dead++;
              check();
            });
            worker.on('completed', () => {
              completed++;
              check();
            });
            setTimeout(() => reject(new Error(`timed out: ${dead} dead-lettered, ${completed} completed`)), 20_000).unref();
          });
        } finally {
          await worker.close();
        }
      });
    });

    test('summary and list show the dead letters the worker produced', async () => {
      const summary = (await cliJson(['dlq', 'summary', '--json'])) as { total: number; entries: { topic: string; group: string; error: string; count: number; keys: number }[] };
      assert.equal(summary.total, 3);
      assert.deepEqual(
        summary.entries.map((e) => [e.topic, e.group, e.error, e.count, e.keys]),
        [
          ['chat', 'bot', 'poison pill', 2, 2],
          ['chat', 'bot', 'other failure', 1, 1],
        ],
      );
      const human = await ws.run(['dlq', 'summary'], { env });
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /^\s*2\s+chat\s+bot\s+2\s+0 .*poison pill$/m);
      assert.match(human.stdout, /3 dead letters \(every dead letter\)/);

      const list = (await cliJson(['dlq', 'list', '--json'])) as {
        deadLetters: { topic: string; group: string; key: string | null; id: string; payload: unknown; headers: Record<string, string>; error: { code: string | null } }[];
        next: number | null;
      };
      assert.equal(list.next, null);
      assert.deepEqual(list.deadLetters.map((d) => d.id).sort(), ['m2', 'm3', 'm4']);
      const m2 = list.deadLetters.find((d) => d.id === 'm2');
      assert.ok(m2);
      assert.deepEqual([m2.topic, m2.group, m2.key], ['chat', 'bot', 'chat:1']);
      assert.deepEqual(m2.payload, { text: 'bad', poison: 'poison pill' });
      assert.deepEqual(m2.headers, { trace: 'abc' });
      assert.equal(m2.error.code, 'BOTQUEUE_PERMANENT_FAILURE');
    });

    test('redrive --topic --key sends the dead letter back and a worker handles it', async () => {
      const result = await ws.run(['dlq', 'redrive', '--topic', 'chat', '--key', 'chat:1'], { env });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, 'redriven 1 dead letter (topic=chat key=chat:1)\n');
      assert.deepEqual(await deadLetterIds(), ['m3', 'm4']);

      const got = await withLibrary((bq) => consume(bq, 'chat', (received) => received.some((m) => m.id === 'm2'), { group: 'bot', timeoutMs: 20_000 }));
      const m2 = got.find((m) => m.id === 'm2');
      assert.ok(m2, 'the redriven message was not delivered again');
      assert.equal(m2.key, 'chat:1');
      assert.deepEqual(m2.payload, { text: 'bad', poison: 'poison pill' });
      assert.deepEqual(m2.headers, { trace: 'abc' });
      assert.deepEqual(
        got.map((m) => m.id),
        ['m2'],
      ); // only the redriven message: m1 and m5 were handled before
    });

    test('purge with a filter, then --all, empties the dead-letter queue', async () => {
      const one = (await cliJson(['dlq', 'purge', '--error', 'other', '--json'])) as Record<string, unknown>;
      assert.deepEqual(one, { action: 'purge', dryRun: false, filter: { errorContains: 'other' }, matched: 1, parked: 0, purged: 1 });
      assert.deepEqual(await deadLetterIds(), ['m3']);
      const rest = await ws.run(['dlq', 'purge', '--all'], { env });
      assert.equal(rest.code, 0, rest.stderr);
      assert.equal(rest.stdout, 'purged 1 dead letter (every dead letter)\n');
      assert.deepEqual(await deadLetterIds(), []);
      const summary = (await cliJson(['dlq', 'summary', '--json'])) as { total: number };
      assert.equal(summary.total, 0);
    });
  });
}
