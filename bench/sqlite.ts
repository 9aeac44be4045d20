/**
 * `npm run bench:sqlite` — throughput and latency of the SQLite backend, against the raw limit.
 *
 * Method. Every measurement runs on a fresh database file in its own temp directory
 * (os.tmpdir(), or --dir), with botqueue's defaults: WAL, synchronous=FULL, group commit. One
 * process, one client: producer and worker share it, as in a bot that receives and handles in
 * one process. Each measurement is repeated --runs times (default 3; the repetitions of all
 * scenarios are interleaved so machine noise spreads over all of them) and the median is
 * reported. An untimed small pass of each scenario runs first to warm the JIT (--no-warmup).
 *
 *  1a publish, batched: one producer awaits publishBatch(1,000 messages) in a loop. 1b: 64
 *     concurrent producers, each awaiting publish(one message) in a loop for 3 s (group commit
 *     puts the waiting messages of one event-loop turn in one transaction). A consumer group
 *     is subscribed, so each message also gets its pending row. 1c (info): 1a with producer ids
 *     (each message also writes a dedup record).
 *  2  end-to-end, 1,000 keys: a worker (no-op handler) runs while the producer awaits
 *     publishBatch(1,000) in a loop; msgs/s = N / (last handled − first publish). N = 50,000.
 *     The producer is usually far ahead, so this is mostly the drain of a 50,000 backlog; a run
 *     stops at 60 s (marked CAPPED; then msgs/s = handled / 60 s). 2b (info): concurrency 256.
 *  3  the same with 10 keys (hot conversations), and 10 keys / 1,000 keys.
 *  4  latency: a paced open-loop producer issues single publishes at 2,000 msg/s over 1,000
 *     keys for 10 s; latency = handler start − performance.now() just before publish() was
 *     called; the first second is not counted; p50/p99 are the medians over the runs.
 *  5  raw limit on better-sqlite3 directly (WAL, FULL): insert 1,000 rows in one transaction,
 *     then read them and delete each in one transaction (an upper bound, not an equivalent: one
 *     rowid table reading back exactly what it inserted); and single-row autocommit INSERTs.
 *     5c the same loop on botqueue's own schema (message + pending rows) with its fetch and ack
 *     batch sizes; 5d a hand-written claim-based ordered queue (claim key heads with a lease, skip
 *     keys in flight, delete on ack): the queue a user would write instead; 5e commits of 64
 *     single-row INSERTs, the raw twin of 1b's group commit. The header gives the disk's fsync
 *     latency and filesystem.
 *  6  ratios of the medians, with their targets (PASS/MISS; the script exits 0 either way).
 *
 * Flags (or BENCH_* environment variables): --runs=3 --scale=1 (multiplies counts and
 * durations) --concurrency=32 --partitions=16 --dir=/tmp --no-warmup
 * --only=publish-batch,publish-single,publish-ids,e2e-1000,e2e-1000-high,e2e-10,latency,raw-loop,raw-single,raw-schema,raw-claim,raw-group64
 * The last line of stdout is the whole result as JSON; progress goes to stderr.
 */
import { cpus } from 'node:os';
import { fmtInt, fmtMs, fmtRatio, median, progress, readSettings, table } from './lib.js';
import { diskFacts, rawBotqueueSchemaLoop, rawClaimQueueLoop, rawGroupCommits, rawLoop, rawSingleCommits } from './raw-sqlite.js';
import { endToEnd, latency, message, publishBatched, publishSingles, type E2eResult, type LatencyResult } from './scenarios.js';

const settings = readSettings();
const { runs, scale, concurrency, partitions, dir } = settings;
const scaled = (value: number, min: number): number => Math.max(min, Math.round(value * scale));

const BATCH = 1_000;
const PUBLISH_BATCH_TOTAL = scaled(100_000, BATCH);
const PRODUCERS = 64;
const PUBLISH_SINGLE_MS = scaled(3_000, 300);
const E2E_TOTAL = scaled(50_000, BATCH);
const E2E_CAP_MS = 60_000;
const LATENCY_RATE = 2_000;
const LATENCY_MS = scaled(10_000, 2_000);
const LATENCY_WARMUP_MS = 1_000;
const RAW_LOOP_TOTAL = scaled(100_000, BATCH);
const RAW_SINGLE_MS = scaled(2_000, 300);

/** Concurrency of the informational row 2b (more handlers in flight = more acks per commit). */
const HIGH_CONCURRENCY = 256;

const ids = ['publish-batch', 'publish-single', 'publish-ids', 'e2e-1000', 'e2e-1000-high', 'e2e-10', 'latency', 'raw-loop', 'raw-single', 'raw-schema', 'raw-claim', 'raw-group64'] as const;
/** Messages per transaction of the raw twin of 1b's group commit (64 producers, one message each). */
const RAW_GROUP = 64;
type Id = (typeof ids)[number];
for (const id of settings.only) {
  if (!(ids as readonly string[]).includes(id)) throw new Error(`bench: unknown scenario "${id}"; known: ${ids.join(', ')}`);
}
const wanted = (id: Id): boolean => settings.only.size === 0 || settings.only.has(id);

const rates: Record<Id, number[]> = {
  'publish-batch': [],
  'publish-single': [],
  'publish-ids': [],
  'e2e-1000': [],
  'e2e-1000-high': [],
  'e2e-10': [],
  latency: [],
  'raw-loop': [],
  'raw-single': [],
  'raw-schema': [],
  'raw-claim': [],
  'raw-group64': [],
};
type E2eId = 'e2e-1000' | 'e2e-1000-high' | 'e2e-10';
const e2eDetails: Record<E2eId, E2eResult[]> = { 'e2e-1000': [], 'e2e-1000-high': [], 'e2e-10': [] };
const latencies: LatencyResult[] = [];
const payloadOf = (n: number): { key: string; payload: unknown } => message(n, 1000);

async function runOnce(id: Id, label: string): Promise<void> {
  const started = performance.now();
  let note = '';
  switch (id) {
    case 'publish-batch':
      rates[id].push(await publishBatched(dir, partitions, PUBLISH_BATCH_TOTAL, BATCH, false));
      break;
    case 'publish-ids':
      rates[id].push(await publishBatched(dir, partitions, PUBLISH_BATCH_TOTAL, BATCH, true));
      break;
    case 'publish-single':
      rates[id].push(await publishSingles(dir, partitions, PRODUCERS, PUBLISH_SINGLE_MS));
      break;
    case 'e2e-1000':
    case 'e2e-1000-high':
    case 'e2e-10': {
      const keys = id === 'e2e-10' ? 10 : 1000;
      const result = await endToEnd(dir, partitions, keys, E2E_TOTAL, BATCH, id === 'e2e-1000-high' ? HIGH_CONCURRENCY : concurrency, E2E_CAP_MS);
      rates[id].push(result.rate);
      e2eDetails[id].push(result);
      note = ` (producer done at ${result.publishedAtS.toFixed(2)} s, last handled at ${result.elapsedS.toFixed(2)} s${result.capped ? ', CAPPED' : ''})`;
      break;
    }
    case 'latency': {
      const result = await latency(dir, partitions, LATENCY_RATE, LATENCY_MS, LATENCY_WARMUP_MS, concurrency);
      latencies.push(result);
      rates[id].push(result.p99);
      note = ` p50 ${fmtMs(result.p50)} p99 ${fmtMs(result.p99)}`;
      break;
    }
    case 'raw-loop':
      rates[id].push(rawLoop(dir, RAW_LOOP_TOTAL, BATCH, payloadOf));
      break;
    case 'raw-single':
      rates[id].push(rawSingleCommits(dir, RAW_SINGLE_MS, payloadOf));
      break;
    case 'raw-schema':
      rates[id].push(rawBotqueueSchemaLoop(dir, RAW_LOOP_TOTAL, BATCH, partitions, 256, concurrency, payloadOf));
      break;
    case 'raw-claim':
      rates[id].push(rawClaimQueueLoop(dir, RAW_LOOP_TOTAL, BATCH, concurrency * 8, concurrency, payloadOf));
      break;
    case 'raw-group64':
      rates[id].push(rawGroupCommits(dir, RAW_SINGLE_MS, RAW_GROUP, payloadOf));
      break;
  }
  const last = rates[id][rates[id].length - 1]!;
  const value = id === 'latency' ? '' : ` ${fmtInt(last)} msg/s`;
  progress(`  ${label} ${id}:${value}${note} [${((performance.now() - started) / 1000).toFixed(1)} s]`);
}

async function warmUp(): Promise<void> {
  progress('warm-up (untimed, small)');
  await publishBatched(dir, partitions, 5_000, BATCH, true);
  await publishSingles(dir, partitions, PRODUCERS, 300);
  await endToEnd(dir, partitions, 1000, 5_000, BATCH, concurrency, E2E_CAP_MS);
  await endToEnd(dir, partitions, 10, 2_000, BATCH, concurrency, E2E_CAP_MS);
  rawLoop(dir, 5_000, BATCH, payloadOf);
}

const benchStarted = performance.now();
progress(`botqueue bench:sqlite — runs=${runs} scale=${scale} concurrency=${concurrency} partitions=${partitions} dir=${dir}`);
if (!settings.noWarmup) await warmUp();
for (let run = 1; run <= runs; run++) {
  progress(`run ${run}/${runs}`);
  for (const id of ids) if (wanted(id)) await runOnce(id, `[${run}/${runs}]`);
}
const totalS = (performance.now() - benchStarted) / 1000;

// ------------------------------------------------------------------------------ report

const med = (id: Id): number => median(rates[id]);
const runsText = (values: number[], fmt: (v: number) => string): string => values.map(fmt).join(' / ');
const k = (v: number): string => (v >= 10_000 ? `${(v / 1000).toFixed(1)}k` : fmtInt(v));

const e2eNote = (id: E2eId): string => {
  const details = e2eDetails[id];
  if (details.length === 0) return '';
  const violations = details.reduce((s, d) => s + d.orderViolations, 0);
  const duplicates = details.reduce((s, d) => s + d.duplicates, 0);
  const capped = details.some((d) => d.capped);
  const producer = median(details.map((d) => d.publishedAtS));
  const elapsed = median(details.map((d) => d.elapsedS));
  return `producer done ${producer.toFixed(2)} s, last handled ${elapsed.toFixed(2)} s; order violations ${violations}, duplicates ${duplicates}${capped ? '; CAPPED at 60 s' : ''}`;
};

const rows: string[][] = [['#', 'measurement', 'median', 'runs', 'notes']];
const addRate = (num: string, id: Id, title: string, notes = ''): void => {
  if (!wanted(id)) return;
  rows.push([num, title, `${fmtInt(med(id))} msg/s`, runsText(rates[id], k), notes]);
};
addRate('1a', 'publish-batch', 'durable publish, publishBatch × 1,000, 1 producer', `${fmtInt(PUBLISH_BATCH_TOTAL)} msgs, auto ids`);
addRate('1b', 'publish-single', `durable publish, single msgs, ${PRODUCERS} concurrent producers`, `${PUBLISH_SINGLE_MS / 1000} s, await publish() in a loop`);
addRate('1c', 'publish-ids', '(info) as 1a with producer ids (dedup records)', `${fmtInt(PUBLISH_BATCH_TOTAL)} msgs`);
addRate('2', 'e2e-1000', 'end-to-end, 1,000 keys, ordered', e2eNote('e2e-1000'));
addRate('2b', 'e2e-1000-high', `(info) as 2 with worker concurrency ${HIGH_CONCURRENCY}`, e2eNote('e2e-1000-high'));
addRate('3', 'e2e-10', 'end-to-end, 10 keys, ordered', e2eNote('e2e-10'));
if (wanted('latency')) {
  const p50 = median(latencies.map((l) => l.p50));
  const p99 = median(latencies.map((l) => l.p99));
  const publishP50 = median(latencies.map((l) => l.publishP50));
  const publishP99 = median(latencies.map((l) => l.publishP99));
  const achieved = median(latencies.map((l) => l.achievedRate));
  const lost = latencies.reduce((s, l) => s + l.lost, 0);
  rows.push([
    '4',
    `latency at ${fmtInt(LATENCY_RATE)} msg/s, 1,000 keys: p50 / p99`,
    `${fmtMs(p50)} / ${fmtMs(p99)}`,
    latencies.map((l) => `${l.p50.toFixed(1)}/${l.p99.toFixed(1)}`).join(' · '),
    `max ${fmtMs(median(latencies.map((l) => l.max)))}; publish resolved p50 ${fmtMs(publishP50)} p99 ${fmtMs(publishP99)}; issued ${fmtInt(achieved)} msg/s for ${LATENCY_MS / 1000} s (first ${LATENCY_WARMUP_MS / 1000} s not counted)${lost > 0 ? `; LOST ${lost}` : ''}`,
  ]);
}
addRate('5a', 'raw-loop', 'raw better-sqlite3 loop: insert 1k/tx, read+delete 1k/tx', `${fmtInt(RAW_LOOP_TOTAL)} msgs, WAL, synchronous=FULL`);
addRate('5b', 'raw-single', 'raw better-sqlite3 single-row commits', `${RAW_SINGLE_MS / 1000} s, one INSERT per transaction`);
addRate('5c', 'raw-schema', "raw loop on botqueue's schema (messages + pending)", `${fmtInt(RAW_LOOP_TOTAL)} msgs; publish 1k/tx; fetch 256/partition; ack ${concurrency}/tx (message + pending row deleted)`);
addRate('5d', 'raw-claim', 'hand-written claim-based ordered queue', `${fmtInt(RAW_LOOP_TOTAL)} msgs; claim key heads not in flight (lease), ${concurrency * 8}/tx; delete on ack ${concurrency}/tx`);
addRate('5e', 'raw-group64', `raw commits of ${RAW_GROUP} single-row INSERTs per transaction`, `${RAW_SINGLE_MS / 1000} s; the raw twin of 1b's group commit`);

interface Ratio {
  name: string;
  value: number;
  target: number;
  pass: boolean | null;
}
const ratio = (name: string, a: Id, b: Id, target: number): Ratio | undefined => {
  if (!wanted(a) || !wanted(b)) return undefined;
  const value = med(a) / med(b);
  return { name, value, target, pass: Number.isFinite(value) ? value >= target : null };
};
const ratios = [
  ratio('e2e(1,000 keys) / raw loop (upper bound: one table, reads back what it inserted)', 'e2e-1000', 'raw-loop', 0.5),
  ratio("e2e(1,000 keys) / raw loop on botqueue's schema", 'e2e-1000', 'raw-schema', 0.5),
  ratio('e2e(1,000 keys) / hand-written claim queue', 'e2e-1000', 'raw-claim', 1),
  ratio('single publish (64 producers) / raw single commits', 'publish-single', 'raw-single', 2),
  ratio(`single publish (64 producers) / raw ${RAW_GROUP} rows per commit`, 'publish-single', 'raw-group64', 0.5),
  ratio('e2e 10 keys / e2e 1,000 keys', 'e2e-10', 'e2e-1000', 0.5),
].filter((r): r is Ratio => r !== undefined);

const cpu = cpus();
const disk = diskFacts(dir);
const header =
  `botqueue bench:sqlite — node ${process.version}, ${cpu.length} × ${cpu[0]?.model ?? 'cpu'}; WAL, synchronous=FULL (defaults), group commit; ` +
  `files in ${dir}; ${partitions} partitions; worker concurrency ${concurrency}, prefetch ${e2eDetails['e2e-1000'][0]?.prefetch ?? e2eDetails['e2e-10'][0]?.prefetch ?? 'default'}; ` +
  `median of ${runs} run(s); scale ${scale}; total ${totalS.toFixed(0)} s\n` +
  `disk: 4 KiB write + fdatasync median ${disk.fsyncMedianMs.toFixed(3)} ms, p99 ${disk.fsyncP99Ms.toFixed(3)} ms; filesystem ${disk.filesystem}; every raw loop reads synchronous back (2 = FULL)`;
const e2eMethod =
  'end-to-end method (rows 2, 2b, 3): producer and worker together on one client; producer awaits publishBatch(1,000) in a loop while the worker ' +
  `consumes (no-op handler); msgs/s = ${fmtInt(E2E_TOTAL)} / (last handled − first publish)`;

console.log('');
console.log(header);
console.log(e2eMethod);
console.log('');
console.log(table(rows));
if (ratios.length > 0) {
  console.log('');
  console.log(
    table([
      ['6', 'ratio (of medians)', 'value', 'target', ''],
      ...ratios.map((r) => ['', r.name, fmtRatio(r.value), `≥ ${r.target}`, r.pass === null ? 'n/a' : r.pass ? 'PASS' : 'MISS']),
    ]),
  );
}
console.log('');

const summary = (id: Id): { median: number; runs: number[] } | undefined => (wanted(id) ? { median: med(id), runs: rates[id] } : undefined);
console.log(
  JSON.stringify({
    bench: 'botqueue-sqlite',
    node: process.version,
    cpus: cpu.length,
    settings: {
      runs,
      scale,
      concurrency,
      highConcurrency: HIGH_CONCURRENCY,
      partitions,
      dir,
      synchronous: 'FULL',
      batch: BATCH,
      producers: PRODUCERS,
      e2eMessages: E2E_TOTAL,
      latencyRate: LATENCY_RATE,
      latencyMs: LATENCY_MS,
      e2eMethod: 'concurrent producer (publishBatch 1,000, awaited) and worker; first publish to last handled',
    },
    msgsPerSecond: {
      publishBatch: summary('publish-batch'),
      publishSingle64: summary('publish-single'),
      publishBatchWithIds: summary('publish-ids'),
      e2e1000Keys: summary('e2e-1000'),
      e2e1000KeysHighConcurrency: summary('e2e-1000-high'),
      e2e10Keys: summary('e2e-10'),
      rawLoop: summary('raw-loop'),
      rawSingleCommits: summary('raw-single'),
      rawBotqueueSchema: summary('raw-schema'),
      rawClaimQueue: summary('raw-claim'),
      rawGroupCommit64: summary('raw-group64'),
    },
    e2e: { keys1000: e2eDetails['e2e-1000'], keys1000HighConcurrency: e2eDetails['e2e-1000-high'], keys10: e2eDetails['e2e-10'] },
    latencyMs: wanted('latency')
      ? {
          p50: median(latencies.map((l) => l.p50)),
          p99: median(latencies.map((l) => l.p99)),
          publishP50: median(latencies.map((l) => l.publishP50)),
          publishP99: median(latencies.map((l) => l.publishP99)),
          runs: latencies,
        }
      : undefined,
    disk,
    ratios,
    totalSeconds: Number(totalS.toFixed(1)),
  }),
);
