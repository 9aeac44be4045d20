/**
 * A fleet of worker processes over one backlog, as a user runs a bot: the messages are
 * published first, then N worker processes (`fleet-worker.ts`) start together and drain them
 * with a handler that awaits a few ms and writes to its own SQLite file. Optionally one worker
 * is SIGKILLed and restarted every `churnEveryMs` (seeded choice). Used by `bench:rabbitmq`
 * (the "fleet" scenario, on SQLite and RabbitMQ) and by the RabbitMQ process tests.
 *
 * What it measures comes from the children's own lines: which (key, n) each handled and when,
 * so lost messages, duplicates, per-key order and each worker's share are checked from what
 * the handlers saw, not from what the queue says.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, type Botqueue, type PublishInput } from '../../src/index.js';
import type { FleetWorkerConfig } from './fleet-worker.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const SCRIPT = join(here, 'fleet-worker.ts');

export interface FleetOptions {
  url: string;
  topic?: string;
  group?: string;
  partitions?: number;
  messages: number;
  keys: number;
  workers?: number;
  concurrency?: number;
  leaseMs?: number;
  maxHandlerMs?: number;
  /** SIGKILL one worker (seeded choice) and start a new one every this many ms. */
  churnEveryMs?: number;
  /** Stop killing after this long (ms from the first kill's schedule). */
  churnForMs?: number;
  seed?: number;
  /** Give up after this long (ms since the workers were started). */
  timeoutMs?: number;
  /** Subscribe the group before publishing (default); false: the workers' start creates it, after the backlog was published. */
  declareGroupFirst?: boolean;
  /** Called every `probeEveryMs` while draining with the publisher's client and the handled count so far. */
  probe?: (bq: Botqueue, handledDistinct: number) => Promise<void>;
  probeEveryMs?: number;
}

export interface FleetResult {
  messages: number;
  /** Distinct messages handled. */
  handled: number;
  lost: number;
  /** Handler runs beyond the first per message (redeliveries after kills). */
  repeats: number;
  orderViolations: string[];
  /** Distinct messages handled per worker slot (a restarted worker keeps its slot). */
  perSlot: number[];
  /** From the first handler start to the last new message handled. */
  elapsedMs: number;
  msgsPerSec: number;
  /**
   * From the first worker connected (before it joined or created the group) to the last new
   * message handled: what a user waits for a backlog to drain, group set-up included, process
   * start-up not.
   */
  drainMsgsPerSec: number;
  kills: number;
  /** Lines `error …` the workers wrote. */
  errors: string[];
  timedOut: boolean;
  /** A key's next handler start minus its previous handler end: the queue's own latency per message of a key. */
  keyGapMs: { p50: number; p99: number };
  /** Date.now() when the workers were spawned. */
  startedAt: number;
  /** Each change of a worker's owned partitions, as it reported it (Date.now() on receipt). */
  ownedLog: Array<{ slot: number; at: number; partitions: number[] }>;
}

interface Child {
  slot: number;
  proc: ChildProcessWithoutNullStreams;
  alive: boolean;
  stderr: string;
}

/** mulberry32: seeded, so a run's choices can be replayed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

export async function runFleet(options: FleetOptions): Promise<FleetResult> {
  const topic = options.topic ?? 'fleet';
  const group = options.group ?? 'g';
  const workers = options.workers ?? 3;
  const seed = options.seed ?? 1;
  const random = seededRandom(seed);
  const timeoutMs = options.timeoutMs ?? 120_000;
  const dir = mkdtempSync(join(tmpdir(), 'bq-fleet-'));
  const bq = await connect(options.url);
  const children: Child[] = [];
  const timers: NodeJS.Timeout[] = [];
  try {
    await bq.createTopic(topic, { partitions: options.partitions ?? 16 });
    // Like a first deployment: publishers may run before any worker subscribed the group.
    if (options.declareGroupFirst !== false) await bq.broker.ensureGroup(topic, group);
    for (let i = 0; i < options.messages; i += 500) {
      const batch: PublishInput<{ n: number }>[] = [];
      for (let n = i; n < Math.min(options.messages, i + 500); n++) batch.push({ key: `chat:${n % options.keys}`, payload: { n } });
      await bq.publishBatch(topic, batch);
    }

    // (key, n) -> first end time; every handler run with its times, for the order check.
    const firstEnd = new Map<string, number>();
    const runs: Array<{ key: string; n: number; start: number; end: number }> = [];
    const perSlot = new Array<number>(workers).fill(0);
    const errors: string[] = [];
    const ownedLog: FleetResult['ownedLog'] = [];
    let firstStart = Number.POSITIVE_INFINITY;
    let firstConnected = Number.POSITIVE_INFINITY;
    let lastNew = 0;
    let repeats = 0;
    let done!: () => void;
    const allHandled = new Promise<void>((resolve) => (done = resolve));

    const start = (slot: number): Child => {
      const config: FleetWorkerConfig = {
        url: options.url,
        topic,
        group,
        concurrency: options.concurrency ?? 16,
        leaseMs: options.leaseMs ?? 2_000,
        maxHandlerMs: options.maxHandlerMs ?? 6,
        dbPath: join(dir, `worker-${slot}.db`),
        seed: Math.floor(random() * 2 ** 31),
      };
      // BOTQUEUE_FLEET_NODE_ARGS: extra node flags for the workers (e.g. --cpu-prof when profiling).
      const extra = process.env.BOTQUEUE_FLEET_NODE_ARGS?.split(' ').filter((a) => a !== '') ?? [];
      const proc = spawn(process.execPath, [...extra, '--import', 'tsx', SCRIPT, JSON.stringify(config)], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
      const child: Child = { slot, proc, alive: true, stderr: '' };
      proc.on('exit', () => (child.alive = false));
      proc.stderr.on("data", (chunk: Buffer) => { child.stderr = (child.stderr + chunk.toString()).slice(-4_000); if (process.env.FLEET_STDERR) process.stderr.write(chunk); });
      createInterface({ input: proc.stdout }).on('line', (line) => {
        if (line.startsWith('h ')) {
          const [, key, n, s, e] = line.split(' ');
          const startMs = Number(s);
          const endMs = Number(e);
          const id = `${key} ${n}`;
          runs.push({ key: key!, n: Number(n), start: startMs, end: endMs });
          if (startMs < firstStart) firstStart = startMs;
          if (firstEnd.has(id)) repeats++;
          else {
            firstEnd.set(id, endMs);
            perSlot[slot]!++;
            if (endMs > lastNew) lastNew = endMs;
            if (firstEnd.size === options.messages) done();
          }
        } else if (line.startsWith('connected ')) {
          firstConnected = Math.min(firstConnected, Number(line.slice(10)));
        } else if (line.startsWith('owned ')) {
          const list = line.slice(6);
          ownedLog.push({ slot, at: Date.now(), partitions: list === '' ? [] : list.split(',').map(Number) });
        } else if (line.startsWith('error ')) errors.push(line.slice(6));
      });
      children[slot] = child;
      return child;
    };

    const started = Date.now();
    for (let slot = 0; slot < workers; slot++) start(slot);
    let kills = 0;
    if (options.churnEveryMs !== undefined) {
      const churnUntil = started + (options.churnForMs ?? Number.POSITIVE_INFINITY);
      const churn = setInterval(() => {
        if (Date.now() > churnUntil) {
          clearInterval(churn);
          return;
        }
        const slot = Math.floor(random() * workers);
        const victim = children[slot]!;
        victim.proc.kill('SIGKILL');
        kills++;
        start(slot);
      }, options.churnEveryMs);
      timers.push(churn);
    }
    if (options.probe !== undefined) {
      const probe = options.probe;
      let probing = false;
      const timer = setInterval(() => {
        if (probing) return;
        probing = true;
        void probe(bq, firstEnd.size).finally(() => (probing = false));
      }, options.probeEveryMs ?? 500);
      timers.push(timer);
    }
    let timedOut = false;
    await Promise.race([
      allHandled,
      new Promise<void>((resolve) =>
        timers.push(
          setTimeout(() => {
            timedOut = true;
            resolve();
          }, timeoutMs),
        ),
      ),
    ]);
    for (const timer of timers) clearTimeout(timer);
    // Per key, handler runs by start time: a message must never start before an earlier one of its key ended for the last time.
    const orderViolations: string[] = [];
    const byKey = new Map<string, typeof runs>();
    for (const run of runs) {
      const list = byKey.get(run.key) ?? [];
      list.push(run);
      byKey.set(run.key, list);
    }
    const gaps: number[] = [];
    for (const [key, list] of byKey) {
      list.sort((a, b) => a.start - b.start);
      let highest = -1;
      let previousEnd = -1;
      for (const run of list) {
        if (run.n < highest) orderViolations.push(`${key}: ${run.n} started after ${highest}`);
        highest = Math.max(highest, run.n);
        if (previousEnd >= 0) gaps.push(run.start - previousEnd);
        previousEnd = run.end;
      }
    }
    gaps.sort((a, b) => a - b);
    const gapAt = (q: number): number => (gaps.length === 0 ? 0 : gaps[Math.min(gaps.length - 1, Math.floor(q * gaps.length))]!);
    const elapsedMs = lastNew - firstStart;
    return {
      messages: options.messages,
      handled: firstEnd.size,
      lost: options.messages - firstEnd.size,
      repeats,
      orderViolations,
      perSlot,
      elapsedMs,
      msgsPerSec: firstEnd.size / (elapsedMs / 1_000),
      drainMsgsPerSec: firstEnd.size / ((lastNew - firstConnected) / 1_000),
      kills,
      errors,
      timedOut,
      keyGapMs: { p50: gapAt(0.5), p99: gapAt(0.99) },
      startedAt: started,
      ownedLog,
    };
  } finally {
    for (const timer of timers) clearTimeout(timer);
    await Promise.all(
      children.filter((c) => c.alive).map(
        (c) =>
          new Promise<void>((resolve) => {
            // Gracefully first (the worker hands its partitions back), then for sure.
            const force = setTimeout(() => c.proc.kill('SIGKILL'), 3_000);
            c.proc.once('exit', () => {
              clearTimeout(force);
              resolve();
            });
            c.proc.kill('SIGTERM');
          }),
      ),
    );
    await bq.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
