/**
 * The `webhooks` config: secrets from the environment (overriding the file), each checked where
 * it enters, typos refused; the secrets reach the redactor; the banner lists what is mounted.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isBotqueueError } from '../../src/index.js';
import { mountedRoutes, resolveWebhooks } from '../../src/gateway/config.js';
import { resolveConfig } from '../../src/service/config.js';
import { settingsSecrets } from '../../src/service/secrets.js';
import { summaryLines } from '../../src/service/summary.js';
import { SECRETS } from './harness.js';

function refused(input: unknown, env: NodeJS.ProcessEnv = {}): string {
  try {
    resolveWebhooks(input, env, 'botqueue.config.json');
  } catch (error) {
    assert.ok(isBotqueueError(error, 'BOTQUEUE_INVALID_OPTION'), String(error));
    return error.message;
  }
  return assert.fail('should have been refused');
}

describe('webhooks config', () => {
  test('nothing set: nothing mounted, a 1 MiB body limit', () => {
    const config = resolveWebhooks(undefined, {}, 'config');
    assert.equal(config.bodyLimitBytes, 1_048_576);
    assert.deepEqual(mountedRoutes(config), []);
  });

  test('every secret from the environment mounts its route; topics default to the platform name', () => {
    const config = resolveWebhooks(undefined, { ...SECRETS }, 'config');
    assert.deepEqual(mountedRoutes(config), ['POST /webhooks/telegram[/:bot]', 'POST /webhooks/slack', 'POST /webhooks/discord', 'GET+POST /webhooks/whatsapp', 'POST /webhooks/generic/:topic']);
    assert.equal(config.telegram?.topic, 'telegram');
    assert.equal(config.whatsapp?.topic, 'whatsapp');
  });

  test('the environment overrides the file; topics and the body limit come from the file', () => {
    const config = resolveWebhooks({ bodyLimitBytes: 2048, telegram: { secretToken: 'from-file', topic: 'updates' } }, { TELEGRAM_SECRET_TOKEN: 'from-env' }, 'config');
    assert.deepEqual(config.telegram, { secretToken: 'from-env', topic: 'updates' });
    assert.equal(config.bodyLimitBytes, 2048);
  });

  test('bad values are refused, naming the field', () => {
    assert.match(refused({ telegram: { secretToken: 'has space' } }), /secretToken.*A-Z, a-z, 0-9, _ and -/);
    assert.match(refused(undefined, { DISCORD_PUBLIC_KEY: 'abcd' }), /DISCORD_PUBLIC_KEY.*64 hex/);
    assert.match(refused(undefined, { BOTQUEUE_WEBHOOK_SECRET: 'short' }), /at least 16 characters/);
    assert.match(refused({ slack: { signingSecrte: 'x' } }), /webhooks\.slack\.signingSecrte is not a known field/);
    assert.match(refused({ bodyLimitBytes: 10 }), /bodyLimitBytes must be an integer/);
    assert.match(refused({ telegram: { polling: true } }), /no bot token is set: set TELEGRAM_BOT_TOKEN/);
    assert.match(refused({ telegram: { topic: 'bad topic' } }), /webhooks\.telegram\.topic is not a valid topic name/);
    assert.match(refused(undefined, { TELEGRAM_POLLING: 'yes' }), /TELEGRAM_POLLING must be true or false/);
  });

  test('Telegram polling: token, API root and bot name', () => {
    const config = resolveWebhooks({ telegram: { bot: 'shop' } }, { TELEGRAM_POLLING: 'true', TELEGRAM_BOT_TOKEN: '1:abc', TELEGRAM_API_ROOT: 'http://127.0.0.1:8081/' }, 'config');
    assert.deepEqual(config.telegramPolling, { botToken: '1:abc', apiRoot: 'http://127.0.0.1:8081', bot: 'shop', topic: 'telegram', timeoutS: 30 });
  });

  test('the secrets join the redactor, from the environment and the file', () => {
    const config = resolveConfig({ webhooks: { slack: { signingSecret: 'file-slack-secret' } } }, { cwd: process.cwd(), env: { WHATSAPP_APP_SECRET: 'env-wa-secret' }, path: undefined, label: 'config' });
    const secrets = settingsSecrets({ WHATSAPP_APP_SECRET: 'env-wa-secret', TELEGRAM_BOT_TOKEN: '1:tok' }, config);
    for (const secret of ['file-slack-secret', 'env-wa-secret', '1:tok']) assert.ok(secrets.includes(secret), secret);
  });

  test('the start banner lists the mounted webhook routes and never a secret', () => {
    const config = resolveConfig({}, { cwd: process.cwd(), env: { SLACK_SIGNING_SECRET: SECRETS.SLACK_SIGNING_SECRET }, path: undefined, label: 'config' });
    const lines = summaryLines(config, { url: 'http://127.0.0.1:3000', address: '127.0.0.1', port: 3000, keptDedupWindows: [], workerPids: [] }, 0, process.cwd()).join('\n');
    assert.match(lines, /webhooks\s+POST \/webhooks\/slack/);
    assert.ok(!lines.includes(SECRETS.SLACK_SIGNING_SECRET));
    const none = resolveConfig({}, { cwd: process.cwd(), env: {}, path: undefined, label: 'config' });
    assert.match(summaryLines(none, { url: 'x', address: '127.0.0.1', port: 1, keptDedupWindows: [], workerPids: [] }, 0, process.cwd()).join('\n'), /webhooks\s+none mounted/);
  });
});
