/**
 * ctx.reply, ctx.publish and bq.send, on a real SQLite file: a reply goes to outbound.<platform>
 * keyed by the chat the gateway's headers name; a handler that fails after publishing and is
 * redelivered publishes the same derived ids (stored once); a message without the headers is
 * refused with BOTQUEUE_NO_REPLY_ADDRESS; bad input to bq.send is refused with a code.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, type Envelope } from '../../src/index.js';
import type { OutboundPayload } from '../../src/outbound/index.js';

const dir = mkdtempSync(join(tmpdir(), 'bq-reply-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Every message of a topic, read by a group of its own. */
async function drain<P>(bq: Awaited<ReturnType<typeof connect>>, topic: string, count: number): Promise<Envelope<P>[]> {
  const seen: Envelope<P>[] = [];
  let done: () => void = () => undefined;
  const all = new Promise<void>((r) => (done = r));
  const worker = bq.worker<P>(topic, (m) => {
    seen.push(m);
    if (seen.length >= count) done();
  }, { group: 'probe' });
  await Promise.race([all, new Promise((_, reject) => setTimeout(() => reject(new Error(`only ${seen.length} of ${count} on ${topic}`)), 10_000))]);
  await new Promise((r) => setTimeout(r, 200)); // a duplicate would arrive now
  await worker.close();
  return seen;
}

const telegramHeaders = { 'bq-platform': 'telegram', 'bq-chat': '42', 'bq-bot': 'default', 'bq-received-at': String(Date.now()) };

describe('ctx.reply, ctx.publish, bq.send', () => {
  test('a handler that fails after replying and publishing is redelivered, and its messages are stored once', async () => {
    const bq = await connect(`sqlite:${join(dir, 'a.db')}`);
    try {
      const attempts: number[] = [];
      const published: string[] = [];
      bq.events.on('published', (e) => published.push(`${e.topic} ${e.messages}`));
      const worker = bq.worker('telegram', async (msg, ctx) => {
        attempts.push(ctx.attempt);
        await ctx.reply(`you said ${(msg.payload as { message: { text: string } }).message.text}`);
        await ctx.reply({ text: '*second*', parse_mode: 'MarkdownV2' });
        await ctx.publish('audit', { key: 'chat:42', payload: { seen: msg.id } });
        if (ctx.attempt === 1) throw new Error('crash after publishing');
      }, { group: 'bot', backoffBaseMs: 10, backoffCapMs: 20 });
      await bq.publish('telegram', { key: 'telegram:default:42', id: 'tg:1', payload: { update_id: 1, message: { text: 'hi', chat: { id: 42 } } }, headers: telegramHeaders });
      const replies = await drain<OutboundPayload>(bq, 'outbound.telegram', 2);
      const audit = await drain(bq, 'audit', 1);
      await worker.close();
      assert.deepEqual(attempts, [1, 2]);
      assert.equal(replies.length, 2, 'two replies, each stored once although the handler ran twice');
      assert.deepEqual(replies.map((r) => [r.key, r.payload.chat, r.payload.body]), [
        ['42', '42', { text: 'you said hi' }],
        ['42', '42', { text: '*second*', parse_mode: 'MarkdownV2' }],
      ]);
      assert.deepEqual(replies.map((r) => r.id), ['telegram/bot/tg:1/reply:1', 'telegram/bot/tg:1/reply:2']);
      assert.equal(replies[0]!.headers['bq-platform'], 'telegram');
      assert.equal(audit.length, 1);
      assert.equal(audit[0]!.id, 'telegram/bot/tg:1/publish:1');
      // Stored with the successful attempt's ack, and counted then (the failed attempt stored none).
      assert.deepEqual(published.filter((p) => !p.startsWith('telegram ')).sort(), ['audit 1', 'outbound.telegram 1', 'outbound.telegram 1']);
    } finally {
      await bq.close();
    }
  });

  test('on SQLite a publish the handler did not await is still stored with the ack, and one it caught does not fail the attempt', async () => {
    const bq = await connect(`sqlite:${join(dir, 'staged.db')}`);
    try {
      const attempts: number[] = [];
      const caught: string[] = [];
      const worker = bq.worker('in', async (msg, ctx) => {
        attempts.push(ctx.attempt);
        void ctx.publish('audit', { key: 'k', payload: { of: msg.id } }); // not awaited
        await ctx.publish('audit', { key: 42 as unknown as string, payload: null }).catch((error: unknown) => void caught.push(String((error as { code?: string }).code)));
      }, { group: 'bot' });
      await bq.publish('in', { key: 'k', id: 'm1', payload: null });
      const audit = await drain(bq, 'audit', 1);
      await worker.close();
      assert.deepEqual(attempts, [1], 'one attempt: the caught error did not fail it');
      assert.deepEqual(caught, ['BOTQUEUE_INVALID_MESSAGE']);
      assert.deepEqual(audit.map((m) => m.id), ['in/bot/m1/publish:1']);
    } finally {
      await bq.close();
    }
  });

  test('a Slack reply answers in the thread; a named step keeps its id whatever the order', async () => {
    const bq = await connect(`sqlite:${join(dir, 'b.db')}`);
    try {
      const worker = bq.worker('slack', async (_msg, ctx) => {
        await ctx.reply('in thread', { step: 'answer' });
      }, { group: 'bot' });
      await bq.publish('slack', { key: 'slack:T1:C9', id: 'Ev1', payload: { event: { type: 'message' } }, headers: { 'bq-platform': 'slack', 'bq-chat': 'C9', 'bq-bot': 'T1', 'bq-thread': '1700000000.000100' } });
      const [reply] = await drain<OutboundPayload>(bq, 'outbound.slack', 1);
      await worker.close();
      assert.equal(reply!.id, 'slack/bot/Ev1/answer');
      assert.deepEqual(reply!.payload, { chat: 'C9', body: { text: 'in thread' }, thread: '1700000000.000100' });
    } finally {
      await bq.close();
    }
  });

  test('ctx.reply on a message without the gateway headers throws BOTQUEUE_NO_REPLY_ADDRESS and stores nothing', async () => {
    const bq = await connect(`sqlite:${join(dir, 'c.db')}`);
    try {
      const codes: unknown[] = [];
      let done: () => void = () => undefined;
      const handled = new Promise<void>((r) => (done = r));
      const worker = bq.worker('updates', async (_msg, ctx) => {
        try {
          await ctx.reply('hello');
        } catch (error) {
          codes.push((error as { code?: unknown }).code);
          codes.push(/bq\.send/.test((error as Error).message));
        }
        done();
      }, { group: 'bot' });
      await bq.publish('updates', { key: 'chat:1', payload: { text: 'hi' } });
      await publishGeneric(bq);
      await handled;
      await worker.close();
      assert.deepEqual(codes.slice(0, 2), ['BOTQUEUE_NO_REPLY_ADDRESS', true]);
      assert.equal((await bq.stats('outbound.telegram')).length, 0, 'no outbound topic was even created');
    } finally {
      await bq.close();
    }
  });

  test('bq.send stores a proactive message keyed by chat; bad input is refused with a code', async () => {
    const bq = await connect(`sqlite:${join(dir, 'd.db')}`);
    try {
      const receipt = await bq.send('telegram', -1001234, 'hello group', { id: 'notice-1' });
      assert.equal((await bq.send('telegram', -1001234, 'hello group', { id: 'notice-1' })).duplicate, true, 'the same id is stored once');
      assert.equal(receipt.topic, 'outbound.telegram');
      const [stored] = await drain<OutboundPayload>(bq, 'outbound.telegram', 1);
      assert.equal(stored!.key, '-1001234');
      assert.deepEqual(stored!.payload.body, { text: 'hello group' });
      await assert.rejects(async () => bq.send('telegrm' as 'telegram', '1', 'x'), { code: 'BOTQUEUE_INVALID_OPTION', message: /unknown platform "telegrm"/ });
      await assert.rejects(async () => bq.send('slack', '', 'x'), { code: 'BOTQUEUE_INVALID_MESSAGE' });
      await assert.rejects(async () => bq.send('slack', 'C1', ''), { code: 'BOTQUEUE_INVALID_MESSAGE' });
      await assert.rejects(async () => bq.send('slack', 'C1', 'x', { methd: 'chat.postMessage' } as never), { code: 'BOTQUEUE_INVALID_OPTION', message: /unknown send option "methd"/ });
    } finally {
      await bq.close();
    }
  });
});

async function publishGeneric(bq: Awaited<ReturnType<typeof connect>>): Promise<void> {
  // As the gateway's generic route stores a message: a platform header that names no chat platform.
  await bq.publish('updates', { key: 'chat:1', payload: { text: 'generic' }, headers: { 'bq-platform': 'generic' } });
}
