/**
 * The example bot takes Telegram updates: the repository's own botqueue.config.ts (what
 * `npm start` runs), with TELEGRAM_SECRET_TOKEN set, in a real `botqueue start` process.
 * Updates posted to /webhooks/telegram are counted per chat like those published to
 * /v1/topics/updates/messages; a Telegram retry is answered once; a sticker is not echoed.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ECHO_BOT, ROOT, ServiceProcess, cleanup, serviceEnv, tempDir, waitFor } from '../service/harness.js';
import { SECRETS, send, telegramRequest, telegramUpdate } from './harness.js';

after(cleanup);

test('npm start with TELEGRAM_SECRET_TOKEN: the echo bot counts Telegram updates per chat, in order, once each', async () => {
  const dir = tempDir();
  // The repository's config, its handler module made absolute for the temporary directory.
  const config = readFileSync(join(ROOT, 'botqueue.config.ts'), 'utf8')
    .replace("'./examples/echo-bot/handlers.ts'", JSON.stringify(ECHO_BOT))
    .replace(/^import type .*$/m, '')
    .replace('satisfies BotqueueConfigFile', '');
  writeFileSync(join(dir, 'botqueue.config.ts'), config);
  const service = new ServiceProcess(dir, serviceEnv(dir, { TELEGRAM_SECRET_TOKEN: SECRETS.TELEGRAM_SECRET_TOKEN }));
  await service.started();
  assert.match(service.output.join('\n'), /webhooks\s+POST \/webhooks\/telegram/);
  const outbox = join(dir, 'data', 'echo-bot', 'outbox.log');
  const replies = (): string[] => {
    try {
      return readFileSync(outbox, 'utf8').split('\n').filter((l) => l !== '').map((l) => l.split(' ').slice(1).join(' '));
    } catch {
      return [];
    }
  };
  const post = (update: object) => send(`${service.url}/webhooks/telegram`, telegramRequest(update));
  for (const [id, chat, text] of [[1, 42, 'hi'], [2, 7, 'hello'], [3, 42, 'how'], [4, 42, 'are you?']] as const) assert.equal((await post(telegramUpdate(id, chat, text))).status, 200);
  // Telegram's retry of update 3, and a sticker (no text).
  assert.equal((await post(telegramUpdate(3, 42, 'how'))).status, 200);
  assert.equal((await post({ update_id: 5, message: { message_id: 5, date: 1, chat: { id: 42, type: 'private' }, sticker: { file_id: 'x' } } })).status, 200);
  // The publish route still feeds the same bot.
  const published = await send(`${service.url}/v1/topics/updates/messages`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'chat:9', id: 'tg:x', payload: { text: 'plain' } }) });
  assert.equal(published.status, 202);
  await waitFor('5 replies', () => replies().length >= 5, 20_000);
  await new Promise((r) => setTimeout(r, 300));
  const of = (chat: string) => replies().filter((r) => r.startsWith(`${chat} `));
  assert.deepEqual(of('telegram:default:42'), ['telegram:default:42 #1 hi', 'telegram:default:42 #2 how', 'telegram:default:42 #3 are you?']);
  assert.deepEqual(of('telegram:default:7'), ['telegram:default:7 #1 hello']);
  assert.deepEqual(of('chat:9'), ['chat:9 #1 plain']);
  assert.equal(replies().length, 5);
  assert.equal((await service.stop()).code, 0);
});
