/**
 * Which senders `botqueue start` runs: one per platform whose send credentials are set; a
 * half-configured WhatsApp or an API root that is not a URL refuses to start, naming the variable.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { platformsFromEnv, platformSecrets } from '../../src/outbound/index.js';

test('a sender per platform whose credentials are set', () => {
  assert.deepEqual(platformsFromEnv({}), []);
  assert.deepEqual(platformsFromEnv({ TELEGRAM_BOT_TOKEN: '' }), [], 'an empty variable is not set');
  const all = platformsFromEnv({ TELEGRAM_BOT_TOKEN: 't', SLACK_BOT_TOKEN: 's', DISCORD_BOT_TOKEN: 'd', WHATSAPP_ACCESS_TOKEN: 'w', WHATSAPP_PHONE_NUMBER_ID: '1' });
  assert.deepEqual(all.map((p) => p.client.platform), ['telegram', 'slack', 'discord', 'whatsapp']);
  assert.deepEqual(all[0]!.limits.global, { limit: 30, windowMs: 1_000 });
});

test('half a WhatsApp configuration or a bad API root is refused with the variable named', () => {
  assert.throws(() => platformsFromEnv({ WHATSAPP_ACCESS_TOKEN: 'w' }), { code: 'BOTQUEUE_INVALID_OPTION', message: /WHATSAPP_PHONE_NUMBER_ID/ });
  assert.throws(() => platformsFromEnv({ TELEGRAM_BOT_TOKEN: 't', TELEGRAM_API_ROOT: 'api.telegram.org' }), { code: 'BOTQUEUE_INVALID_OPTION', message: /TELEGRAM_API_ROOT must be an http\(s\) URL/ });
});

test('the send credentials are secrets for the redactor', () => {
  assert.deepEqual(platformSecrets({ TELEGRAM_BOT_TOKEN: '1:abc', SLACK_BOT_TOKEN: 'xoxb-1', TELEGRAM_API_ROOT: 'http://x' }), ['1:abc', 'xoxb-1']);
});
