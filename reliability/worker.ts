/**
 * A worker process of the reliability suite. One JSON argument (WorkerConfig). Handlers record
 * each invocation, throw for poison, answer RetryLater while the downstream is "down" (a file
 * exists), sleep a little, and run their side effect through ctx.once into the effect store.
 * Stdout: `ready`, `assigned|released|lease-lost <partition>`, `error <message>`.
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, RetryLater, type WorkerOptions } from '../src/index.js';
import { EffectStore } from './effects.js';

export interface WorkerConfig {
  url: string;
  topic: string;
  effects: string;
  downFile: string;
  handlerMaxMs: number;
  options: Partial<WorkerOptions>;
}

const config = JSON.parse(process.argv[2] ?? '') as WorkerConfig;
const say = (line: string): void => void process.stdout.write(`${line}\n`);
process.stdin.on('end', () => process.exit(3));
process.stdin.resume();

const store = new EffectStore(config.effects);
const bq = await connect(config.url);
const worker = bq.worker<{ seq: number; poison?: boolean }>(
  config.topic,
  async (m, ctx) => {
    // A deferral is not an attempt (it does not count toward maxAttempts): not recorded as one.
    if (existsSync(config.downFile) && m.payload.poison !== true) throw new RetryLater(250, 'downstream down');
    store.attempt(m.id, m.key ?? '-', m.payload.seq);
    if (m.payload.poison === true) throw new Error('poison on purpose');
    if (config.handlerMaxMs > 0) await sleep(Math.floor(Math.random() * (config.handlerMaxMs + 1)));
    await ctx.once('effect', () => store.effect(m.id));
  },
  config.options,
);
worker.on('lease-lost', (e) => say(`lease-lost ${e.partition}`));
worker.on('assigned', (e) => say(`assigned ${e.partition}`));
worker.on('released', (e) => say(`released ${e.partition}`));
worker.on('error', (error) => say(`error ${error.message.replace(/\n/g, ' ')}`));
await worker.ready;
say('ready');
process.on('SIGTERM', () => {
  void worker.close().then(async () => {
    await bq.close();
    store.close();
    process.exit(0);
  });
});
