/**
 * The sender against fake platform APIs on loopback (test/support/fake-platforms.ts), on real
 * SQLite files: per-chat order with one chat throttled by 429s, a global limit never exceeded
 * in any one-second window, a 400 dead-lettered with its body, 5xx retried, and each
 * platform's request shape (Discord follow-ups through the interaction token, then channel
 * messages once the token is too old).
 */
import assert from 'node:assert/strict';
import { metrics } from '../../src/observability/metrics.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, type Botqueue } from '../../src/index.js';
import { discordClient, slackClient, startSender, telegramClient, whatsappClient, type PlatformLimits, type Sender } from '../../src/outbound/index.js';
import { maxInWindow, percentile, startFakePlatforms, type Canned, type FakeOptions, type FakePlatforms } from '../support/fake-platforms.js';

const dir = mkdtempSync(join(tmpdir(), 'bq-outbound-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let files = 0;

async function setup(fakeOptions: FakeOptions, limits: PlatformLimits, make = (fake: FakePlatforms) => telegramClient({ token: '123:TEST', apiRoot: fake.roots.telegram })) {
  const fake = await startFakePlatforms(fakeOptions);
  const bq = await connect(`sqlite:${join(dir, `s${files++}.db`)}`);
  const sender = startSender(bq, { client: make(fake), limits, worker: { backoffBaseMs: 50, backoffCapMs: 200 } });
  await sender.worker.ready;
  return {
    fake,
    bq,
    sender,
    close: async () => {
      await bq.close();
      await fake.close();
    },
  };
}

/** 50 chats × 20 replies; returns the latency (publish → arrival at the fake) of each reply by chat, in arrival order. */
async function fiftyByTwenty(bq: Botqueue, fake: FakePlatforms): Promise<Map<string, Array<{ i: number; latency: number }>>> {
  const publishedAt = new Map<string, number>();
  const batch: Promise<unknown>[] = [];
  for (let i = 0; i < 20; i++) {
    for (let c = 0; c < 50; c++) {
      const text = `${c}#${i}`;
      publishedAt.set(text, Date.now());
      batch.push(bq.send('telegram', String(1000 + c), text));
    }
    await Promise.all(batch.splice(0));
  }
  await fake.waitFor((r) => r.filter((x) => x.accepted).length >= 1000, 60_000, '1000 replies');
  const byChat = new Map<string, Array<{ i: number; latency: number }>>();
  for (const r of fake.accepted()) {
    const text = String(r.body.text);
    const list = byChat.get(r.chat) ?? [];
    list.push({ i: Number(text.split('#')[1]), latency: r.at - publishedAt.get(text)! });
    byChat.set(r.chat, list);
  }
  return byChat;
}

describe('outbound sender (fake platform APIs)', () => {
  test('50 chats × 20 replies, one chat throttled by 429: its replies in order and late, the others unaffected', async () => {
    const limits: PlatformLimits = { chat: { limit: 20, windowMs: 1_000 } };
    const runs: Array<Map<string, Array<{ i: number; latency: number }>>> = [];
    let throttled429 = 0;
    // A warm-up first (JIT, connections, a first SQLite file), so the unthrottled run is not the slower one for that reason alone.
    {
      const { bq, fake, close } = await setup({}, limits);
      try {
        await Promise.all(Array.from({ length: 200 }, (_, i) => bq.send('telegram', String(i % 50), `w${i}`)));
        await fake.waitFor((r) => r.length >= 200, 30_000, 'the warm-up');
      } finally {
        await close();
      }
    }
    for (const throttle of [false, true]) {
      const { bq, fake, close } = await setup(throttle ? { chatLimits: { '1000': { limit: 4, windowMs: 1_000, retryAfterS: 1 } } } : {}, limits);
      try {
        runs.push(await fiftyByTwenty(bq, fake));
        if (throttle) throttled429 = fake.requests.filter((r) => r.status === 429).length;
        assert.ok(fake.requests.filter((r) => r.status === 429 && r.chat !== '1000').length === 0, 'only the throttled chat is answered 429');
      } finally {
        await close();
      }
    }
    const [calm, throttledRun] = runs as [Map<string, Array<{ i: number; latency: number }>>, Map<string, Array<{ i: number; latency: number }>>];
    for (const run of runs) {
      assert.equal(run.size, 50);
      for (const [chat, list] of run) assert.deepEqual(list.map((x) => x.i), [...Array(20).keys()], `chat ${chat}: every reply once, in order`);
    }
    assert.ok(throttled429 > 0, 'the throttled chat was answered 429');
    const othersLatency = (run: typeof calm): number[] => [...run].filter(([chat]) => chat !== '1000').flatMap(([, l]) => l.map((x) => x.latency));
    const p99Calm = percentile(othersLatency(calm), 99);
    const p99Throttled = percentile(othersLatency(throttledRun), 99);
    const slowLast = throttledRun.get('1000')!.at(-1)!.latency;
    console.log(`# other chats' p99: ${p99Calm} ms unthrottled, ${p99Throttled} ms with chat 1000 throttled; chat 1000's last reply after ${slowLast} ms (${throttled429} × 429)`);
    // 20 replies at 4 per second, learned through 429s with retry_after 1 s: at least ~4 s.
    assert.ok(slowLast >= 3_000, `the throttled chat's replies are late (last after ${slowLast} ms)`);
    assert.ok(p99Throttled <= 2 * p99Calm, `other chats' p99 ${p99Throttled} ms is within 2× the unthrottled ${p99Calm} ms`);
  });

  test('a global limit is never exceeded in any one-second window', async () => {
    // The fake refuses a 101st send in any 1 s (by arrival time); the sender is told the same limit.
    const { bq, fake, close } = await setup({ globalLimit: { limit: 100, windowMs: 1_000 } }, { global: { limit: 100, windowMs: 1_000 } });
    try {
      const sends: Promise<unknown>[] = [];
      for (let i = 0; i < 300; i++) sends.push(bq.send('telegram', String(2000 + (i % 30)), `g${i}`));
      await Promise.all(sends);
      const started = Date.now();
      await fake.waitFor((r) => r.filter((x) => x.accepted).length >= 300, 30_000, '300 sends');
      const elapsed = Date.now() - started;
      const most = maxInWindow(fake.accepted().map((r) => r.at), 1_000);
      console.log(`# 300 sends under a 100/s global limit: ${elapsed} ms, at most ${most} in any 1 s window, ${fake.requests.filter((r) => r.status === 429).length} × 429`);
      assert.ok(most <= 100, `at most 100 sends in any 1 s window, saw ${most}`);
      assert.equal(fake.requests.filter((r) => r.status === 429).length, 0, 'the fake never had to answer 429');
      assert.ok(elapsed >= 1_900, `300 sends at 100 per second take 2 s at least, took ${elapsed} ms`);
    } finally {
      await close();
    }
  });

  test('a 400 lands in the DLQ with its status and body; the chat goes on; a 5xx is retried', async () => {
    let failures = 2;
    const { bq, fake, close } = await setup(
      {
        answer: (r) => {
          if (r.body.text === 'to-nowhere') return { status: 400, body: { ok: false, error_code: 400, description: 'Bad Request: chat not found' } };
          if (r.body.text === 'flaky' && failures-- > 0) return { status: 502, body: { ok: false, error_code: 502, description: 'Bad Gateway' } };
          return undefined;
        },
      },
      {},
    );
    const sends = async (outcome: string): Promise<number> => {
      const text = await metrics().registry.metrics();
      const line = text.split('\n').find((l) => l.startsWith(`botqueue_outbound_sends_total{platform="telegram",outcome="${outcome}"}`));
      return line === undefined ? 0 : Number(line.split(' ').at(-1));
    };
    const before = { sent: await sends('sent'), failed: await sends('failed'), permanent: await sends('permanent_failure') };
    try {
      await bq.send('telegram', '-100777', 'to-nowhere');
      await bq.send('telegram', '-100777', 'after');
      await bq.send('telegram', '42', 'flaky');
      await fake.waitFor((r) => r.some((x) => x.accepted && x.body.text === 'after') && r.some((x) => x.accepted && x.body.text === 'flaky'), 20_000, 'the replies after the 400 and the 502s');
      const dead = await bq.deadLetters.list({ topic: 'outbound.telegram' });
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.key, '-100777');
      assert.equal(dead[0]!.error.code, 'BOTQUEUE_PLATFORM_REJECTED');
      assert.match(dead[0]!.error.message, /HTTP 400: .*Bad Request: chat not found/);
      assert.equal(dead[0]!.attempts, 1, 'a 4xx is not retried');
      assert.equal(JSON.parse(dead[0]!.payload).body.text, 'to-nowhere');
      assert.equal(fake.requests.filter((x) => x.body.text === 'flaky').length, 3, 'two 502s, then sent');
      assert.ok(!JSON.stringify(dead).includes('123:TEST'), 'the bot token is in no dead letter');
      // /metrics counts each call by outcome: 2 sent, 2 failed (502), 1 refused for good (400).
      // (The fake saw the last request before the sender read its answer.)
      for (let i = 0; i < 100 && (await sends('sent')) - before.sent < 2; i++) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual({ sent: (await sends('sent')) - before.sent, failed: (await sends('failed')) - before.failed, permanent: (await sends('permanent_failure')) - before.permanent }, { sent: 2, failed: 2, permanent: 1 });
    } finally {
      await close();
    }
  });

  test('Slack: chat.postMessage with the bearer token and thread; ok:false is a refusal; 429 Retry-After is honoured', async () => {
    let first = true;
    const { bq, fake, close } = await setup(
      {
        answer: (r) => {
          if (r.body.text === 'archived') return { status: 200, body: { ok: false, error: 'is_archived' } };
          if (r.body.text === 'busy' && first) {
            first = false;
            return { status: 429, body: { ok: false, error: 'ratelimited' }, headers: { 'retry-after': '1' } };
          }
          return undefined;
        },
      },
      {},
      (f) => slackClient({ token: 'xoxb-test', apiRoot: f.roots.slack }),
    );
    try {
      await bq.send('slack', 'C1', 'busy');
      await bq.send('slack', 'C1', 'next', { thread: '1700000000.000100' });
      await bq.send('slack', 'C2', 'archived');
      await fake.waitFor((r) => r.some((x) => x.accepted && x.body.text === 'next'), 15_000, 'the Slack replies');
      const c1 = fake.requests.filter((r) => r.chat === 'C1');
      assert.deepEqual(c1.map((r) => [r.body.text, r.status]), [['busy', 429], ['busy', 200], ['next', 200]]);
      assert.ok(c1[1]!.at - c1[0]!.at >= 1_000, 'the retry waited Retry-After');
      assert.equal(c1[2]!.body.thread_ts, '1700000000.000100');
      assert.equal(c1[0]!.auth, 'Bearer xoxb-test');
      await waitUntil(async () => (await bq.deadLetters.list({ topic: 'outbound.slack' })).length === 1);
      assert.match((await bq.deadLetters.list({ topic: 'outbound.slack' }))[0]!.error.message, /HTTP 200: .*is_archived/);
    } finally {
      await close();
    }
  });

  test('Discord: a reply to a fresh interaction is a follow-up through its token; after 15 minutes a channel message', async () => {
    const { bq, fake, close } = await setup({}, {}, (f) => discordClient({ token: 'discord-token', apiRoot: f.roots.discord }));
    try {
      // As the gateway stores an interaction, and a handler that replies to it.
      const worker = bq.worker('discord', async (_msg, ctx) => {
        await ctx.reply('pong');
      }, { group: 'bot' });
      const headers = (receivedAt: number, token: string) => ({ 'bq-platform': 'discord', 'bq-chat': '555', 'bq-bot': 'app1', 'bq-interaction-token': token, 'bq-received-at': String(receivedAt) });
      await bq.publish('discord', { key: 'discord:555', id: 'i1', payload: { type: 2 }, headers: headers(Date.now(), 'fresh-token') });
      await bq.publish('discord', { key: 'discord:555', id: 'i2', payload: { type: 2 }, headers: headers(Date.now() - 20 * 60_000, 'old-token') });
      await fake.waitFor((r) => r.filter((x) => x.accepted).length >= 2, 15_000, 'two Discord replies');
      const [a, b] = fake.accepted();
      assert.deepEqual([a!.method, a!.chat, a!.auth, a!.body.content], ['interaction', 'app1/fresh-token', undefined, 'pong']);
      assert.deepEqual([b!.method, b!.chat, b!.auth, b!.body.content], ['channel', '555', 'Bot discord-token', 'pong']);
      await worker.close();
    } finally {
      await close();
    }
  });

  test('Discord: a global 429 pauses every channel; X-RateLimit-Remaining 0 pauses that channel for Reset-After', async () => {
    let globalDone = false;
    const { bq, fake, close } = await setup(
      {
        answer: (r): Canned | undefined => {
          if (r.body.content === 'first' && !globalDone) {
            globalDone = true;
            return { status: 429, body: { message: 'You are being rate limited.', retry_after: 0.8, global: true }, headers: { 'x-ratelimit-global': 'true', 'retry-after': '1' } };
          }
          if (r.body.content === 'bucket-empty') return { status: 200, body: { id: '1' }, headers: { 'x-ratelimit-remaining': '0', 'x-ratelimit-reset-after': '0.6' } };
          return undefined;
        },
      },
      { chat: { limit: 100, windowMs: 1_000 }, global: { limit: 100, windowMs: 1_000 } },
      (f) => discordClient({ token: 'discord-token', apiRoot: f.roots.discord }),
    );
    try {
      await bq.send('discord', '100', 'first');
      await fake.waitFor((r) => r.some((x) => x.status === 429), 5_000, 'the global 429');
      await bq.send('discord', '200', 'other channel');
      await fake.waitFor((r) => r.some((x) => x.accepted && x.body.content === 'other channel'), 10_000, 'the other channel');
      const at429 = fake.requests.find((r) => r.status === 429)!.at;
      const other = fake.requests.find((r) => r.body.content === 'other channel')!.at;
      assert.ok(other - at429 >= 750, `a global 429 holds other channels too (${other - at429} ms)`);

      await bq.send('discord', '300', 'bucket-empty');
      await bq.send('discord', '300', 'after the bucket reset');
      await fake.waitFor((r) => r.some((x) => x.accepted && x.body.content === 'after the bucket reset'), 10_000, 'the message after the reset');
      const empty = fake.requests.find((r) => r.body.content === 'bucket-empty')!.at;
      const next = fake.requests.find((r) => r.body.content === 'after the bucket reset')!.at;
      assert.ok(next - empty >= 550, `the channel waited for X-RateLimit-Reset-After (${next - empty} ms)`);
    } finally {
      await close();
    }
  });

  test('WhatsApp: messages with messaging_product and to; the pair limit (131056) delays only that user', async () => {
    const { bq, fake, close } = await setup({ chatLimits: { '15550001': { limit: 1, windowMs: 60_000, retryAfterS: 1 } } }, {}, (f) =>
      whatsappClient({ token: 'wa-token', phoneNumberId: '106540352242922', apiRoot: f.roots.whatsapp }),
    );
    try {
      await bq.send('whatsapp', '15550001', 'one');
      await bq.send('whatsapp', '15550001', 'two');
      await bq.send('whatsapp', '15550002', 'other');
      await fake.waitFor((r) => r.some((x) => x.accepted && x.chat === '15550002') && r.some((x) => x.chat === '15550001' && x.status === 400), 10_000, 'the other user and the pair limit');
      // The two users' sends are independent: either may reach the API first.
      const first = fake.accepted().find((r) => r.chat === '15550001')!;
      assert.deepEqual(first.body, { messaging_product: 'whatsapp', recipient_type: 'individual', to: '15550001', type: 'text', text: { body: 'one' } });
      assert.equal(first.auth, 'Bearer wa-token');
      assert.ok(fake.requests.some((r) => r.chat === '15550001' && r.status === 400), 'the second to the same user hit the pair limit');
      const otherAt = fake.accepted().find((r) => r.chat === '15550002')!.at;
      assert.ok(Math.abs(otherAt - first.at) < 1_000, 'the other user was not held back by the pair limit');
    } finally {
      await close();
    }
  });
});

async function waitUntil(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

export type { Sender };
