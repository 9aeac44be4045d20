/**
 * The HTTP layer in-process (Fastify's inject) on the memory backend, for what is hard to
 * provoke through a real process: storage failures, a closed broker, the backlog figure's
 * refresh, settings that change the routes, and what the logs may contain.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { Botqueue, BotqueueError, ErrorCodes, connect, type Broker } from '../../src/index.js';
import { BacklogGate } from '../../src/service/backlog.js';
import { resolveConfig, type BotqueueConfigFile } from '../../src/service/config.js';
import { createHttpServer } from '../../src/service/http.js';
import { createLogger } from '../../src/service/logger.js';
import { waitFor } from './harness.js';

const TOKEN = 'test-admin-token-0123456789abcdef';
const open: Array<{ close(): Promise<unknown> }> = [];
after(async () => {
  for (const thing of open.reverse()) await thing.close();
});

function memoryLog(): { lines: string[]; destination: { write(line: string): void } } {
  const lines: string[] = [];
  return { lines, destination: { write: (line: string) => void lines.push(line) } };
}

async function server(file: BotqueueConfigFile, options: { env?: NodeJS.ProcessEnv; bq?: Botqueue; level?: string } = {}) {
  const config = resolveConfig(file, { cwd: process.cwd(), env: options.env ?? {}, path: undefined, label: 'config' });
  const bq = options.bq ?? (await connect('memory:'));
  const log = memoryLog();
  const logger = createLogger({ level: options.level ?? 'info', role: 'gateway', destination: log.destination });
  const app = createHttpServer({ bq, config, logger });
  open.push(bq, app);
  return { app, bq, log };
}

/** A broker whose every method works, except those overridden. */
function brokenBroker(real: Broker, overrides: Partial<Broker>): Broker {
  return new Proxy(real, {
    get(target, property, receiver) {
      if (Object.hasOwn(overrides, property)) return overrides[property as keyof Broker];
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

const post = (payload: unknown, headers: Record<string, string> = {}) => ({
  method: 'POST' as const,
  url: '/v1/topics/updates/messages',
  headers: { 'content-type': 'application/json', ...headers },
  payload: JSON.stringify(payload),
});

describe('HTTP server (in-process)', () => {
  test('storage failing answers 503 with Retry-After, never 2xx', async () => {
    const real = (await connect('memory:')).broker;
    const unavailable = new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'sqlite broker could not publish: disk I/O error (SQLITE_IOERR)', { retriable: true });
    const bq = new Botqueue(brokenBroker(real, { publish: () => Promise.reject(unavailable), getTopic: () => Promise.reject(unavailable) }), {
      maxMessageBytes: 262_144,
      defaultPartitions: 16,
      defaultDedupWindowMs: 86_400_000,
    });
    const { app, log } = await server({}, { bq });
    const response = await app.inject(post({ key: 'chat:1', id: 'a', payload: 1 }));
    assert.equal(response.statusCode, 503);
    assert.equal(response.headers['retry-after'], '1');
    assert.equal(response.json<{ code: string }>().code, 'BOTQUEUE_BROKER_UNAVAILABLE');
    assert.match(response.json<{ message: string }>().message, /nothing was stored, try again/);
    const ready = await app.inject({ method: 'GET', url: '/readyz' });
    assert.equal(ready.statusCode, 503);
    assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
    assert.ok(log.lines.some((l) => l.includes('"log.level":"error"') && l.includes('request failed')));
  });

  test('a closed client answers 503 on publish and /readyz', async () => {
    const { app, bq } = await server({});
    await bq.close();
    const response = await app.inject(post({ id: 'a', payload: 1 }));
    assert.equal(response.statusCode, 503);
    assert.equal(response.json<{ code: string }>().code, 'BOTQUEUE_CLOSED');
    assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 503);
  });

  test('http.publishRequiresToken puts the publish route behind the token', async () => {
    const { app, bq } = await server({ http: { publishRequiresToken: true } }, { env: { BOTQUEUE_ADMIN_TOKEN: TOKEN } });
    const refused = await app.inject(post({ id: 'a', payload: 1 }));
    assert.equal(refused.statusCode, 401);
    assert.deepEqual(await bq.stats('updates'), [], 'nothing stored, not even the topic');
    assert.equal((await app.inject(post({ id: 'a', payload: 1 }, { authorization: `Bearer ${TOKEN}` }))).statusCode, 202);
  });

  test('http.allowUndeclaredTopics: false refuses undeclared topics with 404', async () => {
    const { app } = await server({ topics: { updates: {} }, http: { allowUndeclaredTopics: false } });
    assert.equal((await app.inject(post({ id: 'a', payload: 1 }))).statusCode, 202);
    const other = await app.inject({ ...post({ id: 'b', payload: 1 }), url: '/v1/topics/other/messages' });
    assert.equal(other.statusCode, 404);
    assert.match(other.json<{ message: string }>().message, /topic "other" is not declared in the config/);
  });

  test('unknown routes answer 404 listing the routes', async () => {
    const { app } = await server({});
    const response = await app.inject({ method: 'GET', url: '/v1/topics' });
    assert.equal(response.statusCode, 404);
    assert.match(response.json<{ message: string }>().message, /no route GET \/v1\/topics; routes: POST \/v1\/topics\/:topic\/messages/);
  });

  test('logs at info never hold payloads, keys or tokens', async () => {
    const { app, bq, log } = await server({ topics: { updates: {} } }, { env: { BOTQUEUE_ADMIN_TOKEN: TOKEN, BOTQUEUE_HOST: '127.0.0.1' }, level: 'info' });
    assert.equal((await app.inject(post({ key: 'chat:SECRET-CHAT', id: 'm-1', payload: { text: 'SECRET-TEXT' } }))).statusCode, 202);
    assert.equal((await app.inject(post({ key: 'chat:SECRET-CHAT', id: '', payload: { text: 'SECRET-TEXT' } }))).statusCode, 400);
    assert.equal((await app.inject({ method: 'GET', url: '/v1/stats', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200);
    await bq.close();
    assert.equal((await app.inject(post({ key: 'chat:SECRET-CHAT', id: 'm-2', payload: { text: 'SECRET-TEXT' } }))).statusCode, 503);
    assert.ok(log.lines.length > 0, 'something was logged');
    for (const line of log.lines) {
      assert.doesNotMatch(line, /SECRET|test-admin-token/, line);
      const entry = JSON.parse(line) as Record<string, unknown>;
      assert.equal(typeof entry['@timestamp'], 'string');
      assert.equal(typeof entry['log.level'], 'string');
      assert.equal(typeof entry.message, 'string');
    }
  });
});

describe('BacklogGate', () => {
  test('reads the figure at most once per interval, counts what it accepted since, and lets publishing resume once handled', async () => {
    const bq = await connect('memory:');
    open.push(bq);
    let now = 1_000_000;
    let reads = 0;
    const counting = new Proxy(bq, {
      get(target, property, receiver) {
        if (property === 'stats') {
          return (topic?: string) => {
            reads++;
            return target.stats(topic);
          };
        }
        return Reflect.get(target, property, receiver) as unknown;
      },
    });
    const logger = createLogger({ level: 'silent', role: 'gateway', destination: memoryLog().destination });
    const gate = new BacklogGate(counting, new Map([['jobs', 3]]), logger, 1_000, () => now);
    assert.equal(await gate.over('other'), undefined, 'no limit, no read');
    assert.equal(reads, 0);

    for (let i = 0; i < 3; i++) {
      assert.equal(await gate.over('jobs'), undefined);
      await bq.publish('jobs', { id: `j-${i}`, payload: i });
      gate.accepted('jobs', 1);
    }
    assert.equal(reads, 1, 'one read for three checks');
    assert.deepEqual(await gate.over('jobs'), { estimate: 3, limit: 3 });

    const worker = bq.worker('jobs', () => undefined);
    await waitFor('handled', async () => (await bq.stats('jobs'))[0]?.retained === 0);
    await worker.close();
    assert.deepEqual(await gate.over('jobs'), { estimate: 3, limit: 3 }, 'the figure is not read again within the interval');
    now += 1_000;
    await gate.over('jobs'); // starts a refresh in the background
    await waitFor('the refreshed figure', async () => (await gate.over('jobs')) === undefined);
    assert.equal(reads, 2);
  });
});
