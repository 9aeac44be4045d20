/**
 * `npm run bench:rabbitmq` — end-to-end throughput of botqueue's RabbitMQ backend against raw
 * amqplib on the same broker, queue type and guarantees, in one run.
 *
 * Both sides: 8 partitions as durable quorum queues with single active consumer, persistent
 * messages of ~200 bytes over 1,000 keys, publisher confirms with many publishes in flight,
 * manual acks of each message, per-key order checked on every message.
 *  - raw: bench/raw-amqplib.ts (phase 3: consumers subscribed, then N messages published;
 *    msgs/s = N / (first publish → last ack)).
 *  - botqueue: a worker (no-op handler, concurrency 32) runs, then two producers publish N
 *    messages with publishBatch(1,000) in a loop each (each producer owns half of the keys);
 *    msgs/s = N / (first publish → last handled). Messages carry no id (no dedup record), as on the raw side. "botqueue + ids"
 *    (info): every message has a producer id, so each publish also reserves and confirms a
 *    dedup record in PostgreSQL.
 *  - fleet: bench/fleet.ts — a backlog published first, then 3 worker processes with a handler
 *    that awaits 0–6 ms and writes to SQLite, on SQLite and on RabbitMQ; ratio RabbitMQ / SQLite
 *    (target ≥ 0.5). What users run, where the no-op loop above hid a 10–20× slowdown.
 * Every measurement is repeated --runs times (default 3), the runs of the three variants
 * interleaved so machine noise spreads over all of them; medians are reported, and the ratio
 * botqueue / raw (target ≥ 0.85).
 *
 * Flags (or BENCH_* env): --runs=3 --messages=50000 --concurrency=32 --producers=2 --batch=1000
 * --only=raw,botqueue,ids,fleet. The broker is
 * BENCH_AMQP_URL (default amqp://guest:guest@127.0.0.1:5672), the store BOTQUEUE_STORE_URL
 * (default postgres://postgres@127.0.0.1:5432/test). The last line of stdout is the result as JSON.
 */
import { connect, type Botqueue } from '../src/index.js';
import { dropPostgresSchema } from '../src/stores/postgres/index.js';
import { Names } from '../src/brokers/rabbitmq/names.js';
import { RabbitmqBroker } from '../src/brokers/rabbitmq/rabbitmq-broker.js';
import { brokerCpuMicros, fmtInt, fmtRatio, median, progress, table } from './lib.js';
import { DEFAULTS, brokerCpuSince, cpuMicros, runRawAmqplib } from './raw-amqplib.js';
import { FLEET, fleetOnRabbitmq, fleetOnSqlite, type FleetRun } from './fleet.js';

function flag(name: string, fallback: number): number {
  const arg = process.argv.slice(2).find((a) => a.startsWith(`--${name}=`));
  const raw = arg?.slice(name.length + 3) ?? process.env[`BENCH_${name.toUpperCase()}`];
  const value = raw === undefined ? fallback : Number(raw);
  if (!Number.isFinite(value) || value < 1) throw new Error(`bench: --${name} must be a positive number`);
  return Math.round(value);
}

const RUNS = flag('runs', 3);
/** Rounds run first and thrown away (JIT warm-up, first connections), for every variant alike. */
const WARMUP = Number(process.argv.find((a) => a.startsWith('--warmup='))?.slice(9) ?? process.env.BENCH_WARMUP ?? 1);
if (!Number.isInteger(WARMUP) || WARMUP < 0) throw new Error('bench: --warmup must be a whole number >= 0');
const MESSAGES = flag('messages', DEFAULTS.messages);
const CONCURRENCY = flag('concurrency', 32);
const ONLY = new Set((process.argv.find((a) => a.startsWith('--only='))?.slice(7) ?? 'raw,botqueue,ids,fleet').split(','));
const AMQP_URL = process.env.BENCH_AMQP_URL ?? DEFAULTS.url;
const STORE_URL = process.env.BOTQUEUE_STORE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const KEYS = DEFAULTS.keys;
const PARTITIONS = DEFAULTS.partitions;
const BATCH = flag('batch', 1_000);
/** Concurrent producers, each awaiting publishBatch(BATCH) in a loop. KEYS must be a multiple of it. */
const IN_FLIGHT_BATCHES = flag('producers', 2);
const CAP_MS = 180_000;
const PAD = 'x'.repeat(DEFAULTS.payloadBytes - 40);

interface E2e {
  msgsPerSec: number;
  orderViolations: number;
  /** CPU per message of this process and of RabbitMQ over the run, µs. */
  clientCpuMicros: number;
  brokerCpuMicros: number;
}

async function botqueueEndToEnd(run: string, withIds: boolean, MESSAGES: number): Promise<E2e> {
  const namespace = `bench${process.pid}_${run}_${withIds ? 'i' : 'n'}`;
  const bq: Botqueue = await connect(`${AMQP_URL}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`);
  try {
    await bq.createTopic('bench', { partitions: PARTITIONS });
    await bq.broker.ensureGroup('bench', 'g');
    let handled = 0;
    let lastHandledAt = 0;
    const lastN = new Map<string, number>();
    let violations = 0;
    let done!: () => void;
    const allHandled = new Promise<void>((resolve) => (done = resolve));
    const worker = bq.worker<{ n: number }>(
      'bench',
      (m) => {
        const before = lastN.get(m.key!);
        if (before !== undefined && m.payload.n <= before) violations++;
        lastN.set(m.key!, m.payload.n);
        handled++;
        if (handled === MESSAGES) {
          lastHandledAt = performance.now();
          done();
        }
      },
      { group: 'g', concurrency: CONCURRENCY, leaseMs: 10_000 },
    );
    await worker.ready;
    const cpu = process.cpuUsage();
    const broker = brokerCpuMicros();
    const started = performance.now();
    // Each producer owns the keys ≡ p (mod IN_FLIGHT_BATCHES), so every key has one producer
    // and "publish order" per key is defined (concurrent publishes of one key have no order).
    const producer = async (p: number): Promise<void> => {
      let batch = [];
      for (let i = p; i < MESSAGES; i += IN_FLIGHT_BATCHES) {
        const key = `k${i % KEYS}`;
        batch.push(withIds ? { key, id: `m${i}`, payload: { key, n: i, pad: PAD } } : { key, payload: { key, n: i, pad: PAD } });
        if (batch.length === BATCH) {
          await bq.publishBatch('bench', batch);
          batch = [];
        }
      }
      if (batch.length > 0) await bq.publishBatch('bench', batch);
    };
    await Promise.all(Array.from({ length: IN_FLIGHT_BATCHES }, (_, p) => producer(p)));
    const timer = setTimeout(done, CAP_MS);
    await allHandled;
    clearTimeout(timer);
    const clientCpu = cpuMicros(cpu) / MESSAGES;
    const brokerCpu = brokerCpuSince(broker) / MESSAGES;
    await worker.close();
    if (handled < MESSAGES) throw new Error(`botqueue handled only ${handled} of ${MESSAGES} in ${CAP_MS} ms`);
    return {
      msgsPerSec: MESSAGES / ((lastHandledAt - started) / 1000),
      orderViolations: violations + worker.orderViolations,
      clientCpuMicros: clientCpu,
      brokerCpuMicros: brokerCpu,
    };
  } finally {
    if (bq.broker instanceof RabbitmqBroker) await bq.broker.deleteAllTopicObjects().catch(() => undefined);
    await bq.close();
    await dropPostgresSchema(STORE_URL, new Names(namespace).schema);
  }
}

async function main(): Promise<void> {
  const raw: number[] = [];
  const plain: number[] = [];
  const ids: number[] = [];
  /** Client and broker CPU per message (µs) of each counted run, per variant. */
  const cpu = { raw: [] as [number, number][], botqueue: [] as [number, number][], ids: [] as [number, number][] };
  const fleet = { sqlite: [] as FleetRun[], rabbitmq: [] as FleetRun[] };
  let violations = 0;
  for (let round = 0; round < WARMUP; round++) {
    const messages = Math.min(MESSAGES, 20_000);
    progress(`warm-up ${round + 1}/${WARMUP} (${fmtInt(messages)} messages each, not counted)`);
    if (ONLY.has('raw')) await runRawAmqplib({ ...DEFAULTS, url: AMQP_URL, messages, queuePrefix: `bench.raw.${process.pid}.w${round}` });
    if (ONLY.has('botqueue')) violations += (await botqueueEndToEnd(`w${round}`, false, messages)).orderViolations;
    if (ONLY.has('ids')) violations += (await botqueueEndToEnd(`w${round}`, true, messages)).orderViolations;
  }
  for (let run = 0; run < RUNS; run++) {
    if (ONLY.has('fleet')) {
      // RabbitMQ deletes the quorum queues of the variants before in the background: let it
      // finish, so that neither backend's fleet pays for another variant's clean-up.
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      progress(`run ${run + 1}/${RUNS}: fleet of 3 worker processes on SQLite, then on RabbitMQ`);
      fleet.sqlite.push(await fleetOnSqlite(String(run), run + 1));
      fleet.rabbitmq.push(await fleetOnRabbitmq(AMQP_URL, STORE_URL, String(run), run + 1));
    }
    if (ONLY.has('raw')) {
      progress(`run ${run + 1}/${RUNS}: raw amqplib`);
      const r = await runRawAmqplib({ ...DEFAULTS, url: AMQP_URL, messages: MESSAGES, queuePrefix: `bench.raw.${process.pid}.${run}` });
      raw.push(r.endToEndMsgsPerSec);
      cpu.raw.push([r.endToEndCpuMicros, r.endToEndBrokerCpuMicros]);
    }
    if (ONLY.has('botqueue')) {
      progress(`run ${run + 1}/${RUNS}: botqueue`);
      const b = await botqueueEndToEnd(String(run), false, MESSAGES);
      plain.push(b.msgsPerSec);
      cpu.botqueue.push([b.clientCpuMicros, b.brokerCpuMicros]);
      violations += b.orderViolations;
    }
    if (ONLY.has('ids')) {
      progress(`run ${run + 1}/${RUNS}: botqueue with ids`);
      const i = await botqueueEndToEnd(String(run), true, MESSAGES);
      ids.push(i.msgsPerSec);
      cpu.ids.push([i.clientCpuMicros, i.brokerCpuMicros]);
      violations += i.orderViolations;
    }
    progress(`  raw ${fmtInt(raw.at(-1) ?? NaN)}  botqueue ${fmtInt(plain.at(-1) ?? NaN)}  with ids ${fmtInt(ids.at(-1) ?? NaN)}  fleet sqlite ${fmtInt(fleet.sqlite.at(-1)?.msgsPerSec ?? NaN)} rabbitmq ${fmtInt(fleet.rabbitmq.at(-1)?.msgsPerSec ?? NaN)} msg/s`);
  }
  const fleetSummary = (runs: FleetRun[]) => ({
    msgsPerSec: median(runs.map((r) => r.msgsPerSec)),
    samples: runs.map((r) => Math.round(r.msgsPerSec)),
    lost: runs.reduce((sum, r) => sum + r.lost, 0),
    orderViolations: runs.reduce((sum, r) => sum + r.orderViolations, 0),
    perWorker: runs.map((r) => r.perWorker),
  });
  const result = {
    messages: MESSAGES,
    runs: RUNS,
    rawMsgsPerSec: median(raw),
    botqueueMsgsPerSec: median(plain),
    botqueueWithIdsMsgsPerSec: median(ids),
    ratio: median(plain) / median(raw),
    ratioWithIds: median(ids) / median(raw),
    orderViolations: violations,
    samples: { raw, botqueue: plain, botqueueWithIds: ids },
    fleet: ONLY.has('fleet') ? { ...FLEET, sqlite: fleetSummary(fleet.sqlite), rabbitmq: fleetSummary(fleet.rabbitmq), ratio: median(fleet.rabbitmq.map((r) => r.msgsPerSec)) / median(fleet.sqlite.map((r) => r.msgsPerSec)) } : undefined,
    cpuMicrosPerMessage: Object.fromEntries(
      Object.entries(cpu).map(([variant, runs]) => [variant, { client: median(runs.map((r) => r[0])), broker: median(runs.map((r) => r[1])) }]),
    ),
  };
  if (raw.length + plain.length + ids.length > 0) {
    console.log(`\nRabbitMQ end-to-end, ${fmtInt(MESSAGES)} messages, ${KEYS} keys, ${PARTITIONS} quorum queues, median of ${RUNS}:`);
    console.log(
      table([
        ['variant', 'msg/s', 'vs raw'],
        ['raw amqplib (confirms, manual acks)', fmtInt(result.rawMsgsPerSec), '1.00×'],
        ['botqueue (ordered worker)', fmtInt(result.botqueueMsgsPerSec), `${fmtRatio(result.ratio)} (target ≥ 0.85: ${result.ratio >= 0.85 ? 'PASS' : 'MISS'})`],
        ['botqueue + ids (dedup in PostgreSQL)', fmtInt(result.botqueueWithIdsMsgsPerSec), fmtRatio(result.ratioWithIds)],
      ]),
    );
    console.log(`per-key order violations: ${violations}`);
    // Where the difference comes from: on 2 cores the rate follows client + broker CPU per message.
    const us = (value: number): string => (Number.isNaN(value) ? 'n/a' : value.toFixed(1));
    console.log('\nCPU per message in the end-to-end runs (µs, user + system, medians; broker read from /proc):');
    console.log(
      table([
        ['variant', 'client', 'RabbitMQ', 'sum'],
        ...Object.entries(result.cpuMicrosPerMessage).map(([variant, c]) => [variant, us(c.client), us(c.broker), us(c.client + c.broker)]),
      ]),
    );
  }
  if (result.fleet !== undefined) {
    const f = result.fleet;
    console.log(`\nFleet: ${fmtInt(FLEET.messages)} messages over ${FLEET.keys} keys published first (no group yet), then ${FLEET.workers} worker processes`);
    console.log(`(concurrency ${FLEET.concurrency}, leaseMs ${FLEET.leaseMs}, handler awaits 0–${FLEET.maxHandlerMs} ms and writes a row to its own SQLite file), median of ${RUNS}:`);
    console.log(
      table([
        ['backend', 'msg/s', 'vs SQLite', 'lost', 'order violations', 'per worker (last run)'],
        ['SQLite (one file, 3 processes)', fmtInt(f.sqlite.msgsPerSec), '1.00×', String(f.sqlite.lost), String(f.sqlite.orderViolations), f.sqlite.perWorker.at(-1)?.join(' / ') ?? ''],
        ['RabbitMQ (quorum queues, PostgreSQL store)', fmtInt(f.rabbitmq.msgsPerSec), `${fmtRatio(f.ratio)} (target ≥ 0.5: ${f.ratio >= 0.5 ? 'PASS' : 'MISS'})`, String(f.rabbitmq.lost), String(f.rabbitmq.orderViolations), f.rabbitmq.perWorker.at(-1)?.join(' / ') ?? ''],
      ]),
    );
  }
  console.log(JSON.stringify(result));
}

await main();
