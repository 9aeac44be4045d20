/**
 * No password leaves botqueue. A password is put in the broker URL and in the store URL (in
 * `?store=`, raw and percent-encoded, and in BOTQUEUE_STORE_URL), then every output path is
 * searched for it: the errors of connect(), CLI errors (with --debug: stacks and causes) and the
 * `--json` error document, `botqueue doctor` (text and --json), and `botqueue start` (banner,
 * notes and JSON logs at debug level, of the gateway and of a worker process; also when it cannot
 * start).
 *
 * Each password holds a random stem of hex digits, which no encoding changes: looking for the
 * stem finds the password in any form (raw, percent-encoded once or twice, JSON-escaped). The
 * store's password also holds characters a URL must encode.
 *
 * The broker that works is a private RabbitMQ node whose guest user has the test's password (the
 * shared one's is "guest", the same as its user name); PostgreSQL is the shared one, whose trust
 * authentication ignores the password. Without them the suites that need them are skipped loudly
 * outside CI and fail in CI.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { after, before, describe, test } from 'node:test';
import { Names } from '../../src/brokers/rabbitmq/names.js';
import { dropPostgresSchema } from '../../src/stores/postgres/index.js';
import { connect } from '../../src/client.js';
import { waitFor } from '../conformance/harness.js';
import { findRabbitmqScripts, startPrivateRabbit, type PrivateRabbit } from '../support/private-rabbitmq.js';
import { missingServices, reportMissing, STORE_URL } from '../support/services.js';
import { runCli, spawnCli, workspace, type CliResult } from './helpers.js';

const AMQP_STEM = randomBytes(6).toString('hex');
const STORE_STEM = randomBytes(6).toString('hex');
/** Letters and digits only: the private node reads it from its config file. */
const AMQP_PASSWORD = `Amqp${AMQP_STEM}`;
const STORE_PASSWORD = `St@re:/${STORE_STEM}!`;
const namespace = `bqredact${process.pid}`;
/** Nothing listens on port 1. */
const NOWHERE = '127.0.0.1:1';
const HANDLERS = fileURLToPath(new URL('../service/fixtures/handlers.ts', import.meta.url));

/** The shared store's URL with the test's password in it (`host` to point it elsewhere). */
function storeUrl(host?: string): string {
  const url = new URL(STORE_URL);
  const where = host ?? url.host;
  return `postgres://${url.username || 'postgres'}:${encodeURIComponent(STORE_PASSWORD)}@${where}${url.pathname}`;
}

function amqpUrl(host: string, store?: { url: string; encoded: boolean }): string {
  const base = `amqp://guest:${AMQP_PASSWORD}@${host}?namespace=${namespace}`;
  if (store === undefined) return base;
  return `${base}&store=${store.encoded ? encodeURIComponent(store.url) : store.url}`;
}

function assertNoPassword(where: string, text: string): void {
  for (const [name, stem] of [
    ['the broker URL', AMQP_STEM],
    ['the store URL', STORE_STEM],
  ] as const) {
    assert.ok(!text.includes(stem), `${where} shows the password of ${name}:\n${text}`);
  }
}

function assertCliClean(what: string, result: CliResult): void {
  assertNoPassword(`${what} (stdout)`, result.stdout);
  assertNoPassword(`${what} (stderr)`, result.stderr);
}

// Awaited before any test is registered: the root's after() hooks would otherwise run when the
// tests registered before the await are done, removing the workspace under the later ones.
const missing = await missingServices();
const ws = workspace('redaction');
after(() => ws.cleanup());

/** The CLI with only the environment given (no BOTQUEUE_URL of the workspace). */
function cli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): Promise<CliResult> {
  return runCli(args, { cwd: ws.dir, env: { ...cleanEnv(), ...env }, input });
}

describe('no password where the store cannot be reached (no server needed)', () => {
  test('connect() errors: unreachable store, a bad URL parameter, an unsupported scheme', async () => {
    const urls = [
      amqpUrl(NOWHERE, { url: storeUrl(NOWHERE), encoded: false }),
      amqpUrl(NOWHERE, { url: storeUrl(NOWHERE), encoded: true }),
      `${amqpUrl(NOWHERE, { url: storeUrl(), encoded: true })}&prefetch=many`,
      `redis://user:${AMQP_PASSWORD}@${NOWHERE}?store=${encodeURIComponent(storeUrl())}`,
    ];
    for (const url of urls) {
      const error = await connect(url).then(
        (bq) => bq.close().then(() => assert.fail(`connect(${url}) succeeded`)),
        (e: unknown) => e,
      );
      assert.ok(error instanceof Error);
      assertNoPassword(`connect() error for ${url}`, `${error.message}\n${error.stack ?? ''}\n${inspect(error, { depth: 8 })}`);
    }
  });

  test('CLI errors, with --debug (stacks and causes), and the publish --json error document', async () => {
    const unreachableStore = { BOTQUEUE_URL: amqpUrl(NOWHERE), BOTQUEUE_STORE_URL: storeUrl(NOWHERE) };
    const runs: Array<[string, Promise<CliResult>]> = [
      ['stats, store in BOTQUEUE_STORE_URL', cli(['stats', '--debug'], unreachableStore)],
      ['stats --url, store in ?store= (raw)', cli(['stats', '--debug', '--url', amqpUrl(NOWHERE, { url: storeUrl(NOWHERE), encoded: false })])],
      ['stats --url, store in ?store= (encoded)', cli(['stats', '--debug', '--url', amqpUrl(NOWHERE, { url: storeUrl(NOWHERE), encoded: true })])],
      ['stats, a bad URL parameter', cli(['stats', '--url', `${amqpUrl(NOWHERE, { url: storeUrl(), encoded: true })}&prefetch=many`])],
      ['stats, an unsupported scheme', cli(['stats', '--debug', '--url', `redis://user:${AMQP_PASSWORD}@${NOWHERE}?store=${encodeURIComponent(storeUrl())}`])],
      ['publish --json', cli(['publish', 'orders', '--json'], unreachableStore, '{"payload":1}\n')],
    ];
    for (const [what, run] of runs) {
      const result = await run;
      assert.equal(result.code, 1, `${what}: ${result.stdout}${result.stderr}`);
      assert.match(result.stderr, /^botqueue: /, what);
      assertCliClean(what, result);
    }
  });

  test('botqueue doctor when the store cannot be reached, in text and --json', async () => {
    for (const args of [['doctor'], ['doctor', '--json']]) {
      const result = await cli(args, { BOTQUEUE_URL: amqpUrl(NOWHERE, { url: storeUrl(NOWHERE), encoded: true }) });
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stdout, /PostgreSQL store could not/);
      assertCliClean(args.join(' '), result);
    }
  });
});

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);

if (!reportMissing('no password in the output of botqueue on RabbitMQ', missing, register)) {
  after(() => dropPostgresSchema(STORE_URL, new Names(namespace).schema));

  describe('no password where RabbitMQ cannot be reached', () => {
    test('the error of connect()', async () => {
      const url = amqpUrl(NOWHERE, { url: storeUrl(), encoded: true });
      const error = await connect(url).then(
        (bq) => bq.close().then(() => assert.fail('connect() succeeded')),
        (e: unknown) => e,
      );
      assert.ok(error instanceof Error);
      assert.match(error.message, /cannot connect to RabbitMQ at amqp:\/\/guest:\*\*\*@127\.0\.0\.1:1/);
      assertNoPassword('the error of connect()', `${error.message}\n${error.stack ?? ''}\n${inspect(error, { depth: 8 })}`);
    });

    test('CLI errors and botqueue doctor', async () => {
      for (const [what, args, env] of [
        ['stats --debug, store in ?store=', ['stats', '--debug', '--url', amqpUrl(NOWHERE, { url: storeUrl(), encoded: true })], {}],
        ['stats --debug, store in BOTQUEUE_STORE_URL', ['stats', '--debug'], { BOTQUEUE_URL: amqpUrl(NOWHERE), BOTQUEUE_STORE_URL: storeUrl() }],
        ['doctor', ['doctor'], { BOTQUEUE_URL: amqpUrl(NOWHERE), BOTQUEUE_STORE_URL: storeUrl() }],
        // Unencoded in the query, the store URL loses its escapes and with them its host: it
        // cannot be reached either, and its mangled password must not show.
        ['doctor --json, store unencoded in ?store=', ['doctor', '--json', '--url', amqpUrl(NOWHERE, { url: storeUrl(), encoded: false })], {}],
      ] as const) {
        const result = await cli([...args], env);
        assert.equal(result.code, 1, `${what}: ${result.stdout}${result.stderr}`);
        assert.match(result.stdout + result.stderr, /cannot connect to RabbitMQ|PostgreSQL store could not/, what);
        assertCliClean(what, result);
      }
    });
  });

  if (!findRabbitmqScripts()) {
    const why = 'rabbitmq-server is not installed (looked in /usr/lib/rabbitmq/bin and on PATH), so no private node with a password';
    if (process.env.CI) test('no password in the output of botqueue start', () => assert.fail(`${why}; CI must have RabbitMQ (see .ci/services.sh)`));
    else {
      console.warn(`\n*** SKIPPING ${why} ***\n`);
      test('no password in the output of botqueue start', { skip: why }, () => undefined);
    }
  } else {
    describe('no password in the output of botqueue start and doctor on a working broker', { timeout: 180_000 }, () => {
      let rabbit: PrivateRabbit | undefined;
      const host = (): string => `127.0.0.1:${(rabbit ?? assert.fail('the private node did not start')).amqpPort}`;

      before(async () => {
        rabbit = await startPrivateRabbit({ password: AMQP_PASSWORD });
        writeFileSync(
          join(ws.dir, 'botqueue.config.json'),
          JSON.stringify({ shutdownTimeoutMs: 5_000, topics: { chats: { partitions: 2 } }, handlers: [{ topic: 'chats', module: HANDLERS, export: 'record' }] }),
        );
      });
      after(async () => {
        await rabbit?.destroy();
      });

      test('doctor passes, in text and --json', async () => {
        for (const args of [['doctor'], ['doctor', '--json']]) {
          const result = await cli([...args, '--url', amqpUrl(host(), { url: storeUrl(), encoded: true })]);
          assert.equal(result.code, 0, result.stdout + result.stderr);
          assertCliClean(args.join(' '), result);
        }
      });

      for (const form of ['?store= percent-encoded, handlers in a worker process', 'BOTQUEUE_STORE_URL, handlers in the service process'] as const) {
        test(`start with the store in ${form}: banner, notes and debug logs`, async () => {
          const inUrl = form.startsWith('?store=');
          const run = inUrl ? 'a' : 'b';
          const handled = join(ws.dir, `handled-${run}.log`);
          const env = {
            BOTQUEUE_URL: inUrl ? amqpUrl(host(), { url: storeUrl(), encoded: true }) : amqpUrl(host()),
            ...(inUrl ? {} : { BOTQUEUE_STORE_URL: storeUrl() }),
            BOTQUEUE_PORT: '0',
            BOTQUEUE_LOG_LEVEL: 'debug',
            TEST_HANDLED_LOG: handled,
          };
          const { stdout, stderr } = await runService(['start', ...(inUrl ? ['--workers', '1'] : [])], env, async (http) => {
            const published = await fetch(`${http}/v1/topics/chats/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'chat:1', id: run, payload: { n: 1 } }) });
            assert.equal(published.status, 202);
            // Refused requests are logged at debug level.
            const refused = await fetch(`${http}/v1/topics/chats/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"nope":1}' });
            assert.equal(refused.status, 400);
            await waitFor('the message handled', () => existsSync(handled) && readFileSync(handled, 'utf8').includes(` ${run} `), 20_000);
          });
          assert.match(stderr, /^\s+broker\s+amqp:\/\/guest:\*\*\*@127\.0\.0\.1:\d+\?namespace=/m, 'the banner shows the broker');
          if (inUrl) assert.match(stderr, /store=postgres%3A%2F%2Fpostgres%3A\*\*\*%40/, 'the banner shows the store, masked');
          assert.match(stdout, /"log\.level":"debug"/, 'debug lines were logged');
          if (inUrl) assert.match(stdout, /"botqueue\.role":"worker"/, 'the worker process logged');
          assertNoPassword('botqueue start (stdout)', stdout);
          assertNoPassword('botqueue start (stderr)', stderr);
        });
      }

      test('start that cannot reach the store: the error line and the error log', async () => {
        const { stdout, stderr, code } = await runUntilExit(['start'], { BOTQUEUE_URL: amqpUrl(host(), { url: storeUrl(NOWHERE), encoded: false }), BOTQUEUE_PORT: '0', BOTQUEUE_LOG_LEVEL: 'debug' });
        assert.equal(code, 1, stdout + stderr);
        assert.match(stderr, /PostgreSQL store could not/);
        assertNoPassword('botqueue start that failed (stdout)', stdout);
        assertNoPassword('botqueue start that failed (stderr)', stderr);
      });
    });
  }
}

/** Runs `botqueue <args>` until it exits on its own. */
async function runUntilExit(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnCli(args, { cwd: ws.dir, env: { ...cleanEnv(), ...env } });
  child.stdin.end();
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

/** Runs `botqueue start` until its banner is printed, calls `during` with its HTTP URL, stops it with SIGTERM; everything it printed. */
async function runService(args: string[], env: NodeJS.ProcessEnv, during: (http: string) => Promise<void>): Promise<{ stdout: string; stderr: string }> {
  const child = spawnCli(args, { cwd: ws.dir, env: { ...cleanEnv(), ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    await waitFor('the banner', () => {
      if (child.exitCode !== null) assert.fail(`botqueue start exited ${child.exitCode}:\n${stdout}\n${stderr}`);
      return /^\s+stop\s/m.test(stderr); // the banner is on stderr
    }, 30_000);
    await during(/^\s+http\s+(http:\/\/\S+)/m.exec(stderr)![1]!);
  } finally {
    child.kill('SIGTERM');
  }
  assert.equal(await closed, 0, `botqueue start did not stop cleanly:\n${stdout}\n${stderr}`);
  return { stdout, stderr };
}

/** The workspace's environment without its BOTQUEUE_URL. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...ws.env };
  delete env.BOTQUEUE_URL;
  return env;
}
