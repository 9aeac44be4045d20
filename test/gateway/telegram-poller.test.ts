/**
 * Telegram long polling against a fake Bot API on loopback: the offset moves past a batch only
 * once it is stored, and a poller killed with SIGKILL at any moment (the real `botqueue start`
 * in a child process) loses no update and stores none twice.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect } from '../../src/index.js';
import { TelegramPoller } from '../../src/gateway/telegram-poller.js';
import { ServiceProcess, serviceEnv, tempDir as serviceTempDir, cleanup as cleanupServices } from '../service/harness.js';
import { FakeBotApi } from './fake-bot-api.js';
import { removeTempDirs, storedMessages, telegramUpdate, tempDir } from './harness.js';

const TOKEN = '123456:ABC-fake-token_for_tests';
const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
after(async () => {
  await cleanupServices();
  removeTempDirs();
});

test('the offset confirms a batch only after it is stored; every update stored once', async () => {
  const api = await new FakeBotApi(TOKEN, 7).listen();
  const bq = await connect(`sqlite:${join(tempDir(), 'bq.db')}`);
  const poller = new TelegramPoller({ bq, botToken: TOKEN, apiRoot: api.url, bot: 'default', topic: 'telegram', timeoutS: 1, logger: quiet });
  const early: string[] = [];
  // Each getUpdates with an offset confirms every update below it: they must be stored by then.
  api.onRequest = async (offset) => {
    if (offset === undefined) return;
    const [stats] = await bq.stats('telegram');
    const below = api.delivered.filter((id) => id < offset);
    if ((stats?.retained ?? 0) < new Set(below).size) early.push(`offset ${offset} with ${stats?.retained ?? 0} stored`);
  };
  try {
    api.add(...Array.from({ length: 25 }, (_, i) => telegramUpdate(500 + i, 1 + (i % 3), String(i))));
    poller.start();
    const deadline = Date.now() + 15_000;
    while (api.unconfirmed > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    // Updates arriving while it waits in a long poll are stored too.
    api.add(telegramUpdate(600, 9, 'late'));
    const stored = await storedMessages(bq, 'telegram', 26);
    assert.deepEqual(early, []);
    assert.equal(stored.length, 26);
    assert.equal(new Set(stored.map((m) => m.id)).size, 26);
    assert.ok(stored.some((m) => m.id === 'telegram:default:600' && m.key === 'telegram:default:9' && m.headers['bq-chat'] === '9'));
    // Offsets: none, then each batch's last update_id + 1.
    assert.equal(api.offsets[0], undefined);
    assert.deepEqual(api.offsets.slice(1, 5), [507, 514, 521, 525]);
  } finally {
    await poller.stop();
    await bq.close();
    await api.close();
  }
});

test('kill -9 of `botqueue start` while polling, five times: no update lost, none stored twice', async () => {
  const api = await new FakeBotApi(TOKEN, 10).listen();
  const total = 200;
  api.add(...Array.from({ length: total }, (_, i) => telegramUpdate(1000 + i, 1 + (i % 20), String(i))));
  const dir = serviceTempDir();
  const env = serviceEnv(dir, { TELEGRAM_POLLING: 'true', TELEGRAM_BOT_TOKEN: TOKEN, TELEGRAM_API_ROOT: api.url });
  let service: ServiceProcess | undefined;
  let kills = 0;
  try {
    // Kill right after an answer with updates went out: the batch is being stored, or stored and not yet confirmed.
    api.onAnswered = () => {
      if (kills >= 5 || service === undefined || !service.running) return;
      const target = service;
      kills++;
      setTimeout(() => target.proc.kill('SIGKILL'), kills * 7 % 25);
    };
    const deadline = Date.now() + 60_000;
    while (api.unconfirmed > 0 && Date.now() < deadline) {
      if (service === undefined || !service.running) {
        if (service !== undefined) await service.exited;
        service = new ServiceProcess(dir, env);
        await service.started().catch(() => undefined);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(api.unconfirmed, 0, 'every update was confirmed');
    assert.equal(kills, 5);
    await service?.stop();
  } finally {
    await service?.kill();
    await api.close();
  }
  const redelivered = api.delivered.length - new Set(api.delivered).size;
  console.log(`# ${total} updates, ${kills} kills -9, ${api.delivered.length} deliveries (${redelivered} redelivered after a kill)`);
  assert.ok(redelivered > 0, 'the kills left batches unconfirmed (otherwise this test proves nothing)');
  const bq = await connect(`sqlite:${join(dir, 'bq.db')}`);
  try {
    const [stats] = await bq.stats('telegram');
    assert.equal(stats?.retained, total, 'each update stored exactly once');
    const stored = await storedMessages(bq, 'telegram', total);
    assert.equal(new Set(stored.map((m) => m.id)).size, total);
    assert.equal(stored.length, total);
  } finally {
    await bq.close();
  }
});
