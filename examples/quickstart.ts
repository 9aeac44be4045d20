// The README's example, kept identical to it by test/unit/readme-example.test.ts.
import { connect, PermanentError } from 'botqueue';

const bq = await connect(process.env.BOTQUEUE_URL ?? 'sqlite:./data/botqueue.db'); // or 'memory:'

// Producer side (your webhook endpoint): resolves once the update is durably stored.
const receipt = await bq.publish('updates', { key: 'chat:42', id: 'tg:1001', payload: { text: 'hi' } });
console.log(receipt); // { id: 'tg:1001', topic: 'updates', partition: 8, seq: 1, duplicate: false }
await bq.publishBatch('updates', [
  { key: 'chat:42', id: 'tg:1002', payload: { text: 'how are you?' } },
  { key: 'chat:7', id: 'tg:1003', payload: { text: 'hello' }, delayMs: 500 },
]);

// Consumer side: one message at a time per chat, 32 chats at once.
const worker = bq.worker<{ text: string }>('updates', async (msg, ctx) => {
  if (typeof msg.payload.text !== 'string') throw new PermanentError('not a text update'); // straight to the DLQ
  await ctx.once('reply', () => sendReply(msg.key, msg.payload.text)); // once per message id, even on redelivery
}, { group: 'bot', concurrency: 32, maxAttempts: 5, leaseMs: 30_000, onExhausted: 'dead-letter' });

// For this example only: wait until the three updates are handled (a bot just keeps running).
await new Promise<void>((resolve) => {
  let handled = 0;
  worker.on('completed', () => ++handled === 3 && resolve());
});

console.log(await bq.stats()); // per topic, group and partition: backlog, in flight, oldest age, DLQ size, parked keys
const letters = await bq.deadLetters.list({ topic: 'updates', group: 'bot', limit: 50 });
console.log(`${letters.length} dead letters`);
await bq.deadLetters.redrive({ topic: 'updates', key: 'chat:42' }); // back to the topic and key
await bq.deadLetters.purge({ topic: 'updates', errorContains: 'not a text update' });

await worker.close(); // finishes running handlers (deadline: shutdownTimeoutMs), releases partitions
await bq.close();

function sendReply(chat: string | null, text: string): Promise<void> {
  console.log(`reply to ${chat}: ${text}`); // your platform's API call goes here
  return Promise.resolve();
}
