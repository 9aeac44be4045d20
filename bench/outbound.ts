/**
 * `npm run bench:outbound`: replies per second through the outbound queue's sender (SQLite,
 * one process) against a fake Telegram Bot API on loopback with no limits, and the same
 * replies sent by calling the fake API directly with the same concurrency (no queue): the
 * ratio and the overhead per reply are what the queue costs (a durable record of each send
 * via ctx.once, the ack, the fetch of the backlog).
 *
 * Each round: N replies over C chats. Sender: the backlog is published first, then the timer
 * runs from the sender's start until the fake has received all N. Direct: the same N calls,
 * 64 at a time (the sender's default concurrency), each chat's calls in order.
 * BENCH_OUTBOUND_N (default 3000), BENCH_OUTBOUND_CHATS (500), BENCH_ROUNDS (5), after one warm-up
 * round of each. The fake API runs in the bench's process: both paths share the CPU with it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../src/index.js';
import { startSender, telegramClient } from '../src/outbound/index.js';
import { startFakePlatforms } from '../test/support/fake-platforms.js';
import { fmtInt, fmtRatio, median, table } from './lib.js';

const N = Number(process.env.BENCH_OUTBOUND_N ?? 3_000);
const CHATS = Number(process.env.BENCH_OUTBOUND_CHATS ?? 500);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONCURRENCY = 64;

const dir = mkdtempSync(join(tmpdir(), 'bq-bench-outbound-'));
const fake = await startFakePlatforms();
const client = telegramClient({ token: '1:BENCH', apiRoot: fake.roots.telegram });

async function direct(): Promise<number> {
  const before = fake.requests.length;
  // Per chat in order, CONCURRENCY chats at once: the same shape of work as the sender.
  const queues = Array.from({ length: CHATS }, (_, c) => Array.from({ length: Math.ceil(N / CHATS) }, (_, i) => ({ chat: String(10_000 + c), body: { text: `d${c}#${i}` } })));
  const started = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      for (let q = next++; q < queues.length; q = next++) {
        for (const payload of queues[q]!) {
          const outcome = await client.send(payload, AbortSignal.timeout(10_000));
          if (outcome.kind !== 'sent') throw new Error(`direct send: ${outcome.kind}`);
        }
      }
    }),
  );
  const sent = fake.requests.length - before;
  return sent / ((performance.now() - started) / 1000);
}

async function throughSender(round: number): Promise<number> {
  const bq = await connect(`sqlite:${join(dir, `r${round}.db`)}`);
  try {
    const per = Math.ceil(N / CHATS);
    for (let i = 0; i < per; i++) {
      await bq.publishBatch('outbound.telegram', Array.from({ length: CHATS }, (_, c) => ({ key: String(10_000 + c), payload: { chat: String(10_000 + c), body: { text: `s${c}#${i}` } } })));
    }
    const before = fake.requests.length;
    const total = per * CHATS;
    const started = performance.now();
    const sender = startSender(bq, { client, limits: {}, worker: { concurrency: CONCURRENCY } });
    await fake.waitFor((r) => r.length - before >= total, 300_000, `${total} replies`);
    const rate = total / ((performance.now() - started) / 1000);
    await sender.close();
    return rate;
  } finally {
    await bq.close();
  }
}

// A warm-up of each path (JIT, connections, the SQLite page cache), not counted.
await direct();
await throughSender(-1);
const directRates: number[] = [];
const senderRates: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  directRates.push(await direct());
  senderRates.push(await throughSender(round));
  process.stderr.write(`round ${round + 1}/${ROUNDS}: direct ${fmtInt(directRates.at(-1)!)}/s, sender ${fmtInt(senderRates.at(-1)!)}/s\n`);
}
await fake.close();
rmSync(dir, { recursive: true, force: true });

const d = median(directRates);
const s = median(senderRates);
console.log(`outbound: ${N} replies over ${CHATS} chats, concurrency ${CONCURRENCY}, fake Bot API on loopback without limits, medians of ${ROUNDS} rounds`);
console.log(
  table([
    ['path', 'replies/s (median)', 'rounds'],
    ['direct API calls', fmtInt(d), directRates.map((r) => fmtInt(r)).join(' ')],
    ['through the sender (SQLite)', fmtInt(s), senderRates.map((r) => fmtInt(r)).join(' ')],
  ]),
);
console.log(`sender / direct: ${fmtRatio(s / d)}; overhead per reply: ${(1000 / s - 1000 / d).toFixed(3)} ms`);
