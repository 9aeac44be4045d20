/**
 * `GET /metrics`: behind the admin token, every metric family present after real traffic on a
 * real SQLite file, accepted by the real `promtool check metrics`, no series per chat id, a
 * scrape that costs a lookup per partition with a backlog of 1,000,000 messages, and the
 * worker processes of `start --workers 2` summed into one answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { FastifyInstance } from 'fastify';
import { PermanentError, connect, type Botqueue } from '../../src/index.js';
import { metrics } from '../../src/observability/metrics.js';
import { resolveConfig } from '../../src/service/config.js';
import { createHttpServer } from '../../src/service/http.js';
import { createLogger } from '../../src/service/logger.js';
import { promtool, skipWithout } from '../support/tools.js';
import { TEST_HANDLERS, TOKEN, cleanup, readHandled, serviceEnv, startService, tempDir, waitFor, writeJsonConfig } from './harness.js';

const dirs: string[] = [];
const open: Array<{ close(): Promise<unknown> }> = [];
after(async () => {
  for (const thing of open.reverse()) await thing.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await cleanup();
});

async function sqliteServer(backend: 'sqlite' | 'memory' = 'sqlite'): Promise<{ app: FastifyInstance; bq: Botqueue; path: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'bq-metrics-'));
  dirs.push(dir);
  const path = join(dir, 'bq.db');
  const bq = await connect(backend === 'sqlite' ? `sqlite:${path}` : 'memory:');
  const config = resolveConfig({}, { cwd: dir, env: { BOTQUEUE_ADMIN_TOKEN: TOKEN }, path: undefined, label: 'config' });
  const logger = createLogger({ level: 'silent', role: 'gateway', destination: { write: () => undefined } });
  const app = createHttpServer({ bq, config, logger });
  open.push(bq, app);
  return { app, bq, path };
}

async function scrape(app: FastifyInstance): Promise<string> {
  const answer = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(answer.statusCode, 200, answer.body);
  assert.match(String(answer.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return answer.body;
}

/** The value of the sample `name{labels}` (labels in the order prom-client writes them). */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

function seriesCount(text: string): number {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#')).length;
}

async function drained(bq: Botqueue, topic: string, timeoutMs = 60_000): Promise<void> {
  await waitFor(`${topic} drained`, async () => (await bq.stats(topic))[0]?.groups[0]?.backlog === 0, timeoutMs);
}

describe('GET /metrics', () => {
  test('needs the admin token; after real traffic every family is there and promtool accepts the scrape', async () => {
    const { app, bq } = await sqliteServer();
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 401);
    assert.equal((await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: 'Bearer wrong-token-0123456789abcdef' } })).statusCode, 401);

    await bq.createTopic('orders', { partitions: 4 });
    const worker = bq.worker<{ poison?: boolean }>(
      'orders',
      (message) => {
        if (message.payload.poison === true) throw new PermanentError('poisoned on purpose');
      },
      { group: 'shop' },
    );
    metrics().observeWorker(worker);
    open.push(worker);
    await worker.ready;
    await bq.publish('orders', { key: 'chat:1', id: 'o-1', payload: {} });
    await bq.publish('orders', { key: 'chat:1', id: 'o-1', payload: {} });
    await bq.publish('orders', { key: 'chat:2', id: 'o-2', payload: {} });
    await bq.publish('orders', { key: 'chat:3', id: 'o-3', payload: { poison: true } });
    await drained(bq, 'orders');

    const text = await scrape(app);
    assert.equal(sample(text, 'botqueue_messages_published_total{topic="orders",outcome="stored"}'), 3);
    assert.equal(sample(text, 'botqueue_messages_published_total{topic="orders",outcome="duplicate"}'), 1);
    assert.equal(sample(text, 'botqueue_messages_delivered_total{topic="orders",group="shop"}'), 3);
    assert.equal(sample(text, 'botqueue_messages_settled_total{topic="orders",group="shop",outcome="ack"}'), 2);
    assert.equal(sample(text, 'botqueue_messages_settled_total{topic="orders",group="shop",outcome="dead_letter"}'), 1);
    assert.equal(sample(text, 'botqueue_handler_duration_seconds_count{topic="orders",group="shop"}'), 2);
    assert.equal(sample(text, 'botqueue_queue_time_seconds_count{topic="orders",group="shop"}'), 3);
    assert.equal(sample(text, 'botqueue_dead_letters{topic="orders",group="shop"}'), 1);
    assert.equal(sample(text, 'botqueue_backlog_messages{topic="orders",group="shop",partition="3"}'), 0);
    assert.equal(sample(text, 'botqueue_group_members{topic="orders",group="shop"}'), 1);
    assert.equal(sample(text, 'botqueue_order_violations_total{topic="orders",group="shop"}'), 0);
    assert.equal(sample(text, 'botqueue_oldest_unsettled_age_seconds{topic="orders",group="shop"}'), 0);
    assert.equal(sample(text, 'botqueue_stats_up'), 1);
    for (const family of ['botqueue_in_flight_messages', 'botqueue_parked_keys', 'botqueue_retained_messages', 'botqueue_lease_losses_total', 'botqueue_messages_redelivered_total']) {
      assert.match(text, new RegExp(`^# TYPE ${family} `, 'm'), family);
    }
    assert.doesNotMatch(text, /chat:|o-1|poison/, 'no key, message id or payload in a label');

    const skip = skipWithout('promtool', "Debian's prometheus package");
    if (skip !== undefined) return;
    const checked = await promtool(['check', 'metrics'], text);
    assert.equal(checked.code, 0, checked.output);
    assert.equal(checked.output.trim(), '', 'promtool reports no lint problem');
  });

  // On the memory backend, to keep it quick: the labels are the same on every backend.
  test('10,000 distinct chat ids, then 10,000 more: the series count does not change', async () => {
    const started = performance.now();
    const { app, bq } = await sqliteServer('memory');
    await bq.createTopic('chats', { partitions: 8 });
    const worker = bq.worker('chats', () => undefined, { group: 'bot', concurrency: 64 });
    metrics().observeWorker(worker);
    open.push(worker);
    const round = async (from: number): Promise<string> => {
      for (let batch = 0; batch < 10; batch++) {
        const messages = Array.from({ length: 1_000 }, (_, i) => {
          const chat = from + batch * 1_000 + i;
          return { key: `chat:${chat}`, id: `update-${chat}`, payload: { chat } };
        });
        await bq.publishBatch('chats', messages);
      }
      await drained(bq, 'chats');
      return scrape(app);
    };
    const first = await round(0);
    const second = await round(10_000);
    assert.equal(sample(second, 'botqueue_messages_settled_total{topic="chats",group="bot",outcome="ack"}'), 20_000);
    assert.equal(seriesCount(second), seriesCount(first), 'no series per chat id');
    assert.ok(seriesCount(second) < 300, `${seriesCount(second)} series`);
    assert.doesNotMatch(second, /chat:\d|update-\d/);
    process.stdout.write(`# 20,000 chat ids: ${seriesCount(second)} series after each round, ${Math.round(performance.now() - started)} ms\n`);
  });

  test('a backlog of 1,000,000 messages: a scrape reads counts per partition, not the backlog', async () => {
    const { app, bq, path } = await sqliteServer();
    await bq.createTopic('big', { partitions: 16 });
    await bq.broker.ensureGroup('big', 'slow');
    const total = 1_000_000;
    // One INSERT…SELECT per table in one transaction, through a second connection (the file is shared).
    const db = new Database(path);
    const tid = db.prepare<[string], number>('SELECT tid FROM topics WHERE name = ?').pluck().get('big')!;
    const gid = db.prepare<[number, string], number>('SELECT gid FROM groups WHERE tid = ? AND name = ?').pluck().get(tid, 'slow')!;
    const built = performance.now();
    db.transaction(() => {
      const first = db.prepare<[], number>("SELECT value FROM meta WHERE name = 'next_seq'").pluck().get()!;
      db.prepare(
        `WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < ?)
         INSERT INTO messages (seq, tid, partition, refs, not_before, published_at, id, key, headers, payload)
         SELECT ? + i, ?, i % 16, 1, 0, ?, 'big-' || i, 'chat:' || (i % 50000), NULL, '{}' FROM n`,
      ).run(total, first, tid, Date.now() - 60_000);
      db.prepare('INSERT INTO pending (gid, partition, seq, not_before, attempts, first_failed_at, parked) SELECT ?, partition, seq, 0, 0, NULL, 0 FROM messages WHERE tid = ?').run(gid, tid);
      // The broker keeps the count tables in its own writes (no triggers): rows written behind its back are counted here.
      db.prepare('INSERT OR REPLACE INTO backlog_counts (gid, partition, n) SELECT gid, partition, count(*) FROM pending WHERE gid = ? GROUP BY partition').run(gid);
      db.prepare('INSERT OR REPLACE INTO topic_counts (tid, n) SELECT tid, count(*) FROM messages WHERE tid = ? GROUP BY tid').run(tid);
      db.prepare("UPDATE meta SET value = ? WHERE name = 'next_seq'").run(first + total);
    })();
    const buildMs = performance.now() - built;
    const count = db.prepare<[number], number>('SELECT count(*) FROM pending WHERE gid = ?').pluck();

    const median = async (run: () => unknown): Promise<number> => {
      const times: number[] = [];
      for (let i = 0; i < 5; i++) {
        const started = performance.now();
        await run();
        times.push(performance.now() - started);
      }
      return times.sort((a, b) => a - b)[2]!;
    };
    const scanMs = await median(() => assert.equal(count.get(gid), total));
    const statsMs = await median(async () => assert.equal((await bq.stats('big'))[0]!.groups[0]!.backlog, total));
    const scrapeMs = await median(() => scrape(app));
    db.close();
    const text = await scrape(app);
    assert.equal(sample(text, 'botqueue_backlog_messages{topic="big",group="slow",partition="0"}'), total / 16);
    assert.equal(sample(text, 'botqueue_retained_messages{topic="big"}'), total);
    assert.ok((sample(text, 'botqueue_oldest_unsettled_age_seconds{topic="big",group="slow"}') ?? 0) >= 59, 'lag of the oldest message');
    process.stdout.write(
      `# 1M backlog built in ${Math.round(buildMs)} ms; medians: count(*) scan ${scanMs.toFixed(1)} ms, stats() ${statsMs.toFixed(2)} ms, /metrics ${scrapeMs.toFixed(2)} ms (scan/stats ${(scanMs / statsMs).toFixed(0)}x)\n`,
    );
    // A scan of the backlog would cost about as much as count(*); a lookup per partition costs a small fraction.
    assert.ok(statsMs * 5 < scanMs, `stats() ${statsMs.toFixed(2)} ms is not far below a scan (${scanMs.toFixed(1)} ms)`);
  });

  test('start --workers 2: the worker processes are summed into one /metrics', async () => {
    const dir = tempDir();
    const log = join(dir, 'handled.log');
    writeJsonConfig(dir, {
      shutdownTimeoutMs: 5_000,
      topics: { jobs: { partitions: 8 } },
      handlers: [{ topic: 'jobs', module: TEST_HANDLERS, export: 'record', options: { group: 'crew' } }],
    });
    const service = await startService(dir, serviceEnv(dir, { TEST_HANDLED_LOG: log, BOTQUEUE_ADMIN_TOKEN: TOKEN }), 2);
    const messages = Array.from({ length: 200 }, (_, i) => ({ key: `k${i % 40}`, id: `j-${i}`, payload: { n: i } }));
    assert.equal((await service.publish('jobs', messages, { authorization: `Bearer ${TOKEN}` })).status, 202);
    await waitFor('200 handled', () => readHandled(log).length >= 200, 30_000);
    const pids = new Set(readHandled(log).map((h) => h.pid));
    const answer = await service.fetch('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(answer.status, 200);
    const text = await answer.text();
    // Acks are counted after the settlement is stored, a moment after the handler's line.
    let acked = sample(text, 'botqueue_messages_settled_total{topic="jobs",group="crew",outcome="ack"}');
    if (acked !== 200) {
      await waitFor('200 acks in /metrics', async () => {
        const again = await (await service.fetch('/metrics', { headers: { authorization: `Bearer ${TOKEN}` } })).text();
        acked = sample(again, 'botqueue_messages_settled_total{topic="jobs",group="crew",outcome="ack"}');
        return acked === 200;
      });
    }
    assert.equal(acked, 200, `both processes' counters summed (handled by pids ${[...pids].join(', ')})`);
    assert.equal(sample(text, 'botqueue_messages_published_total{topic="jobs",outcome="stored"}'), 200, 'the gateway counted the publishes');
    assert.equal(sample(text, 'botqueue_group_members{topic="jobs",group="crew"}'), 2);
    await service.stop();
  });
});
