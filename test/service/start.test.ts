/**
 * `botqueue start` end to end: the real HTTP server in a real process (runStart from source)
 * on a temporary SQLite file, checked through HTTP and through a client on the same file.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, partitionForKey } from '../../src/index.js';
import {
  ECHO_BOT,
  TEST_HANDLERS,
  firstHandlingOrderProblems,
  orderViolations,
  overlapProblems,
  readSpans,
  TOKEN,
  cleanup,
  processAlive,
  readHandled,
  serviceEnv,
  sleep,
  startService,
  strictOrderProblems,
  tempDir,
  waitFor,
  writeJsonConfig,
  ServiceProcess,
} from './harness.js';

after(cleanup);

/** Retained messages of a topic, read through a client of its own on the service's file. */
async function retained(dir: string, topic: string): Promise<number> {
  const bq = await connect(`sqlite:${join(dir, 'bq.db')}`);
  try {
    const [stats] = await bq.stats(topic);
    return stats?.retained ?? 0;
  } finally {
    await bq.close();
  }
}

interface DeadLetterAnswer {
  dlqId: number;
  id: string;
  key: string;
  attempts: number;
  payload: unknown;
  error: { message: string };
}

/** Every field any answer of the API has; each test reads the ones its route sends. */
interface Answer {
  statusCode: number;
  code: string;
  message: string;
  receipts: Array<{ id: string; topic: string; partition: number; seq: number; duplicate: boolean }>;
  topics: Array<{ topic: string; retained: number; groups: Array<{ group: string; backlog: number; partitions: Array<{ owner: string | null }> }> }>;
  deadLetters: DeadLetterAnswer[];
  next: number | null;
}

async function json(response: Response): Promise<Answer> {
  return (await response.json()) as Answer;
}

describe('botqueue start: HTTP API', () => {
  const dir = tempDir();
  const log = join(dir, 'handled.log');
  const spanLog = join(dir, 'spans.log');
  let service: ServiceProcess;

  test('starts, prints where everything is, answers health checks', async () => {
    writeJsonConfig(dir, {
      shutdownTimeoutMs: 5_000,
      maxMessageBytes: 4_096,
      http: { maxBatch: 100, bodyLimitBytes: 64 * 1024 },
      topics: { orders: { partitions: 4 }, inbox: {}, limited: { maxBacklog: 5 } },
      handlers: [{ topic: 'orders', module: TEST_HANDLERS, export: 'record', options: { group: 'shop', concurrency: 8 } }],
    });
    service = await startService(dir, serviceEnv(dir, { BOTQUEUE_ADMIN_TOKEN: TOKEN, BOTQUEUE_HOST: '127.0.0.1', TEST_HANDLED_LOG: log, TEST_HANDLER_SPAN_LOG: spanLog, TEST_HANDLER_RANDOM_SLEEP_MS: '12' }));
    const text = service.output.join('\n');
    assert.match(service.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(text, /admin auth\s+on: /);
    assert.match(text, new RegExp(`broker\\s+sqlite:${join(dir, 'bq.db').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
    assert.match(text, /topics\s+orders \(4 partitions, dedup 24 h, dead-letter\)/);
    assert.match(text, /limited \(16 partitions, dedup 24 h, dead-letter, max backlog 5\)/);
    assert.match(text, /handlers\s+orders → .*handlers\.ts#record \(group shop, concurrency 8\)/);
    assert.match(text, /workers\s+in this process/);
    assert.equal((await service.fetch('/healthz')).status, 200);
    const ready = await service.fetch('/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(await json(ready), { status: 'ready' });
  });

  test('202 with receipts only once stored; a duplicate id is stored once', async () => {
    const response = await service.publish('inbox', { key: 'chat:1', id: 'in-1', payload: { text: 'hi' } });
    assert.equal(response.status, 202);
    const body = await json(response);
    assert.equal(body.receipts.length, 1);
    // The partition is the key's (murmur2, 16 partitions: the default); seq is the message's place in it.
    const partition = partitionForKey('chat:1', 16);
    const first = body.receipts[0]!;
    assert.deepEqual(first, { id: 'in-1', topic: 'inbox', partition, seq: first.seq, duplicate: false });
    assert.ok(Number.isSafeInteger(first.seq) && first.seq >= 1, `seq ${first.seq} is a positive integer`);
    assert.equal(await retained(dir, 'inbox'), 1);

    const again = await json(await service.publish('inbox', [{ key: 'chat:1', id: 'in-1', payload: { text: 'hi' } }, { key: 'chat:1', id: 'in-2', payload: 2 }]));
    assert.deepEqual(
      again.receipts.map((r) => [r.id, r.duplicate, r.partition]),
      [
        ['in-1', true, partition],
        ['in-2', false, partition],
      ],
    );
    assert.equal(again.receipts[0]!.seq, first.seq, 'a duplicate answers with the stored message\'s seq');
    assert.equal(again.receipts[1]!.seq, first.seq + 1, 'the next message of the partition comes right after');
    assert.equal(await retained(dir, 'inbox'), 2);
  });

  test('malformed or invalid bodies are refused with the right 4xx, naming the problem, and nothing is stored', async () => {
    const before = await retained(dir, 'inbox');
    const cases: Array<[string, unknown, number, RegExp, Record<string, string>?]> = [
      ['bad JSON', '{"key":"chat:1",', 400, /not valid JSON/],
      ['empty body', '', 400, /empty/],
      ['JSON null', 'null', 400, /must be a JSON object/],
      ['a string', '"hello"', 400, /must be a JSON object/],
      ['missing payload', { key: 'chat:1', id: 'x-1' }, 400, /payload is missing/],
      ['empty key', { key: '', id: 'x-2', payload: 1 }, 400, /key must be a non-empty string/],
      ['non-string id', { key: 'chat:1', id: 42, payload: 1 }, 400, /id must be a non-empty string, got number/],
      ['unknown field', { key: 'chat:1', id: 'x-3', payload: 1, chat: 5 }, 400, /unknown message field "chat"/],
      ['bad delay', { key: 'chat:1', id: 'x-4', payload: 1, delayMs: -1 }, 400, /delayMs/],
      ['one bad message in a batch', [{ key: 'chat:1', id: 'x-5', payload: 1 }, { key: 'chat:1', id: 'x-6' }], 400, /message #1: message payload is missing/],
      ['empty array', [], 400, /empty array/],
      ['more messages than http.maxBatch', Array.from({ length: 101 }, (_, i) => ({ id: `m-${i}`, payload: i })), 413, /over the limit of 100 per request/],
      ['a message over maxMessageBytes', { key: 'chat:1', id: 'x-7', payload: 'x'.repeat(5_000) }, 413, /over the limit of 4096 bytes/],
      ['a body over http.bodyLimitBytes', { key: 'chat:1', id: 'x-8', payload: 'x'.repeat(70_000) }, 413, /request body is over the limit of 65536 bytes/],
      ['wrong content-type', '{"key":"chat:1","id":"x-9","payload":1}', 415, /content-type: application\/json/, { 'content-type': 'text/plain' }],
    ];
    for (const [name, body, status, message, headers] of cases) {
      const response = await service.publish('inbox', body, headers);
      assert.equal(response.status, status, `${name}: status`);
      const answer = await json(response);
      assert.match(answer.message, message, `${name}: message`);
      assert.equal(answer.statusCode, status);
      assert.equal(typeof answer.code, 'string');
    }
    const badTopic = await service.publish('no such topic!', { id: 'x-10', payload: 1 });
    assert.equal(badTopic.status, 400);
    assert.match((await json(badTopic)).message, /topic name must be/);
    assert.equal(await retained(dir, 'inbox'), before, 'nothing stored by refused requests');
  });

  test('messages are handled one at a time per key, in publish order', async () => {
    const keys = ['k1', 'k2', 'k3', 'k4', 'k5'];
    await Promise.all(
      keys.map(async (key) => {
        for (let batch = 0; batch < 4; batch++) {
          const messages = Array.from({ length: 10 }, (_, i) => ({ key, id: `${key}-${batch * 10 + i}`, payload: { n: batch * 10 + i } }));
          assert.equal((await service.publish('orders', messages)).status, 202);
        }
      }),
    );
    await waitFor('200 handled messages', () => readHandled(log).length >= 200, 15_000);
    const handled = readHandled(log);
    assert.equal(handled.length, 200);
    // Handlers sleep a random 0-12 ms and log their start and end: two of one key at once would show.
    const spans = readSpans(spanLog);
    assert.deepEqual(overlapProblems(spans), [], 'no two handlers of one key ran at once');
    assert.deepEqual(strictOrderProblems(handled), []);
    assert.equal(new Set(handled.map((h) => h.id)).size, 200);
    let running = 0;
    let mostAtOnce = 0;
    for (const span of spans) mostAtOnce = Math.max(mostAtOnce, (running += span.edge === 'start' ? 1 : -1));
    assert.ok(mostAtOnce >= 2, `handlers of different keys did run at once (at most ${mostAtOnce} seen), so the check above could see an overlap`);
  });

  test('admin routes need the bearer token', async () => {
    const none = await service.fetch('/v1/stats');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer/);
    assert.match((await json(none)).message, /Authorization: Bearer/);
    assert.equal((await service.fetch('/v1/stats', { headers: { authorization: `Bearer ${TOKEN}x` } })).status, 401);
    assert.equal((await service.fetch('/v1/dead-letters', { headers: { authorization: 'Basic abc' } })).status, 401);

    const auth = { authorization: `Bearer ${TOKEN}` };
    const stats = await service.fetch('/v1/stats?topic=orders', { headers: auth });
    assert.equal(stats.status, 200);
    const body = await json(stats);
    assert.equal(body.topics.length, 1);
    assert.equal(body.topics[0]!.topic, 'orders');
    assert.equal(body.topics[0]!.groups[0]!.group, 'shop');
    const letters = await service.fetch('/v1/dead-letters?topic=orders&limit=10', { headers: auth });
    assert.equal(letters.status, 200);
    assert.deepEqual(await json(letters), { deadLetters: [], next: null });
    const badQuery = await service.fetch('/v1/dead-letters?topik=orders', { headers: auth });
    assert.equal(badQuery.status, 400);
    assert.match((await json(badQuery)).message, /unknown query parameter "topik"/);
    // Publishing stays open unless http.publishRequiresToken says otherwise.
    assert.equal((await service.publish('inbox', { id: 'open-1', payload: 1 })).status, 202);
  });

  test('a poison message is dead-lettered at once and listed with its payload', async () => {
    assert.equal((await service.publish('orders', { key: 'k9', id: 'poison-1', payload: { poison: true } })).status, 202);
    const auth = { authorization: `Bearer ${TOKEN}` };
    let letters: DeadLetterAnswer[] = [];
    await waitFor('a dead letter', async () => {
      letters = (await json(await service.fetch('/v1/dead-letters?topic=orders&group=shop', { headers: auth }))).deadLetters;
      return letters.length === 1;
    });
    const [letter] = letters;
    assert.equal(letter!.id, 'poison-1');
    assert.equal(letter!.attempts, 1);
    assert.deepEqual(letter!.payload, { poison: true });
    assert.match(letter!.error.message, /poisoned on purpose/);

    const post = (path: string, body: unknown, headers: Record<string, string> = auth) =>
      service.fetch(path, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal((await post('/v1/dead-letters/redrive', { topic: 'orders' }, {})).status, 401, 'redrive is an admin route');
    const everything = await post('/v1/dead-letters/purge', {});
    assert.equal(everything.status, 400, 'an empty filter is refused without "all": true');
    assert.equal((await post('/v1/dead-letters/purge', { topik: 'orders' })).status, 400);
    // Redriven, the poison fails again and comes back as a new dead letter; then it is purged.
    assert.deepEqual(await json(await post('/v1/dead-letters/redrive', { topic: 'orders', key: 'k9' })), { redriven: 1 });
    await waitFor('dead-lettered again after the redrive', async () => {
      const again = (await json(await service.fetch('/v1/dead-letters?topic=orders&group=shop', { headers: auth }))).deadLetters;
      return again.length === 1 && again[0]!.dlqId !== letter!.dlqId;
    });
    assert.deepEqual(await json(await post('/v1/dead-letters/purge', { topic: 'orders', key: 'k9' })), { purged: 1 });
    assert.equal((await json(await service.fetch('/v1/dead-letters?topic=orders', { headers: auth }))).deadLetters.length, 0);
  });

  test('503 with Retry-After when a topic is at its maxBacklog; nothing stored', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await service.publish('limited', { id: `l-${i}`, payload: i })).status, 202);
    const full = await service.publish('limited', { id: 'l-5', payload: 5 });
    assert.equal(full.status, 503);
    assert.equal(full.headers.get('retry-after'), '5');
    assert.match((await json(full)).message, /maxBacklog of 5/);
    assert.equal(await retained(dir, 'limited'), 5);
  });

  test('SIGTERM stops it cleanly (exit 0)', async () => {
    const { code } = await service.stop('SIGTERM');
    assert.equal(code, 0);
    assert.match(service.output.join('\n'), /botqueue: stopped/);
  });
});

describe('botqueue start: the example echo bot', () => {
  const dir = tempDir();
  const outbox = join(dir, 'data', 'echo-bot', 'outbox.log');
  const replies = (): string[] => {
    try {
      return readFileSync(outbox, 'utf8')
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => l.split(' ').slice(1).join(' '));
    } catch {
      return [];
    }
  };

  test('counts per chat in order, replies once per update, dead-letters /poison, keeps counters across a restart', async () => {
    // A TypeScript config, loaded through tsx.
    writeFileSync(
      join(dir, 'botqueue.config.ts'),
      `export default {
        shutdownTimeoutMs: 5_000,
        topics: { updates: { partitions: 4 } },
        handlers: [{ topic: 'updates', module: ${JSON.stringify(ECHO_BOT)}, export: 'onUpdate', options: { group: 'echo-bot' } }],
      } satisfies Record<string, unknown>;\n`,
    );
    const env = serviceEnv(dir);
    let service = await startService(dir, env);
    assert.match(service.output.join('\n'), /admin auth\s+off: listening on loopback only because BOTQUEUE_ADMIN_TOKEN is not set/);
    const update = (chat: number, id: number, text: string): object => ({ key: `chat:${chat}`, id: `tg:${id}`, payload: { text } });
    assert.equal((await service.publish('updates', [update(1, 1, 'one'), update(2, 2, 'hello'), update(1, 3, 'two'), update(1, 4, '/poison'), update(1, 5, 'three')])).status, 202);
    assert.equal((await service.publish('updates', update(2, 6, 'again'))).status, 202);
    await waitFor('5 replies', () => replies().length >= 5);
    const byChat = (chat: string): string[] => replies().filter((r) => r.startsWith(`${chat} `));
    assert.deepEqual(byChat('chat:1'), ['chat:1 #1 one', 'chat:1 #2 two', 'chat:1 #3 three']);
    assert.deepEqual(byChat('chat:2'), ['chat:2 #1 hello', 'chat:2 #2 again']);
    const letters = await json(await service.fetch('/v1/dead-letters?topic=updates'));
    assert.deepEqual(
      letters.deadLetters.map((l) => [l.id, l.key, l.attempts]),
      [['tg:4', 'chat:1', 1]],
    );
    // A duplicate update (the platform retried its webhook) is stored once and answered once.
    const duplicate = await json(await service.publish('updates', update(1, 5, 'three')));
    assert.equal(duplicate.receipts[0]!.duplicate, true);
    assert.equal((await service.stop()).code, 0);

    service = await startService(dir, env);
    assert.equal((await service.publish('updates', update(1, 7, 'four'))).status, 202);
    await waitFor('the reply after the restart', () => byChat('chat:1').length === 4);
    assert.equal(byChat('chat:1')[3], 'chat:1 #4 four');
    assert.equal(replies().length, 6);
    assert.equal((await service.stop()).code, 0);
  });
});

describe('botqueue start: restarts and shutdown', () => {
  test('a restart keeps the backlog: messages stored while no handler ran are all handled after', async () => {
    const dir = tempDir();
    const log = join(dir, 'handled.log');
    writeJsonConfig(dir, { shutdownTimeoutMs: 5_000, topics: { jobs: { partitions: 8 } } });
    const env = serviceEnv(dir, { TEST_HANDLED_LOG: log });
    let service = await startService(dir, env);
    assert.match(service.output.join('\n'), /handlers\s+none/);
    for (let batch = 0; batch < 6; batch++) {
      const messages = Array.from({ length: 50 }, (_, i) => ({ key: `k${i % 10}`, id: `j-${batch * 50 + i}`, payload: { n: batch * 50 + i } }));
      assert.equal((await service.publish('jobs', messages)).status, 202);
    }
    assert.equal((await service.stop()).code, 0);
    assert.equal(await retained(dir, 'jobs'), 300);

    writeJsonConfig(dir, {
      shutdownTimeoutMs: 5_000,
      topics: { jobs: { partitions: 8 } },
      handlers: [{ topic: 'jobs', module: TEST_HANDLERS, export: 'record' }],
    });
    service = await startService(dir, env);
    await waitFor('300 handled', () => readHandled(log).length >= 300, 15_000);
    const handled = readHandled(log);
    assert.equal(handled.length, 300);
    assert.deepEqual(strictOrderProblems(handled), []);
    assert.equal((await service.stop()).code, 0);
  });

  test('SIGTERM during load loses nothing: every 202-acknowledged message is handled after a restart', async () => {
    const dir = tempDir();
    const log = join(dir, 'handled.log');
    writeJsonConfig(dir, {
      shutdownTimeoutMs: 5_000,
      topics: { load: { partitions: 8 } },
      handlers: [{ topic: 'load', module: TEST_HANDLERS, export: 'record', options: { concurrency: 4 } }],
    });
    const env = serviceEnv(dir, { TEST_HANDLED_LOG: log, TEST_HANDLER_SLEEP_MS: '2' });
    const service = await startService(dir, env);
    const acknowledged = new Set<string>();
    const refused = new Map<number | string, number>();
    let stopPublishing = false;
    const publishers = Array.from({ length: 8 }, async (_, p) => {
      for (let n = 0; !stopPublishing; n++) {
        const id = `p${p}-${n}`;
        try {
          const response = await service.publish('load', { key: `key${p}`, id, payload: { n } });
          await response.arrayBuffer();
          if (response.status === 202) acknowledged.add(id);
          else {
            refused.set(response.status, (refused.get(response.status) ?? 0) + 1);
            return; // keep each key's acknowledged messages a prefix of its sequence
          }
        } catch {
          refused.set('network', (refused.get('network') ?? 0) + 1);
          return;
        }
      }
    });
    await waitFor('400 acknowledged', () => acknowledged.size >= 400, 15_000);
    const stopped = service.stop('SIGTERM');
    const { code } = await stopped;
    stopPublishing = true;
    await Promise.all(publishers);
    assert.equal(code, 0, service.describe());
    assert.ok(acknowledged.size >= 400);

    const again = await startService(dir, env);
    await waitFor(
      'every acknowledged message handled',
      () => {
        const handled = new Set(readHandled(log).map((h) => h.id));
        return [...acknowledged].every((id) => handled.has(id));
      },
      20_000,
    );
    const handled = readHandled(log);
    assert.deepEqual(strictOrderProblems(handled), []);
    assert.equal((await again.stop()).code, 0);
  });

  test('the shutdown deadline holds with a stuck handler; its message is handled after a restart', async () => {
    const dir = tempDir();
    const log = join(dir, 'handled.log');
    writeJsonConfig(dir, {
      shutdownTimeoutMs: 1_500,
      topics: { slow: { partitions: 2 } },
      handlers: [{ topic: 'slow', module: TEST_HANDLERS, export: 'record', options: { leaseMs: 1_000 } }],
    });
    const service = await startService(dir, serviceEnv(dir, { TEST_HANDLED_LOG: log, TEST_HANDLER_SLEEP_MS: '60000' }));
    assert.equal((await service.publish('slow', { key: 'a', id: 'stuck-1', payload: { n: 1 } })).status, 202);
    await sleep(300); // the handler is running (and sleeping)
    const started = Date.now();
    const { code } = await service.stop('SIGTERM');
    const tookMs = Date.now() - started;
    assert.ok(tookMs < 3_000, `stopped in ${tookMs} ms`);
    assert.equal(code, 0, service.describe());
    assert.match(service.output.join('\n'), /interrupted, their messages will be handled again/);
    assert.deepEqual(readHandled(log), []);

    const again = await startService(dir, serviceEnv(dir, { TEST_HANDLED_LOG: log }));
    await waitFor('the interrupted message handled', () => readHandled(log).length === 1, 10_000);
    assert.equal(readHandled(log)[0]!.id, 'stuck-1');
    assert.equal((await again.stop()).code, 0);
  });
});

describe('botqueue start --workers N', () => {
  test('2 worker processes share the partitions; one SIGKILLed with handlers in flight is restarted, every acknowledged message is handled in order; SIGTERM stops them all', async () => {
    const dir = tempDir();
    const log = join(dir, 'handled.log');
    const spanLog = join(dir, 'spans.log');
    writeJsonConfig(dir, {
      shutdownTimeoutMs: 5_000,
      topics: { chats: { partitions: 8 } },
      handlers: [{ topic: 'chats', module: TEST_HANDLERS, export: 'record', options: { leaseMs: 1_500, concurrency: 8 } }],
    });
    const service = await startService(dir, serviceEnv(dir, { TEST_HANDLED_LOG: log, TEST_HANDLER_SPAN_LOG: spanLog, TEST_HANDLER_RANDOM_SLEEP_MS: '20' }), 2);
    const [, a, b] = await service.waitLine(/workers\s+2 processes \(pid (\d+), (\d+)\)/);
    const pids = [Number(a), Number(b)];
    assert.ok(pids.every(processAlive));

    const acknowledged = new Set<string>();
    let next = 0;
    /** 50 messages over 16 keys; n counts up across rounds, so each key's n increases in publish order. */
    const publishBatch = async (): Promise<void> => {
      const messages = Array.from({ length: 50 }, () => {
        const n = next++;
        return { key: `chat${n % 16}`, id: `m${n}`, payload: { n } };
      });
      const response = await service.publish('chats', messages);
      assert.equal(response.status, 202);
      for (const m of messages) acknowledged.add(m.id);
    };
    // The first process to start owns every partition until the second joins and the group rebalances.
    await waitFor('both processes owning partitions', async () => {
      const stats = await json(await service.fetch('/v1/stats?topic=chats'));
      const owners = new Set(stats.topics[0]?.groups[0]?.partitions.map((p) => p.owner?.split(':')[1]));
      return owners.size === 2 && pids.every((pid) => owners.has(String(pid)));
    }, 10_000);
    for (let batch = 0; batch < 4; batch++) await publishBatch();
    await waitFor('200 handled', () => readHandled(log).length >= 200, 15_000);
    const byPid = new Set(readHandled(log).map((h) => h.pid));
    assert.deepEqual([...byPid].sort(), [...pids].sort(), 'both worker processes handled messages');

    // Publishing goes on while the victim is killed with handlers running (started, not ended).
    let publishing = true;
    const publisher = (async () => {
      while (publishing && next < 3_000) {
        await publishBatch();
        await sleep(20);
      }
    })();
    const victim = pids[0]!;
    const inFlight = (): string[] => {
      const open = new Map<string, number>();
      for (const span of readSpans(spanLog)) if (span.pid === victim) open.set(span.id, (open.get(span.id) ?? 0) + (span.edge === 'start' ? 1 : -1));
      return [...open].filter(([, count]) => count > 0).map(([id]) => id);
    };
    await waitFor('the victim running at least 2 handlers', () => inFlight().length >= 2, 15_000);
    process.kill(victim, 'SIGKILL');
    const interrupted = inFlight();
    await service.waitLine(new RegExp(`worker process \\d \\(pid ${victim}\\) exited with signal SIGKILL; restarting it in 1 s`));
    const [, restartedPid] = await service.waitLine(/worker process \d restarted \(pid (\d+)\)/);
    assert.ok(processAlive(Number(restartedPid)));
    await sleep(500);
    publishing = false;
    await publisher;

    await waitFor('every acknowledged message handled', () => {
      const handled = new Set(readHandled(log).map((h) => h.id));
      return [...acknowledged].every((id) => handled.has(id));
    }, 30_000);
    const handled = readHandled(log);
    assert.deepEqual(firstHandlingOrderProblems(handled), [], 'every message first handled after all earlier ones of its key');
    assert.deepEqual(orderViolations(handled), []);
    assert.deepEqual(overlapProblems(readSpans(spanLog), new Set([victim])), [], 'no two handlers of one key at once, across the kill');
    const handledIds = new Set(handled.map((h) => h.id));
    for (const id of interrupted) assert.ok(handledIds.has(id), `${id}, interrupted by the kill, was handled after it`);
    assert.ok(handled.some((h) => h.pid === Number(restartedPid)) || handled.some((h) => h.pid === pids[1]), 'the survivors handled messages after the kill');

    assert.equal((await service.stop('SIGTERM')).code, 0);
    await waitFor('the worker processes gone', () => !processAlive(pids[1]!) && !processAlive(Number(restartedPid)), 5_000);
  });
});

describe('botqueue start: refusing to start', () => {
  test('a bad config exits 1 with one line naming the field', async () => {
    const dir = tempDir();
    writeJsonConfig(dir, { topics: { updates: { partitions: 0 } } });
    const service = new ServiceProcess(dir, serviceEnv(dir));
    const { code } = await service.exited;
    assert.equal(code, 1);
    assert.equal(service.stderr.trim(), 'botqueue start: botqueue.config.json: topics.updates.partitions must be an integer from 1 to 4096, got 0');
  });

  test('a handler export that does not exist: the worker process says so and start exits 1', async () => {
    const dir = tempDir();
    writeJsonConfig(dir, { topics: { jobs: {} }, handlers: [{ topic: 'jobs', module: TEST_HANDLERS, export: 'nope' }] });
    const service = new ServiceProcess(dir, serviceEnv(dir), 1);
    const { code } = await service.exited;
    assert.equal(code, 1);
    assert.match(service.stderr, /^botqueue start: worker process 1 could not start: handlers\[0\]\.export: .*handlers\.ts has no export "nope" \(it exports: record\)$/m);
  });

  test('a signal while starting stops what started and exits 0', async () => {
    const dir = tempDir();
    writeJsonConfig(dir, { topics: { jobs: {} }, handlers: [{ topic: 'jobs', module: TEST_HANDLERS, export: 'record' }] });
    const service = new ServiceProcess(dir, serviceEnv(dir));
    service.proc.stdin.end(); // the fixture sends itself SIGTERM when its stdin ends: before the start completes
    const { code } = await service.exited;
    assert.equal(code, 0, service.describe());
    assert.match(service.output.join('\n'), /SIGTERM received while starting; stopping/);
    assert.doesNotMatch(service.output.join('\n'), /botqueue is running/);
  });

  test('a non-loopback host without an admin token is refused', async () => {
    const dir = tempDir();
    const service = new ServiceProcess(dir, serviceEnv(dir, { BOTQUEUE_HOST: '0.0.0.0' }));
    const { code } = await service.exited;
    assert.equal(code, 1);
    assert.match(service.stderr, /BOTQUEUE_HOST is "0\.0\.0\.0", not a loopback address.*set BOTQUEUE_ADMIN_TOKEN/);
  });
});
