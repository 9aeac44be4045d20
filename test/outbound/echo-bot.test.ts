/**
 * `botqueue start` with TELEGRAM_BOT_TOKEN set (a real service process, its SQLite file): the
 * sender for outbound.telegram starts, and the example echo bot answers each Telegram update
 * (as the gateway stores it: topic `telegram`, the Update as payload, the bq-* headers) with
 * sendMessage `#<n> <text>` to its chat, in order, on a fake Bot API. Without the token it
 * writes its log file and starts no sender (test/service/start.test.ts).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ECHO_BOT, cleanup, serviceEnv, startService, tempDir } from '../service/harness.js';
import { startFakePlatforms } from '../support/fake-platforms.js';

after(cleanup);

test('with TELEGRAM_BOT_TOKEN the echo bot replies through sendMessage, per chat in order', async () => {
  const fake = await startFakePlatforms();
  try {
    const dir = tempDir();
    writeFileSync(
      join(dir, 'botqueue.config.ts'),
      `export default {
        shutdownTimeoutMs: 5_000,
        topics: { telegram: { partitions: 4 } },
        handlers: [{ topic: 'telegram', module: ${JSON.stringify(ECHO_BOT)}, export: 'onUpdate', options: { group: 'echo-bot' } }],
      };\n`,
    );
    const service = await startService(dir, serviceEnv(dir, { TELEGRAM_BOT_TOKEN: '4242:SECRET-token', TELEGRAM_API_ROOT: fake.roots.telegram }));
    const update = (chat: number, id: number, text: string): object => ({
      key: `telegram:default:${chat}`,
      id: `telegram:default:${id}`,
      payload: { update_id: id, message: { message_id: id, date: 1, chat: { id: chat, type: 'private' }, text } },
      headers: { 'bq-platform': 'telegram', 'bq-chat': String(chat), 'bq-bot': 'default', 'bq-received-at': String(Date.now()) },
    });
    const res = await service.publish('telegram', [update(7, 1, 'one'), update(8, 2, 'hello'), update(7, 3, 'two'), update(7, 4, 'three')]);
    assert.equal(res.status, 202);
    await fake.waitFor((r) => r.filter((x) => x.accepted).length >= 4, 20_000, 'four sendMessage calls');
    const sent = fake.accepted();
    assert.ok(sent.every((r) => r.method === 'sendMessage' && r.auth === '4242:SECRET-token'));
    assert.deepEqual(sent.filter((r) => r.chat === '7').map((r) => r.body.text), ['#1 one', '#2 two', '#3 three']);
    assert.deepEqual(sent.filter((r) => r.chat === '8').map((r) => r.body.text), ['#1 hello']);
    assert.equal((await service.stop()).code, 0);
    assert.ok(!service.output.join('\n').includes('SECRET-token'), 'the bot token is never printed');
  } finally {
    await fake.close();
  }
});
