/**
 * From the webhook to the handler under load: a fake Telegram sends 1,000 updates of 50 chats,
 * the chats concurrently and each chat in sequence (as the Bot API does: a chat's next update
 * waits for the previous one's 2xx), and re-sends some of them, some while the first copy is
 * still in flight (a timeout retry). The handler must see each update once, each chat in order,
 * and the acks must stay far inside the platforms' deadlines (Slack and Discord: 3 s).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { removeTempDirs, send, startGateway, telegramRequest, telegramUpdate, type Gateway } from './harness.js';

const CHATS = 50;
const PER_CHAT = 20;
const open: Gateway[] = [];
after(async () => {
  for (const g of open.splice(0)) await g.close();
  removeTempDirs();
});

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

test('1,000 updates of 50 chats: each handled once, each chat in order, ack p99 printed', async () => {
  const g = await startGateway({ topics: { telegram: { partitions: 16 } } });
  open.push(g);
  await g.bq.createTopic('telegram', { partitions: 16 });
  const handled = new Map<string, number>();
  const byChat = new Map<string, number[]>();
  const worker = g.bq.worker(
    'telegram',
    (m) => {
      handled.set(m.id, (handled.get(m.id) ?? 0) + 1);
      const update = m.payload as { message: { text: string } };
      const chat = m.headers['bq-chat']!;
      if (chat === '1') return;
      byChat.set(chat, [...(byChat.get(chat) ?? []), Number(update.message.text)]);
    },
    { group: 'bot', concurrency: 32 },
  );

  const latencies: number[] = [];
  let resent = 0;
  let concurrentResends = 0;
  /** One delivery as the Bot API makes it: retried until a 2xx. */
  const deliver = async (update: Record<string, unknown>): Promise<void> => {
    for (;;) {
      const answer = await send(`${g.url}/webhooks/telegram`, telegramRequest(update));
      latencies.push(answer.ms);
      if (answer.status === 200) return;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  // One update first, from another chat, as a running service has had: the load starts warm.
  await deliver(telegramUpdate(1_000_000, 1, '1'));
  const started = performance.now();
  await Promise.all(
    Array.from({ length: CHATS }, async (_, c) => {
      const chatId = 100_000 + c;
      for (let n = 1; n <= PER_CHAT; n++) {
        const update = telegramUpdate(c * PER_CHAT + n, chatId, String(n));
        if (n % 7 === 0) {
          // A timeout retry: the same update again while the first copy is still being stored.
          concurrentResends++;
          await Promise.all([deliver(update), deliver(update)]);
        } else {
          await deliver(update);
          if (n % 5 === 0) {
            resent++;
            await deliver(update);
          }
        }
      }
    }),
  );
  const sendMs = performance.now() - started;
  const deadline = Date.now() + 60_000;
  while (handled.size < CHATS * PER_CHAT + 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 300));
  await worker.close();

  const sorted = [...latencies].sort((a, b) => a - b);
  const p50 = percentile(sorted, 50);
  const p99 = percentile(sorted, 99);
  // The first requests also pay for the JIT warming up under 50 concurrent connections.
  const laterHalf = latencies.slice(Math.floor(latencies.length / 2)).sort((a, b) => a - b);
  console.log(
    `# webhook ack latency over ${sorted.length} requests (${CHATS} chats concurrently, ${resent} re-sent after, ${concurrentResends} re-sent concurrently): ` +
      `p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms, max ${sorted[sorted.length - 1]!.toFixed(1)} ms (later half: p50 ${percentile(laterHalf, 50).toFixed(1)} ms, p99 ${percentile(laterHalf, 99).toFixed(1)} ms); sent in ${(sendMs / 1000).toFixed(2)} s`,
  );

  assert.equal(handled.size, CHATS * PER_CHAT + 1, 'every update reached the handler');
  const twice = [...handled].filter(([, count]) => count !== 1);
  assert.deepEqual(twice, [], 'no update was handled twice');
  for (const [chat, seen] of byChat) assert.deepEqual(seen, Array.from({ length: PER_CHAT }, (_, i) => i + 1), `chat ${chat} in order`);
  assert.equal(byChat.size, CHATS);
  // Generous bounds (the machine is shared and noisy): once warm, far inside Slack's and
  // Discord's 3 s; and even the cold first burst of 50 connections inside it.
  assert.ok(percentile(laterHalf, 99) < 1_500, `warm ack p99 ${percentile(laterHalf, 99).toFixed(1)} ms must stay far inside 3 s`);
  assert.ok(p99 < 3_000, `ack p99 ${p99.toFixed(1)} ms must stay inside the platforms' 3 s`);
});
