/**
 * `botqueue/grammy` with the real grammy package against a fake Bot API on loopback
 * (`client.apiRoot`): the example bot file (examples/grammy/bot.ts, a plain grammY bot but for
 * its start line) runs in its own process on a SQLite file; Telegram updates stored as the
 * gateway stores them are handled per chat in order, and its ctx.reply calls go out through
 * outbound.telegram. In-process: a redelivered update stores its replies once, and api:
 * 'direct' calls the API straight from the handler.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { Bot, InlineKeyboard, InputFile } from 'grammy';
import { connect } from '../../src/index.js';
import { runOnBotqueue } from '../../src/adapters/grammy.js';
import { startFakePlatforms } from '../support/fake-platforms.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'bq-grammy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function update(chat: number, id: number, text: string) {
  const entities = text.startsWith('/') ? [{ type: 'bot_command', offset: 0, length: text.split(' ')[0]!.length }] : undefined;
  return {
    key: `telegram:default:${chat}`,
    id: `telegram:default:${id}`,
    payload: { update_id: id, message: { message_id: id, date: 1_700_000_000, chat: { id: chat, type: 'private' }, from: { id: chat, is_bot: false, first_name: 'U' }, text, entities } },
    headers: { 'bq-platform': 'telegram', 'bq-chat': String(chat), 'bq-bot': 'default', 'bq-received-at': String(Date.now()) },
  };
}

describe('botqueue/grammy', () => {
  test('the example bot file is a plain grammY bot but for its start line', () => {
    const example = readFileSync(join(root, 'examples', 'grammy', 'bot.ts'), 'utf8').split('\n');
    const plain = readFileSync(join(root, 'test', 'outbound', 'fixtures', 'grammy-bot-plain.ts'), 'utf8').split('\n');
    const differs = example.filter((line) => !plain.includes(line));
    assert.deepEqual(differs, ["import { runOnBotqueue } from 'botqueue/grammy';", 'await runOnBotqueue(bot);']);
    assert.deepEqual(plain.filter((line) => !example.includes(line)), ['void bot.start();']);
  });

  test('the example bot runs unchanged in its own process: updates per chat in order, replies through the outbound queue', async () => {
    const fake = await startFakePlatforms();
    const file = join(dir, 'example.db');
    const bq = await connect(`sqlite:${file}`);
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'examples', 'grammy', 'bot.ts')], {
      cwd: root,
      env: { ...process.env, TELEGRAM_BOT_TOKEN: '777:GRAMMY', TELEGRAM_API_ROOT: fake.roots.telegram, BOTQUEUE_URL: `sqlite:${file}` },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    try {
      await bq.publishBatch('telegram', [update(11, 1, '/start'), update(12, 2, 'a'), update(11, 3, 'one'), update(11, 4, 'two'), update(12, 5, 'b'), update(11, 6, 'three')]);
      await fake.waitFor((r) => r.filter((x) => x.accepted).length >= 6, 30_000, 'six replies');
      const texts = (chat: string): unknown[] => fake.accepted().filter((r) => r.chat === chat).map((r) => r.body.text);
      assert.deepEqual(texts('11'), ['Welcome! You are visitor #1. Send me anything.', 'echo: one', 'echo: two', 'echo: three']);
      assert.deepEqual(texts('12'), ['echo: a', 'echo: b']);
      assert.ok(fake.accepted().every((r) => r.method === 'sendMessage' && r.auth === '777:GRAMMY'));
      assert.ok((await bq.stats('outbound.telegram')).length === 1, 'the replies went through outbound.telegram');
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await bq.close();
      await fake.close();
    }
  });

  test('in process: a redelivered update stores its replies once; api: direct calls the API from the handler', async () => {
    const fake = await startFakePlatforms();
    const bq = await connect(`sqlite:${join(dir, 'inproc.db')}`);
    try {
      const bot = new Bot('888:QUEUE', { client: { apiRoot: fake.roots.telegram } });
      let runs = 0;
      bot.on('message:text', async (ctx) => {
        const sent = await ctx.reply(`first ${ctx.message.text}`);
        assert.equal(sent.message_id, 0, 'a queued call resolves with a placeholder');
        await ctx.reply(`second ${ctx.message.text}`, { reply_markup: new InlineKeyboard().text('ok', 'ok-data') });
        if (runs === 1) await ctx.replyWithDocument(new InputFile(Buffer.from('a local file'), 'a.txt')).catch(() => undefined);
        if (++runs === 1) throw new Error('fails once, after replying');
      });
      const running = await runOnBotqueue(bot, { bq, worker: { backoffBaseMs: 10, backoffCapMs: 20 } });
      await bq.publish('telegram', update(21, 1, 'x'));
      await fake.waitFor((r) => r.filter((x) => x.accepted && x.method === 'sendMessage').length >= 2, 15_000, 'two replies');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(runs, 2, 'the update was handled twice');
      assert.deepEqual(fake.accepted().filter((r) => r.method === 'sendMessage').map((r) => r.body.text), ['first x', 'second x'], 'each reply sent once');
      assert.deepEqual(fake.accepted().filter((r) => r.method === 'sendMessage')[1]!.body.reply_markup, { inline_keyboard: [[{ text: 'ok', callback_data: 'ok-data' }]] }, 'a keyboard object is stored by its JSON form');
      assert.equal(fake.requests.filter((r) => r.method === 'sendDocument').length, 1, 'an upload of a local file went to the API directly (multipart), not through the queue');
      await running.stop();

      const direct = new Bot('999:DIRECT', { client: { apiRoot: fake.roots.telegram } });
      const results: number[] = [];
      direct.on('message:text', async (ctx) => {
        results.push((await ctx.reply('straight')).message_id);
      });
      const runningDirect = await runOnBotqueue(direct, { bq, api: 'direct', group: 'direct-bot' });
      await bq.publish('telegram', update(22, 2, 'y'));
      await fake.waitFor((r) => r.some((x) => x.body.text === 'straight'), 15_000, 'the direct reply');
      await runningDirect.stop();
      assert.ok(results[0]! > 0, 'a direct call resolves with the real message id');
    } finally {
      await bq.close();
      await fake.close();
    }
  });
});
