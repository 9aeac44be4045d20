/**
 * `npm run bench:rabbitmq:cpu` — where the client's CPU goes, per message, on each side of
 * `npm run bench:rabbitmq`. On a 2-core machine RabbitMQ needs a core or more at these rates,
 * so the end-to-end figure is set by the CPU the two processes need per message together; this
 * prints the client's part, phase by phase (this process's user + system CPU / messages):
 *
 *  - raw amqplib: publish-only and drain phases of bench/raw-amqplib.ts;
 *  - botqueue on RabbitMQ: two producers awaiting publishBatch(1,000) into idle queues, then a
 *    worker (no-op handler, concurrency 32) draining them;
 *  - botqueue on memory: the same publish and drain on the in-process backend, i.e. the cost
 *    of the client and the worker with no broker at all (the floor for any backend).
 *
 * RabbitMQ's own CPU in each phase is printed beside (read from /proc, see brokerCpuMicros).
 *
 * Flags: --runs=3 --messages=50000. Medians; the last line of stdout is the result as JSON.
 */
import { connect, type Botqueue } from '../src/index.js';
import { dropPostgresSchema } from '../src/stores/postgres/index.js';
import { Names } from '../src/brokers/rabbitmq/names.js';
import { RabbitmqBroker } from '../src/brokers/rabbitmq/rabbitmq-broker.js';
import { brokerCpuMicros, fmtInt, median, progress, table } from './lib.js';
import { DEFAULTS, brokerCpuSince, cpuMicros, runRawAmqplib } from './raw-amqplib.js';

function flag(name: string, fallback: number): number {
  const raw = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`bench: --${name} must be a positive integer`);
  return value;
}

const RUNS = flag('runs', 3);
const MESSAGES = flag('messages', DEFAULTS.messages);
const AMQP_URL = process.env.BENCH_AMQP_URL ?? DEFAULTS.url;
const STORE_URL = process.env.BOTQUEUE_STORE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const PAD = 'x'.repeat(DEFAULTS.payloadBytes - 40);

interface Phases {
  publish: number;
  drain: number;
  /** RabbitMQ's CPU per message in the same phases (NaN on memory or where /proc is unreadable). */
  brokerPublish: number;
  brokerDrain: number;
}

/** Publish-only, then drain, on one botqueue connection; CPU µs per message of each. */
async function botqueuePhases(bq: Botqueue): Promise<Phases> {
  await bq.createTopic('cpu', { partitions: DEFAULTS.partitions });
  await bq.broker.ensureGroup('cpu', 'g');
  let cpu = process.cpuUsage();
  let broker = brokerCpuMicros();
  await Promise.all(
    [0, 1].map(async (p) => {
      let batch = [];
      for (let i = p; i < MESSAGES; i += 2) {
        const key = `k${i % DEFAULTS.keys}`;
        batch.push({ key, payload: { key, n: i, pad: PAD } });
        if (batch.length === 1_000) {
          await bq.publishBatch('cpu', batch);
          batch = [];
        }
      }
      if (batch.length > 0) await bq.publishBatch('cpu', batch);
    }),
  );
  const publish = cpuMicros(cpu) / MESSAGES;
  const brokerPublish = brokerCpuSince(broker) / MESSAGES;
  let handled = 0;
  let done!: () => void;
  const all = new Promise<void>((resolve) => (done = resolve));
  cpu = process.cpuUsage();
  broker = brokerCpuMicros();
  const worker = bq.worker('cpu', () => {
    if (++handled === MESSAGES) done();
  }, { group: 'g', concurrency: 32, leaseMs: 10_000 });
  const timer = setTimeout(done, 180_000);
  await all;
  clearTimeout(timer);
  const drain = cpuMicros(cpu) / MESSAGES;
  const brokerDrain = brokerCpuSince(broker) / MESSAGES;
  await worker.close();
  if (handled < MESSAGES) throw new Error(`bench: handled only ${handled} of ${MESSAGES}`);
  return { publish, drain, brokerPublish, brokerDrain };
}

async function onRabbitmq(run: number): Promise<Phases> {
  const namespace = `benchcpu${process.pid}_${run}`;
  const bq = await connect(`${AMQP_URL}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`);
  try {
    return await botqueuePhases(bq);
  } finally {
    if (bq.broker instanceof RabbitmqBroker) await bq.broker.deleteAllTopicObjects().catch(() => undefined);
    await bq.close();
    await dropPostgresSchema(STORE_URL, new Names(namespace).schema);
  }
}

async function onMemory(): Promise<Phases> {
  const bq = await connect('memory:');
  try {
    // RabbitMQ takes no part here.
    return { ...(await botqueuePhases(bq)), brokerPublish: Number.NaN, brokerDrain: Number.NaN };
  } finally {
    await bq.close();
  }
}

async function main(): Promise<void> {
  const samples = { raw: [] as Phases[], rabbitmq: [] as Phases[], memory: [] as Phases[] };
  // One warm-up round of each, not counted.
  for (let run = -1; run < RUNS; run++) {
    progress(run < 0 ? 'warm-up round (not counted)' : `run ${run + 1}/${RUNS}`);
    const raw = await runRawAmqplib({ ...DEFAULTS, url: AMQP_URL, messages: MESSAGES, queuePrefix: `bench.rawcpu.${process.pid}.${run + 1}` });
    const rabbitmq = await onRabbitmq(run + 1);
    const memory = await onMemory();
    if (run < 0) continue;
    samples.raw.push({ publish: raw.publishCpuMicros, drain: raw.consumeCpuMicros, brokerPublish: raw.publishBrokerCpuMicros, brokerDrain: raw.consumeBrokerCpuMicros });
    samples.rabbitmq.push(rabbitmq);
    samples.memory.push(memory);
  }
  const med = (list: Phases[]): Phases => ({
    publish: median(list.map((p) => p.publish)),
    drain: median(list.map((p) => p.drain)),
    brokerPublish: median(list.map((p) => p.brokerPublish)),
    brokerDrain: median(list.map((p) => p.brokerDrain)),
  });
  const result = { messages: MESSAGES, runs: RUNS, raw: med(samples.raw), rabbitmq: med(samples.rabbitmq), memory: med(samples.memory) };
  const us = (value: number): string => (Number.isNaN(value) ? '-' : value.toFixed(1));
  const row = (name: string, p: Phases): string[] => [name, us(p.publish), us(p.drain), us(p.publish + p.drain), us(p.brokerPublish), us(p.brokerDrain)];
  console.log(`\nClient CPU per message (µs, this process, user + system), ${fmtInt(MESSAGES)} messages, median of ${RUNS}:`);
  console.log(
    table([
      ['side', 'publish', 'consume', 'total', 'RabbitMQ: publish', 'consume'],
      row('raw amqplib', result.raw),
      row('botqueue on RabbitMQ', result.rabbitmq),
      row('botqueue on memory (no broker)', result.memory),
    ]),
  );
  console.log(JSON.stringify(result));
}

await main();
