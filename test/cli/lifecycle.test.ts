/**
 * Lifecycle and the operator's CLI: groups and topics deleted (library on memory, SQLite and RabbitMQ,
 * CLI, admin API), a group with live members refused, idle groups (--idle-after) and waiting messages shown,
 * read-only commands that never create a store, undeclared topics refused when the config
 * declares topics, and the CLI talking to a running server with --server / BOTQUEUE_SERVER.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ErrorCodes, PermanentError, connect } from '../../src/index.js';
import { resolveConfig } from '../../src/service/config.js';
import { createHttpServer, listen } from '../../src/service/http.js';
import { createLogger } from '../../src/service/logger.js';
import { waitFor } from '../service/harness.js';
import { rabbitmqFactory } from '../conformance/rabbitmq-harness.js';
import { missingServices, reportMissing } from '../support/services.js';
import { cleanEnv, workspace } from './helpers.js';

const ws = workspace('lifecycle');
const TOKEN = 'lifecycle-admin-token-0123456789';
const closers: Array<() => Promise<unknown>> = [];
const rabbitmq = rabbitmqFactory('bqcl');
after(async () => {
  for (const close of closers.reverse()) await close();
  await rabbitmq.cleanup();
  ws.cleanup();
});

// The library's lifecycle on every backend; RabbitMQ (with its PostgreSQL store) when reachable.
const rabbitmqMissing = await missingServices();
const BACKENDS = ['memory', 'sqlite', ...(rabbitmqMissing === undefined ? (['rabbitmq'] as const) : [])] as const;
const urlOf = (backend: (typeof BACKENDS)[number], dir: string): string =>
  backend === 'memory' ? 'memory:' : backend === 'sqlite' ? `sqlite:${join(dir, 'bq.db')}` : rabbitmq.url();

describe('lifecycle', () => {
  reportMissing('lifecycle on RabbitMQ', rabbitmqMissing, test);
  for (const backend of BACKENDS) {
    test(`${backend}: deleteGroup refuses live members, then frees the group's messages; deleteTopic removes the topic`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'bq-lifecycle-'));
      closers.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
      const bq = await connect(urlOf(backend, dir));
      closers.push(() => bq.close());
      await bq.createTopic('t', { partitions: 2 });
      await bq.broker.ensureGroup('t', 'abandoned');
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      // Holds both messages until released, so the live group still needs them below.
      const worker = bq.worker('t', () => gate, { group: 'live', shutdownTimeoutMs: 5_000 });
      await worker.ready;
      await bq.publishBatch('t', [{ key: 'a', id: '1', payload: 1 }, { key: 'b', id: '2', payload: 2 }]);
      await assert.rejects(bq.deleteGroup('t', 'live'), { code: ErrorCodes.GROUP_HAS_MEMBERS });
      await assert.rejects(bq.deleteTopic('t'), { code: ErrorCodes.GROUP_HAS_MEMBERS });
      await assert.rejects(bq.deleteGroup('t', 'nope'), { code: ErrorCodes.GROUP_NOT_FOUND });
      await bq.deleteGroup('t', 'abandoned');
      const [stats] = await bq.stats('t');
      assert.deepEqual(stats!.groups.map((g) => g.group), ['live']);
      assert.equal(stats!.retained, 2, 'the live group still needs both messages');
      release();
      await worker.close();
      await waitFor('no live member', async () => (await bq.stats('t'))[0]!.groups[0]!.members === 0, 10_000);
      await bq.deleteGroup('t', 'live');
      assert.equal((await bq.stats('t'))[0]!.retained, 0, 'no group needs them (handled, or deleted with the group)');
      await bq.deleteTopic('t');
      assert.deepEqual(await bq.stats(), []);
      assert.equal(await bq.broker.getTopic('t'), undefined);
      // A new topic of the same name starts empty, and publishing to it works.
      await bq.createTopic('t', { partitions: 4 });
      await bq.publish('t', { key: 'a', id: '1', payload: 1 });
      assert.equal((await bq.stats('t'))[0]!.retained, 1, 'the id is new again: dedup records went with the topic');
    });
  }

  for (const backend of BACKENDS) {
    test(`${backend}: stats flags a group idle when no member was seen for idleAfterMs, and says when one was last seen`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'bq-idle-'));
      closers.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
      const bq = await connect(urlOf(backend, dir));
      closers.push(() => bq.close());
      await bq.createTopic('idle', { partitions: 2 });
      await bq.broker.ensureGroup('idle', 'never');
      const group = async (name: string, options?: { idleAfterMs?: number }) => (await bq.stats('idle', options))[0]!.groups.find((g) => g.group === name)!;
      assert.deepEqual([(await group('never')).lastSeenAt, (await group('never')).idle], [null, true], 'never joined: idle at once');

      const before = Date.now();
      const worker = bq.worker('idle', () => undefined, { group: 'w' });
      await worker.ready;
      const live = await group('w', { idleAfterMs: 0 });
      assert.equal(live.members, 1);
      assert.equal(live.idle, false, 'a live member is never idle, whatever idleAfterMs');
      assert.ok(live.lastSeenAt !== null && live.lastSeenAt >= before, `lastSeenAt ${live.lastSeenAt} after ${before}`);
      await worker.close();

      const left = await group('w');
      assert.equal(left.members, 0, 'the member left');
      assert.ok(left.lastSeenAt !== null && left.lastSeenAt >= live.lastSeenAt, 'last seen is kept after the member left');
      assert.equal(left.idle, false, 'seen a moment ago: not idle with the default 5 minutes');
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal((await group('w', { idleAfterMs: 200 })).idle, true, 'not seen for longer than idleAfterMs');
      assert.equal((await group('w', { idleAfterMs: 60_000 })).idle, false);
      await assert.rejects(bq.stats('idle', { idleAfterMs: -1 }), { code: ErrorCodes.INVALID_OPTION });
      await assert.rejects(bq.stats('idle', { idleAfter: 5 } as never), { code: ErrorCodes.INVALID_OPTION });
    });
  }

  test('CLI --idle-after and the admin API idleAfterMs', async () => {
    const bq = await ws.client();
    try {
      const worker = bq.worker('seen', () => undefined, { group: 'recent' });
      await worker.ready;
      await worker.close();
    } finally {
      await bq.close();
    }
    const recent = await ws.run(['stats', 'seen']);
    assert.equal(recent.code, 0, recent.stderr);
    assert.match(recent.stdout, /LAST SEEN/);
    assert.match(recent.stdout, /seen\s+recent\s+0\s.*\s0\s+(now|\d+ms ago|\d+s ago)/, recent.stdout);
    assert.doesNotMatch(recent.stdout, /idle/, 'seen a moment ago: not idle by default');
    const strict = await ws.run(['groups', 'list', '--idle-after', '0']);
    assert.equal(strict.code, 0, strict.stderr);
    assert.match(strict.stdout, /seen\s+recent\s.*0 \(idle\)/, strict.stdout);
    const json = (await ws.json(['stats', 'seen', '--json', '--idle-after', '1h'])) as { topics: Array<{ groups: Array<{ idle: boolean; lastSeenAt: number }> }> };
    assert.equal(json.topics[0]!.groups[0]!.idle, false);
    assert.equal(typeof json.topics[0]!.groups[0]!.lastSeenAt, 'number');
    const typo = await ws.run(['stats', '--idle-after', 'soon']);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /--idle-after must be a duration/);

    const server = await ws.client();
    closers.push(() => server.close());
    const config = resolveConfig({}, { cwd: ws.dir, env: {}, path: undefined, label: 'config' });
    const app = createHttpServer({ bq: server, config: { ...config, host: '127.0.0.1' }, logger: createLogger({ level: 'silent', role: 'gateway', destination: { write: () => undefined } }) });
    closers.push(() => app.close());
    const idleOf = async (query: string) => {
      const answer = await app.inject({ method: 'GET', url: `/v1/stats?topic=seen${query}` });
      assert.equal(answer.statusCode, 200, answer.body);
      return answer.json<{ topics: Array<{ groups: Array<{ idle: boolean }> }> }>().topics[0]!.groups[0]!.idle;
    };
    assert.equal(await idleOf(''), false);
    assert.equal(await idleOf('&idleAfterMs=0'), true);
    const bad = await app.inject({ method: 'GET', url: '/v1/stats?idleAfterMs=-5' });
    assert.equal(bad.statusCode, 400);
    await server.deleteTopic('seen'); // the workspace's other tests list its topics
  });

  test('read-only commands never create a store: a missing SQLite file names the path and BOTQUEUE_URL', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'bq-nostore-'));
    closers.push(() => Promise.resolve(rmSync(empty, { recursive: true, force: true })));
    const missing = join(empty, 'nothing-here.db');
    for (const args of [['stats'], ['topics', 'list'], ['groups', 'list'], ['dlq', 'list']]) {
      const result = await ws.run(args, { env: { BOTQUEUE_URL: `sqlite:${missing}` }, cwd: empty });
      assert.equal(result.code, 1, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, new RegExp(`no botqueue store at ${missing.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}.*from BOTQUEUE_URL`));
      assert.match(result.stderr, /BOTQUEUE_STORE_NOT_FOUND/);
      assert.equal(existsSync(missing), false, 'nothing created');
    }
  });

  test('stats shows waiting messages of a topic without groups and marks an idle group; groups/topics delete need --yes', async () => {
    const bq = await ws.client();
    try {
      await bq.publish('orphans', { id: 'o1', payload: 1 });
      await bq.publish('orphans', { id: 'o2', payload: 2 });
      await bq.createTopic('readme');
      await bq.broker.ensureGroup('readme', 'example');
      await bq.publish('readme', { id: 'r1', payload: 1 });
    } finally {
      await bq.close();
    }
    const stats = await ws.run(['stats']);
    assert.equal(stats.code, 0, stats.stderr);
    assert.match(stats.stdout, /orphans\s+\(no group\)\s+2 waiting/);
    assert.match(stats.stdout, /readme\s+example\s+1\s.*0 \(idle\)/);
    const refused = await ws.run(['groups', 'delete', 'readme', 'example']);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /--yes/);
    const deleted = await ws.run(['groups', 'delete', 'readme', 'example', '--yes']);
    assert.equal(deleted.code, 0, deleted.stderr);
    const topicGone = await ws.run(['topics', 'delete', 'orphans', '--yes']);
    assert.equal(topicGone.code, 0, topicGone.stderr);
    const list = (await ws.json(['topics', 'list', '--json'])) as { topics: Array<{ name: string; groups: string[] }> };
    assert.deepEqual(list.topics.map((t) => [t.name, t.groups]), [['readme', []]]);
  });

  test('--server: stats, dlq, groups and topics through a running server, from a directory without the store', async () => {
    const bq = await ws.client();
    closers.push(() => bq.close());
    const config = resolveConfig({}, { cwd: ws.dir, env: { BOTQUEUE_ADMIN_TOKEN: TOKEN, TELEGRAM_SECRET_TOKEN: 'tg-secret_0123456789' }, path: undefined, label: 'config' });
    const app = createHttpServer({ bq, config: { ...config, host: '127.0.0.1' }, logger: createLogger({ level: 'silent', role: 'gateway', destination: { write: () => undefined } }) });
    closers.push(() => app.close());
    const { url } = await listen(app, '127.0.0.1', 0);
    const worker = bq.worker(
      'remote',
      () => {
        throw new PermanentError('remote failure');
      },
      { group: 'far' },
    );
    await bq.publish('remote', { key: 'k', id: 'r-1', payload: { n: 1 } });
    await waitFor('a dead letter', async () => (await bq.deadLetters.list({ topic: 'remote' })).length === 1);
    await worker.close();

    const elsewhere = mkdtempSync(join(tmpdir(), 'bq-remote-'));
    closers.push(() => Promise.resolve(rmSync(elsewhere, { recursive: true, force: true })));
    const env = { ...cleanEnv(), BOTQUEUE_SERVER: url, BOTQUEUE_ADMIN_TOKEN: TOKEN };
    const run = (args: string[], extra: NodeJS.ProcessEnv = {}) => ws.run(args, { cwd: elsewhere, env: { ...env, BOTQUEUE_URL: '', ...extra } });

    const stats = await run(['stats', '--json']);
    assert.equal(stats.code, 0, stats.stderr);
    const topics = (JSON.parse(stats.stdout) as { topics: Array<{ topic: string; groups: Array<{ group: string; deadLetters: number }> }> }).topics;
    assert.equal(topics.find((t) => t.topic === 'remote')?.groups[0]?.deadLetters, 1);
    // Webhook requests the server refused show in stats (counted by the server, by platform and reason).
    for (let i = 0; i < 2; i++) {
      const refused = await fetch(`${url}/webhooks/telegram`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': 'wrong-token' }, body: '{"update_id":1}' });
      assert.equal(refused.status, 401);
    }
    const table = await run(['stats']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /webhooks refused: telegram bad_signature 2/);
    assert.deepEqual((JSON.parse((await run(['stats', '--json'])).stdout) as { webhooks: unknown }).webhooks, { rejected: { telegram: { bad_signature: 2 } } });
    const dlq = await run(['dlq', 'list']);
    assert.equal(dlq.code, 0, dlq.stderr);
    assert.match(dlq.stdout, /remote failure/);
    const purged = await run(['dlq', 'purge', '--topic', 'remote']);
    assert.equal(purged.code, 0, purged.stderr);
    assert.equal((await bq.deadLetters.list({ topic: 'remote' })).length, 0);
    const groupGone = await ws.run(['groups', 'delete', 'remote', 'far', '--yes', '--server', url], { cwd: elsewhere, env: { ...cleanEnv(), BOTQUEUE_ADMIN_TOKEN: TOKEN } });
    assert.equal(groupGone.code, 0, groupGone.stderr);
    assert.deepEqual((await bq.stats('remote'))[0]?.groups, []);
    const wrongToken = await run(['stats'], { BOTQUEUE_ADMIN_TOKEN: 'not-the-token-0123456789' });
    assert.equal(wrongToken.code, 1);
    assert.match(wrongToken.stderr, /401.*BOTQUEUE_UNAUTHORIZED/);
    assert.doesNotMatch(wrongToken.stderr, /not-the-token/);
    assert.equal(existsSync(join(elsewhere, 'data')), false, 'no store created where the CLI ran');
    // The admin API refuses to delete a group with live members (409).
    const busy = bq.worker('remote', () => undefined, { group: 'busy' });
    await busy.ready;
    const answer = await fetch(`${url}/v1/topics/remote/groups/busy`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(answer.status, 409);
    assert.equal(((await answer.json()) as { code: string }).code, ErrorCodes.GROUP_HAS_MEMBERS);
    await busy.close();
  });

  test('a config that declares topics refuses others with 404 naming the declared ones', async () => {
    const config = resolveConfig({ topics: { 'telegram.updates': {} } }, { cwd: ws.dir, env: {}, path: undefined, label: 'config' });
    const bq = await connect('memory:');
    closers.push(() => bq.close());
    const app = createHttpServer({ bq, config, logger: createLogger({ level: 'silent', role: 'gateway', destination: { write: () => undefined } }) });
    closers.push(() => app.close());
    const answer = await app.inject({ method: 'POST', url: '/v1/topics/telegram.update/messages', headers: { 'content-type': 'application/json' }, payload: { id: '1', payload: {} } });
    assert.equal(answer.statusCode, 404);
    assert.match(answer.body, /telegram\.updates/);
    assert.equal((await bq.stats()).length, 0, 'the mistyped topic was not created');
  });
});
