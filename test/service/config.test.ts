/**
 * loadConfig: where the config comes from, what the environment overrides, and errors that
 * name the bad field.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { isBotqueueError } from '../../src/index.js';
import { isLoopback, loadConfig, resolveSqliteUrl, type BotqueueConfig } from '../../src/service/config.js';
import { NO_WEBHOOKS } from '../../src/gateway/config.js';
import { TEST_HANDLERS, cleanup, tempDir } from './harness.js';

after(cleanup);

function dirWith(files: Record<string, string | object>): string {
  const dir = tempDir();
  for (const [name, content] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), typeof content === 'string' ? content : JSON.stringify(content));
  }
  return dir;
}

async function configError(files: Record<string, string | object>, env: NodeJS.ProcessEnv = {}, path?: string): Promise<string> {
  const dir = dirWith(files);
  try {
    await loadConfig({ cwd: dir, env, path });
  } catch (error) {
    assert.ok(isBotqueueError(error, 'BOTQUEUE_INVALID_OPTION'), `a BOTQUEUE_INVALID_OPTION error, got ${String(error)}`);
    return error.message;
  }
  assert.fail('loadConfig should have failed');
}

const handler = (extra: object = {}): object => ({ topic: 'updates', module: TEST_HANDLERS, export: 'record', ...extra });

describe('loadConfig', () => {
  test('no config file: the defaults, no topics, no handlers', async () => {
    const dir = tempDir();
    const config = await loadConfig({ cwd: dir, env: {} });
    assert.deepEqual(config, {
      url: `sqlite:${join(dir, 'data', 'botqueue.db')}`,
      host: '127.0.0.1',
      port: 3000,
      adminToken: undefined,
      logLevel: 'info',
      shutdownTimeoutMs: 30_000,
      maxMessageBytes: 262_144,
      topics: {},
      handlers: [],
      configPath: undefined,
      http: { publishRequiresToken: false, maxBatch: 1000, bodyLimitBytes: 4 * 262_144 + 65_536, allowUndeclaredTopics: true },
      webhooks: NO_WEBHOOKS,
    } satisfies BotqueueConfig);
  });

  test('a JSON config: topics with defaults filled in, handler paths resolved against the file, options completed', async () => {
    const dir = dirWith({
      'conf/bq.json': {
        shutdownTimeoutMs: 10_000,
        topics: { updates: { partitions: 4, onExhausted: 'park-key', maxBacklog: 1000 }, 'outbox.telegram': {} },
        handlers: [{ topic: 'updates', module: '../bot/handlers.ts', export: 'onUpdate', options: { group: 'bot', concurrency: 8 } }],
      },
      'bot/handlers.ts': 'export const onUpdate = () => undefined;\n',
    });
    const config = await loadConfig({ cwd: dir, env: {}, path: 'conf/bq.json' });
    assert.equal(config.configPath, join(dir, 'conf', 'bq.json'));
    assert.deepEqual(config.topics, {
      updates: { partitions: 4, dedupWindowMs: 86_400_000, onExhausted: 'park-key', maxBacklog: 1000 },
      'outbox.telegram': { partitions: 16, dedupWindowMs: 86_400_000, onExhausted: 'dead-letter', maxBacklog: undefined },
    });
    assert.deepEqual(config.handlers, [
      { topic: 'updates', module: join(dir, 'bot', 'handlers.ts'), export: 'onUpdate', options: { group: 'bot', concurrency: 8, onExhausted: 'park-key', shutdownTimeoutMs: 8_000 } },
    ]);
  });

  test('a TypeScript config (through tsx) and a JavaScript one exporting a function', async () => {
    const ts = dirWith({ 'botqueue.config.ts': "const port: number = 4000;\nexport default { port, topics: { updates: {} } };\n" });
    assert.equal((await loadConfig({ cwd: ts, env: {} })).port, 4000);
    const mjs = dirWith({ 'botqueue.config.mjs': 'export default async () => ({ logLevel: "debug" });\n' });
    assert.equal((await loadConfig({ cwd: mjs, env: {} })).logLevel, 'debug');
  });

  test('environment variables override the file; relative sqlite paths are resolved against cwd', async () => {
    const dir = dirWith({ 'botqueue.config.json': { url: 'memory:', port: 4000, logLevel: 'warn' } });
    const config = await loadConfig({
      cwd: dir,
      env: { BOTQUEUE_URL: 'sqlite:./state/q.db?synchronous=NORMAL', BOTQUEUE_PORT: '0', BOTQUEUE_LOG_LEVEL: 'DEBUG', BOTQUEUE_ADMIN_TOKEN: 'a-token-of-32-characters-0123456' },
    });
    assert.equal(config.url, `sqlite:${join(dir, 'state', 'q.db')}?synchronous=NORMAL`);
    assert.equal(config.port, 0);
    assert.equal(config.logLevel, 'debug');
    assert.equal(config.adminToken, 'a-token-of-32-characters-0123456');
    assert.equal(config.host, '0.0.0.0', 'with a token, all interfaces by default');
    const pinned = await loadConfig({ cwd: dir, env: { BOTQUEUE_ADMIN_TOKEN: 'a-token-of-32-characters-0123456', BOTQUEUE_HOST: '127.0.0.1' } });
    assert.equal(pinned.host, '127.0.0.1');
    assert.equal(pinned.url, 'memory:');
    assert.equal((await loadConfig({ cwd: dir, env: { BOTQUEUE_URL: '' } })).url, 'memory:', 'an empty variable counts as unset');
  });

  test('errors name the bad field', async () => {
    const cases: Array<[Record<string, string | object>, NodeJS.ProcessEnv, RegExp]> = [
      [{ 'botqueue.config.json': { topics: { updates: { partitions: 0 } } } }, {}, /^botqueue\.config\.json: topics\.updates\.partitions must be an integer from 1 to 4096, got 0$/],
      [{ 'botqueue.config.json': { topic: {} } }, {}, /^botqueue\.config\.json: topic is not a known field \(did you mean "topics"\?\); known fields: url, host/],
      [{ 'botqueue.config.json': { topics: { updates: { partitons: 4 } } } }, {}, /topics\.updates\.partitons is not a known field \(did you mean "partitions"\?\)/],
      [{ 'botqueue.config.json': { topics: { 'bad name': {} } } }, {}, /topics\["bad name"\] is not a valid topic name/],
      [{ 'botqueue.config.json': { topics: { updates: { onExhausted: 'drop' } } } }, {}, /topics\.updates\.onExhausted must be one of 'dead-letter', 'park-key', got "drop"/],
      [{ 'botqueue.config.json': { topics: { updates: { maxBacklog: 0 } } } }, {}, /topics\.updates\.maxBacklog must be an integer >= 1, got 0/],
      [{ 'botqueue.config.json': { handlers: {} } }, {}, /handlers must be an array/],
      [{ 'botqueue.config.json': { handlers: [handler()] } }, {}, /handlers\[0\]\.topic names topic "updates", which is not declared in topics \(none declared\)/],
      [{ 'botqueue.config.json': { topics: { updates: {} }, handlers: [handler({ module: './nope.ts' })] } }, {}, /handlers\[0\]\.module names "\.\/nope\.ts", but there is no file at .*nope\.ts/],
      [{ 'botqueue.config.json': { topics: { updates: {} }, handlers: [handler({ options: { concurency: 4 } })] } }, {}, /handlers\[0\]\.options: unknown option "concurency" \(did you mean "concurrency"\?\)/],
      [{ 'botqueue.config.json': { topics: { updates: {} }, handlers: [handler({ options: { maxAttempts: 0 } })] } }, {}, /handlers\[0\]\.options: option "maxAttempts" must be at least 1, got 0/],
      [{ 'botqueue.config.json': { topics: { updates: { onExhausted: 'park-key' } }, handlers: [handler({ options: { onExhausted: 'dead-letter' } })] } }, {}, /handlers\[0\]\.options\.onExhausted is 'dead-letter' but topics\.updates\.onExhausted is 'park-key'/],
      [{ 'botqueue.config.json': { shutdownTimeoutMs: 1000, topics: { updates: {} }, handlers: [handler({ options: { shutdownTimeoutMs: 2000 } })] } }, {}, /handlers\[0\]\.options\.shutdownTimeoutMs \(2000\) must not exceed shutdownTimeoutMs \(1000\)/],
      [{ 'botqueue.config.json': { topics: { updates: {} }, handlers: [handler(), handler()] } }, {}, /handlers\[1\] handles topic "updates" in group "default" like handlers\[0\]/],
      [{ 'botqueue.config.json': { port: 70000 } }, {}, /botqueue\.config\.json: port must be an integer from 0 to 65535, got 70000/],
      [{ 'botqueue.config.json': { host: '0.0.0.0' } }, {}, /botqueue\.config\.json: host is "0\.0\.0\.0", not a loopback address, and no admin token is set: set BOTQUEUE_ADMIN_TOKEN/],
      [{ 'botqueue.config.json': { http: { publishRequiresToken: true } } }, {}, /http\.publishRequiresToken is true but no admin token is set/],
      [{ 'botqueue.config.json': { http: { maxBatch: 'all' } } }, {}, /http\.maxBatch must be an integer from 1 to 100000, got "all"/],
      [{}, { BOTQUEUE_HOST: '10.0.0.5' }, /^BOTQUEUE_HOST is "10\.0\.0\.5", not a loopback address, and no admin token is set: set BOTQUEUE_ADMIN_TOKEN/],
      [{}, { BOTQUEUE_PORT: 'http' }, /^BOTQUEUE_PORT must be an integer from 0 to 65535 \(0: any free port\), got "http"$/],
      [{}, { BOTQUEUE_LOG_LEVEL: 'loud' }, /^BOTQUEUE_LOG_LEVEL must be one of 'fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent', got "loud"$/],
      [{}, { BOTQUEUE_ADMIN_TOKEN: 'secret' }, /^BOTQUEUE_ADMIN_TOKEN must be at least 16 characters \(got 6\)/],
      [{ 'botqueue.config.json': '{ "topics": ' }, {}, /^botqueue\.config\.json is not valid JSON: /],
      [{ 'botqueue.config.json': [] }, {}, /^botqueue\.config\.json: the default export must be an object, got an array/],
      [{ 'botqueue.config.mjs': 'export const topics = {};\n' }, {}, /^botqueue\.config\.mjs has no default export/],
      [{ 'botqueue.config.mjs': 'export default {};\n', 'botqueue.config.json': {} }, {}, /^found several config files in .*: botqueue\.config\.mjs, botqueue\.config\.json; keep one/],
    ];
    for (const [files, env, expected] of cases) assert.match(await configError(files, env), expected);
    assert.match(await configError({}, {}, 'missing.ts'), /^config file not found: .*missing\.ts$/);
  });
});

describe('config helpers', () => {
  test('resolveSqliteUrl makes relative paths absolute and keeps the rest', () => {
    assert.equal(resolveSqliteUrl('sqlite:./data/q.db', '/srv/bot'), 'sqlite:/srv/bot/data/q.db');
    assert.equal(resolveSqliteUrl('sqlite:q.db?busyTimeoutMs=100', '/srv/bot'), 'sqlite:/srv/bot/q.db?busyTimeoutMs=100');
    assert.equal(resolveSqliteUrl('sqlite:my%20dir/q.db', '/srv'), 'sqlite:/srv/my dir/q.db');
    assert.equal(resolveSqliteUrl('sqlite:/abs/q.db', '/srv'), 'sqlite:/abs/q.db');
    assert.equal(resolveSqliteUrl('sqlite:///abs/q.db', '/srv'), 'sqlite:///abs/q.db');
    assert.equal(resolveSqliteUrl('sqlite::memory:', '/srv'), 'sqlite::memory:');
    assert.equal(resolveSqliteUrl('memory:', '/srv'), 'memory:');
  });

  test('isLoopback', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) assert.ok(isLoopback(host), host);
    for (const host of ['0.0.0.0', '::', '10.0.0.1', 'example.com', '128.0.0.1']) assert.ok(!isLoopback(host), host);
  });
});
