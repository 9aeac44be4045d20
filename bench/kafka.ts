/**
 * `npm run bench:kafka` — end-to-end throughput and latency of botqueue's Kafka backend against
 * the same loop written on raw kafkajs, in one run, on librdkafka's mock cluster (3 brokers,
 * started here from test/support/kafka-mock-cluster.c).
 *
 * Both sides: one topic of 8 partitions, ~200-byte JSON messages over 1,000 keys, acks all,
 * one consumer group with one consumer, per-key order checked on every message.
 *  - raw: a kafkajs producer (acks -1; kafkajs's own idempotent producer cannot start on the
 *    mock, which reports no valid controller) sending batches of 1,000 from 2 loops, and a
 *    kafkajs consumer (eachMessage, kafkajs's automatic commits after each batch,
 *    partitionsConsumedConcurrently 8, a 10 ms long poll like botqueue's). It does less than
 *    botqueue, so it is an upper bound: no idempotent producer, no per-key ordering across
 *    concurrent handlers (one message at a time per partition), no message states read from
 *    the store, no lease fencing.
 *  - botqueue: a worker (no-op handler, concurrency 32) and 2 producers calling
 *    publishBatch(1,000) in a loop (idempotent producer, acks all, no ids: no dedup record).
 * Both clocks start once the consumer side owns its partitions (raw: its group assignment;
 * botqueue: the worker's leases), so neither counts joining.
 * msgs/s = N / (first publish → last message handled); latency = handled − publish timestamp,
 * p99 over all messages. Every variant runs --runs times (default 5), interleaved (raw, then
 * botqueue); medians are reported, and the ratio botqueue / raw (target ≥ 0.85) as the median of
 * each run's pair (and, beside it, the ratio of the medians).
 *
 * Flags (or BENCH_* env): --runs=3 --messages=20000; --only=raw|botqueue runs one side (to profile it). The store is BOTQUEUE_STORE_URL (default
 * postgres://postgres@127.0.0.1:5432/test). The last line of stdout is the result as JSON.
 */
import { connect } from '../src/index.js';
import { registerTopicCreator } from '../src/brokers/kafka/index.js';
import { KafkaNames } from '../src/brokers/kafka/kafka-broker.js';
import { dropPostgresSchema } from '../src/stores/postgres/index.js';
import { MockKafkaCluster } from '../test/support/kafka-cluster.js';
import { fmtInt, fmtRatio, median, percentile, progress, table } from './lib.js';

function flag(name: string, fallback: number): number {
  const arg = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  const raw = arg?.slice(name.length + 3) ?? process.env[`BENCH_${name.toUpperCase()}`];
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < 1) throw new Error(`bench: --${name} must be a positive number`);
  return Math.round(value);
}

const RUNS = flag('runs', 5);
/** --only=raw or --only=botqueue runs one side (for profiling it); the ratio needs both. */
const ONLY = process.argv.slice(2).find((a) => a.startsWith('--only='))?.slice('--only='.length);
if (ONLY !== undefined && ONLY !== 'raw' && ONLY !== 'botqueue') throw new Error('bench: --only must be raw or botqueue');
const SIDES = (['raw', 'botqueue'] as const).filter((side) => ONLY === undefined || side === ONLY);
const MESSAGES = flag('messages', 20_000);
/**
 * --handler-ms=N: each handler awaits N ms before recording (0, a no-op, by default): what a bot
 * calling an API runs. Raw kafkajs then has 8 messages in flight (one per partition, kafkajs's
 * model), botqueue its `concurrency` (32) keys.
 */
const HANDLER_MS = Number(process.argv.slice(2).find((a) => a.startsWith('--handler-ms='))?.slice('--handler-ms='.length) ?? process.env.BENCH_HANDLER_MS ?? 0);
if (!Number.isFinite(HANDLER_MS) || HANDLER_MS < 0) throw new Error('bench: --handler-ms must be a number >= 0');
const work = (): Promise<void> | undefined => (HANDLER_MS > 0 ? new Promise((resolve) => setTimeout(resolve, HANDLER_MS)) : undefined);
const PARTITIONS = 8;
const KEYS = 1_000;
const BATCH = 1_000;
const PRODUCERS = 2;
const CAP_MS = 180_000;
const PAD = 'x'.repeat(160);
const STORE_URL = process.env.BOTQUEUE_STORE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

interface Result {
  msgsPerSec: number;
  p99Ms: number;
  orderViolations: number;
}

/** Order and latency bookkeeping shared by both sides. */
class Tally {
  handled = 0;
  violations = 0;
  readonly latencies = new Float64Array(MESSAGES);
  private readonly lastN = new Map<string, number>();
  private finish!: () => void;
  readonly done = new Promise<void>((resolve) => (this.finish = resolve));
  lastAt = 0;

  record(key: string, n: number, publishedAt: number): void {
    const before = this.lastN.get(key);
    if (before !== undefined && n <= before) this.violations++;
    this.lastN.set(key, n);
    if (this.handled < MESSAGES) this.latencies[this.handled] = Date.now() - publishedAt;
    this.handled++;
    if (this.handled === MESSAGES) {
      this.lastAt = performance.now();
      this.finish();
    }
  }

  result(started: number): Result {
    const sorted = this.latencies.slice().sort();
    return { msgsPerSec: MESSAGES / ((this.lastAt - started) / 1_000), p99Ms: percentile(sorted, 99), orderViolations: this.violations };
  }
}

/** Each producer owns the keys ≡ p (mod PRODUCERS), so every key has one publisher and an order. */
async function produce(send: (batch: Array<{ key: string; n: number }>) => Promise<void>): Promise<void> {
  await Promise.all(
    Array.from({ length: PRODUCERS }, async (_, p) => {
      let batch: Array<{ key: string; n: number }> = [];
      for (let i = p; i < MESSAGES; i += PRODUCERS) {
        batch.push({ key: `k${i % KEYS}`, n: i });
        if (batch.length === BATCH) {
          await send(batch);
          batch = [];
        }
      }
      if (batch.length > 0) await send(batch);
    }),
  );
}

async function withCap(tally: Tally): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([tally.done, new Promise((resolve) => (timer = setTimeout(resolve, CAP_MS)))]);
  clearTimeout(timer);
  if (tally.handled < MESSAGES) throw new Error(`handled only ${tally.handled} of ${MESSAGES} in ${CAP_MS} ms`);
}

async function raw(cluster: MockKafkaCluster, run: string): Promise<Result> {
  const { Kafka, logLevel } = (await import('kafkajs')).default;
  const topic = `raw${process.pid}_${run}`;
  await cluster.createTopic(topic, PARTITIONS);
  const kafka = new Kafka({ brokers: cluster.bootstraps, logLevel: logLevel.NOTHING });
  const producer = kafka.producer({ allowAutoTopicCreation: false });
  // The same long poll as botqueue's Fetch (10 ms): the mock answers a Fetch that found nothing
  // only at its maxWait, even when records arrive meanwhile, so with kafkajs's default (5 s) a
  // run whose first Fetch went out before the first publish stalled 5 s (raw medians swung
  // from 3,800 to 42,000 msgs/s between runs).
  const consumer = kafka.consumer({ groupId: `${topic}-g`, allowAutoTopicCreation: false, maxWaitTimeInMs: 10 });
  await Promise.all([producer.connect(), consumer.connect()]);
  const tally = new Tally();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    let assigned!: () => void;
    const ready = new Promise<void>((resolve) => (assigned = resolve));
    consumer.on(consumer.events.GROUP_JOIN, () => assigned());
    await consumer.run({
      partitionsConsumedConcurrently: PARTITIONS,
      eachMessage: async ({ message }) => {
        const value = JSON.parse(message.value!.toString()) as { key: string; n: number };
        await work();
        tally.record(value.key, value.n, Number(message.timestamp));
      },
    });
    await ready;
    const started = performance.now();
    await produce(async (batch) => {
      const now = String(Date.now());
      await producer.send({ topic, acks: -1, messages: batch.map(({ key, n }) => ({ key, value: JSON.stringify({ key, n, pad: PAD }), timestamp: now })) });
    });
    await withCap(tally);
    return tally.result(started);
  } finally {
    await Promise.all([consumer.disconnect(), producer.disconnect()]);
  }
}

async function botqueue(cluster: MockKafkaCluster, run: string): Promise<Result> {
  const namespace = `benchk${process.pid}_${run}`;
  const bq = await connect(`kafka://${cluster.bootstraps.join(',')}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`);
  const tally = new Tally();
  try {
    await bq.createTopic('bench', { partitions: PARTITIONS });
    await bq.broker.ensureGroup('bench', 'g');
    const worker = bq.worker<{ key: string; n: number }>('bench', HANDLER_MS > 0
      ? async (m) => {
          await work();
          tally.record(m.payload.key, m.payload.n, m.publishedAt);
        }
      : (m) => tally.record(m.payload.key, m.payload.n, m.publishedAt), { group: 'g', concurrency: 32, leaseMs: 10_000 });
    await worker.ready;
    // Timed from the same point as raw (its consumer has its assignment): the worker owns every partition.
    while (worker.ownedPartitions.length < PARTITIONS) await new Promise((resolve) => setTimeout(resolve, 5));
    const started = performance.now();
    await produce(async (batch) => {
      await bq.publishBatch('bench', batch.map(({ key, n }) => ({ key, payload: { key, n, pad: PAD } })));
    });
    await withCap(tally);
    const result = tally.result(started);
    await worker.close();
    return result;
  } finally {
    await bq.close();
    await dropPostgresSchema(STORE_URL, new KafkaNames(namespace).schema);
  }
}

const cluster = await MockKafkaCluster.start();
registerTopicCreator(cluster.bootstraps, (name, partitions) => cluster.createTopic(name, partitions));
const results: Record<'raw' | 'botqueue', Result[]> = { raw: [], botqueue: [] };
try {
  progress(`bench:kafka — ${fmtInt(MESSAGES)} messages, ${PARTITIONS} partitions, ${KEYS} keys, handlers ${HANDLER_MS > 0 ? `awaiting ${HANDLER_MS} ms` : 'no-op'}, ${RUNS} runs (+1 warm-up) on the mock cluster ${cluster.bootstraps.join(',')}`);
  for (let run = 0; run <= RUNS; run++) {
    for (const side of SIDES) {
      const result = side === 'raw' ? await raw(cluster, `r${run}`) : await botqueue(cluster, `r${run}`);
      progress(`  run ${run === 0 ? 'warm-up' : run} ${side}: ${fmtInt(result.msgsPerSec)} msgs/s, p99 ${result.p99Ms} ms, order violations ${result.orderViolations}`);
      if (run > 0) results[side].push(result);
    }
  }
} finally {
  await cluster.stop();
}
const summary = (list: Result[]): Result => ({
  msgsPerSec: median(list.map((r) => r.msgsPerSec)),
  p99Ms: median(list.map((r) => r.p99Ms)),
  orderViolations: Math.max(...list.map((r) => r.orderViolations)),
});
if (ONLY !== undefined) {
  const one = summary(results[ONLY]);
  console.log(`${ONLY}: ${fmtInt(one.msgsPerSec)} msgs/s, p99 ${one.p99Ms} ms (medians of ${RUNS}); no ratio with one side`);
  process.exit(0);
}
const rawMedian = summary(results.raw);
const bqMedian = summary(results.botqueue);
const ratioOfMedians = bqMedian.msgsPerSec / rawMedian.msgsPerSec;
// Each botqueue run follows its raw run on the same machine within seconds: the ratio of a pair
// is less moved by the shared machine's load drifting between runs (raw alone ranged 35,000-51,000
// msgs/s across the runs of one bench). The target is checked on the median of these.
const pairRatios = results.raw.map((r, i) => results.botqueue[i]!.msgsPerSec / r.msgsPerSec);
const ratio = median(pairRatios);
console.log(
  table([
    ['', 'msgs/s (median)', 'p99 ms (median)', 'order violations'],
    ['raw kafkajs', fmtInt(rawMedian.msgsPerSec), String(rawMedian.p99Ms), String(rawMedian.orderViolations)],
    ['botqueue kafka:', fmtInt(bqMedian.msgsPerSec), String(bqMedian.p99Ms), String(bqMedian.orderViolations)],
  ]),
);
console.log(`ratio botqueue / raw, median of the ${RUNS} runs' pairs: ${fmtRatio(ratio)} (target ≥ 0.85); pairs ${pairRatios.map(fmtRatio).join(', ')}; ratio of the medians ${fmtRatio(ratioOfMedians)}`);
console.log(JSON.stringify({ bench: 'kafka', messages: MESSAGES, runs: RUNS, raw: rawMedian, botqueue: bqMedian, ratio, pairRatios, ratioOfMedians }));
