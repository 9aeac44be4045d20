/**
 * RabbitMQ with a fleet of worker processes, as a bot runs in production: three processes
 * started together over a backlog, with a handler that awaits a few ms and writes to its own
 * SQLite file (`test/support/worker-fleet.ts`). Checks what issue 10 found broken: every
 * worker gets its share, SIGKILL churn loses nothing and keeps order at a useful rate, and
 * `stats()` reports the true backlog while the fleet drains it.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Botqueue } from '../../src/index.js';
import { Names } from '../../src/brokers/rabbitmq/names.js';
import { open as openRabbitmq } from '../../src/brokers/rabbitmq/index.js';
import type { CoordinationStore } from '../../src/stores/store.js';
import type { WorkerFixtureConfig } from './fixtures/worker.js';
import { orderViolations, waitFor } from './harness.js';
import { missingServices, reportMissing, STORE_URL } from '../support/services.js';
import { runFleet, type FleetResult } from '../support/worker-fleet.js';
import { rabbitmqFactory } from './rabbitmq-harness.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const WORKER_FIXTURE = join(ROOT, 'test', 'conformance', 'fixtures', 'worker.ts');
const PARTITIONS = 16;

/** The store's own word on whether the group still waits for its copy of the unclaimed backlog. */
async function storeQuery<R extends Record<string, unknown>>(url: string, sql: (schema: string) => string, params: unknown[]): Promise<R[]> {
  const schema = new Names(new URL(url).searchParams.get('namespace')!).schema;
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: STORE_URL });
  await client.connect();
  try {
    return (await client.query<R>(sql(`"${schema}"`), params)).rows;
  } finally {
    await client.end();
  }
}

async function backfillPending(url: string, topic: string, group: string): Promise<boolean> {
  const rows = await storeQuery<{ pending: boolean }>(url, (s) => `SELECT backfill_pending AS pending FROM ${s}.groups WHERE topic = $1 AND name = $2`, [topic, group]);
  return rows[0]?.pending === true;
}

/** Ids the backfill recorded as copied so far (its ledger; emptied when the backfill ends). */
async function copiedSoFar(url: string): Promise<number> {
  const rows = await storeQuery<{ n: string }>(url, (s) => `SELECT count(*) AS n FROM ${s}.backfill_copied`, []);
  return Number(rows[0]?.n ?? 0);
}

/** Copies claimed from batches never recorded: the batch the killed copier was publishing. */
async function claimsOfUnrecordedBatches(url: string): Promise<number> {
  const rows = await storeQuery<{ n: string }>(url, (s) => `SELECT count(*) AS n FROM ${s}.backfill_claims c JOIN ${s}.backfill_batches b USING (topic, grp, batch) WHERE NOT b.recorded`, []);
  return Number(rows[0]?.n ?? 0);
}
const LEASE_MS = 2_000;
const CHURN_LEASE_MS = 1_000;
const SEED = Number(process.env.BOTQUEUE_TEST_SEED ?? Date.now() % 100_000);

/** When every worker's latest owned set is its fair share (±1) and together they own every partition; undefined if never. */
function balancedAt(result: FleetResult, workers: number): number | undefined {
  const latest = new Map<number, number[]>();
  for (const entry of result.ownedLog) {
    latest.set(entry.slot, entry.partitions);
    if (latest.size < workers) continue;
    const counts = [...latest.values()].map((p) => p.length);
    const owned = new Set([...latest.values()].flat());
    if (owned.size === PARTITIONS && Math.max(...counts) - Math.min(...counts) <= 1) return entry.at;
  }
  return undefined;
}

function summary(result: FleetResult): string {
  return JSON.stringify({ ...result, ownedLog: result.ownedLog.length, orderViolations: result.orderViolations.slice(0, 5), errors: result.errors.slice(0, 5) });
}

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
if (!reportMissing('RabbitMQ worker fleet', await missingServices(), register)) {
  const factory = rabbitmqFactory('bqf');
  afterEach(() => factory.cleanupUsed());

  describe('RabbitMQ: a fleet of three worker processes', { concurrency: 1 }, () => {
    test('three processes started at once each get their share (±1 partition) within two lease periods and all handle messages', async () => {
      // Published before any worker subscribed: the workers' start creates the group and copies the backlog to it.
      const result = await runFleet({ url: factory.url(), partitions: PARTITIONS, messages: 6_000, keys: 200, concurrency: 4, maxHandlerMs: 20, leaseMs: LEASE_MS, seed: SEED, declareGroupFirst: false });
      const detail = `seed ${SEED}: ${summary(result)}`;
      assert.equal(result.lost, 0, detail);
      assert.deepEqual(result.orderViolations, [], detail);
      for (const [slot, handled] of result.perSlot.entries()) assert.ok(handled > 0, `worker ${slot} handled nothing; ${detail}`);
      const balanced = balancedAt(result, 3);
      assert.ok(balanced !== undefined, `the group never balanced; ${detail}`);
      assert.ok(balanced - result.startedAt <= 2 * LEASE_MS + 3_000, `balanced ${balanced - result.startedAt} ms after the processes were spawned (process start-up included); ${detail}`);
    });

    test('SIGKILL of one of three workers every 2 s: nothing lost, order kept, throughput at least 0.35 of the run without kills', async () => {
      console.log(`# churn seed ${SEED}`);
      // A handler slow enough that the 10,000 messages take several kill periods to drain.
      // The group is declared before publishing, so kills hit workers, not the copy of a backlog
      // to a new group (that crash and its at-least-once window have their own test below).
      // leaseMs 1,000: a SIGKILLed worker's partitions wait for its lease to expire before another
      // member takes them, so with a kill every 2 s the lease sets the rate (with 2,000 a third of
      // the partitions stood still most of the time: 0.46–0.83 of the calm rate across runs).
      const workload = { partitions: PARTITIONS, messages: 10_000, keys: 200, concurrency: 4, maxHandlerMs: 20, leaseMs: CHURN_LEASE_MS, seed: SEED, timeoutMs: 90_000 };
      const calm = await runFleet({ url: factory.url(), ...workload });
      assert.equal(calm.lost, 0, summary(calm));
      const churn = await runFleet({ url: factory.url(), ...workload, churnEveryMs: 2_000, churnForMs: 60_000 });
      const detail = `seed ${SEED}\ncalm: ${summary(calm)}\nchurn: ${summary(churn)}`;
      console.log(`# without kills ${calm.msgsPerSec.toFixed(0)} msgs/s; with a kill every 2 s ${churn.msgsPerSec.toFixed(0)} msgs/s (${churn.kills} kills, ${churn.repeats} handled again)`);
      assert.equal(churn.timedOut, false, detail);
      assert.equal(churn.lost, 0, detail);
      assert.deepEqual(churn.orderViolations, [], detail);
      assert.ok(churn.kills >= 2, `the run ended before two kills; ${detail}`);
      // The stall issue 10 found gave about 0.1 of the calm rate (1,461 of 10,000 in 90 s); a
      // healthy fleet measures 0.6-0.8 on an idle 2-core box, and down to 0.46 on a loaded one
      // (a restarted worker takes seconds to start under tsx): the bound catches the stall.
      assert.ok(churn.msgsPerSec >= 0.35 * calm.msgsPerSec, `churn ${churn.msgsPerSec.toFixed(0)} vs calm ${calm.msgsPerSec.toFixed(0)} msgs/s; ${detail}`);
    });

    test('the process copying a new group\'s backlog is SIGKILLed mid-copy: the next one carries on, nothing lost, order kept', async () => {
      const url = factory.url();
      const bq = await connect(url);
      const dir = mkdtempSync(join(tmpdir(), 'bq-backfill-'));
      const children: ChildProcess[] = [];
      try {
        const messages = 30_000;
        await bq.createTopic('bf', { partitions: PARTITIONS });
        for (let i = 0; i < messages; i += 1_000) {
          await bq.publishBatch('bf', Array.from({ length: 1_000 }, (_, j) => ({ key: `chat:${(i + j) % 200}`, payload: { n: i + j } })));
        }
        const log = join(dir, 'handled.log');
        const worker = (): ChildProcess => {
          const config: WorkerFixtureConfig = { url, topic: 'bf', options: { group: 'g', concurrency: 16, leaseMs: LEASE_MS }, log };
          const child = spawn(process.execPath, ['--import', 'tsx', WORKER_FIXTURE, JSON.stringify(config)], { cwd: ROOT, stdio: ['pipe', 'ignore', 'inherit'] });
          children.push(child);
          return child;
        };
        const copier = worker();
        // Kill it once part of the backlog was copied, while the copy is still going: most of a
        // copier's time goes to publishing a batch, so the kill usually lands between a batch's
        // publish and its record, and the next copier copies that batch again.
        await waitFor('the copy under way', async () => (await copiedSoFar(url)) >= 3_000, 60_000, 5);
        copier.kill('SIGKILL');
        const pending = await backfillPending(url, 'bf', 'g');
        assert.equal(pending, true, 'the copier finished before it was killed: nothing was tested');
        worker();
        worker();
        const handled = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter((l) => l !== '') : []);
        await waitFor('every message handled', () => new Set(handled().map((l) => l.split(' ').slice(0, 2).join(' '))).size === messages, 90_000, 200);
        await waitFor('the backfill recorded as done', async () => !(await backfillPending(url, 'bf', 'g')), 10_000, 100);
        // Every handling in order, repeats included: a message the killed copier was handling
        // may run again, before its successors (at least once), but a twin copy of the batch the
        // copier was publishing must never run after them.
        const lines = handled();
        const events = lines.map((line) => {
          const [key, n] = line.split(' ');
          return { key: key!, n: Number(n) };
        });
        const twinsClaimed = await claimsOfUnrecordedBatches(url);
        console.log(`# copier killed mid-copy: ${lines.length - messages} handled again, ${twinsClaimed} copies of the unrecorded batch claimed`);
        assert.deepEqual(orderViolations(events), []);
        // What ran twice ran first in the killed copier (its handlers in flight, or handled but
        // not yet acked), never in a live worker.
        const firstBy = new Map<string, string>();
        const repeatedAfterLive: string[] = [];
        for (const line of lines) {
          const [key, n, pid] = line.split(' ');
          const id = `${key} ${n}`;
          const first = firstBy.get(id);
          if (first === undefined) firstBy.set(id, pid!);
          else if (first !== String(copier.pid)) repeatedAfterLive.push(`${id} first in ${first}`);
        }
        assert.deepEqual(repeatedAfterLive, []);
      } finally {
        for (const child of children) child.kill('SIGKILL');
        await bq.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });

    test('a copier that dies between a batch\'s publish and its record: the batch is copied again, and only one copy of each message is handled, in order', async () => {
      const url = factory.url();
      const messages = 4_000;
      const producer = await connect(url);
      const handledLog: Array<{ key: string; n: number }> = [];
      try {
        await producer.createTopic('bf', { partitions: 4 });
        for (let i = 0; i < messages; i += 1_000) {
          await producer.publishBatch('bf', Array.from({ length: 1_000 }, (_, j) => ({ key: `chat:${(i + j) % 50}`, id: `m${i + j}`, payload: { n: i + j } })));
        }
        // The dying copier: its second batch is published, then its record fails, as if the
        // process died there; then it goes away (its lock and channel with it).
        const dying = await openRabbitmq(url);
        const store = (dying as unknown as { store: CoordinationStore }).store;
        const recordCopied = store.recordCopied.bind(store);
        let records = 0;
        let died!: () => void;
        const death = new Promise<void>((resolve) => (died = resolve));
        store.recordCopied = async (...args) => {
          if (++records === 2) {
            died();
            throw new Error('the copier died after publishing its second batch');
          }
          return recordCopied(...args);
        };
        await dying.ensureGroup('bf', 'g');
        await death;
        await dying.close();
        // The next process carries the backfill on and handles everything.
        const bq = await connect(url);
        try {
          const worker = bq.worker<{ n: number }>('bf', (message) => {
            handledLog.push({ key: message.key!, n: message.payload.n });
          }, { group: 'g', concurrency: 16, leaseMs: LEASE_MS });
          await waitFor('every message handled', () => new Set(handledLog.map((h) => h.n)).size === messages, 60_000, 50);
          // Twins come behind the rest of the backlog: give them time to arrive (and be dropped).
          await waitFor('the backfill recorded as done', async () => !(await backfillPending(url, 'bf', 'g')), 20_000, 100);
          await new Promise((resolve) => setTimeout(resolve, 1_000));
          await worker.close();
        } finally {
          await bq.close();
        }
        const twinsClaimed = await claimsOfUnrecordedBatches(url);
        assert.ok(twinsClaimed > 0, 'no copy of the unrecorded batch was claimed: the crash window was not exercised');
        assert.equal(handledLog.length, messages, `${handledLog.length - messages} messages handled twice (${twinsClaimed} copies claimed from the unrecorded batch)`);
        assert.deepEqual(orderViolations(handledLog), []);
      } finally {
        await producer.close();
      }
    });

    test('stats() from another process reports the true backlog and lag while the fleet drains', async () => {
      const messages = 6_000;
      const samples: Array<{ at: number; truth: number; backlog: number; oldestAgeMs: number; members: number }> = [];
      const probe = async (bq: Botqueue, handled: number): Promise<void> => {
        const [topic] = await bq.stats('fleet');
        const group = topic!.groups[0]!;
        samples.push({ at: Date.now(), truth: messages - handled, backlog: group.backlog, oldestAgeMs: group.oldestAgeMs, members: group.members });
      };
      const publishedBy = Date.now();
      const result = await runFleet({ url: factory.url(), partitions: PARTITIONS, messages, keys: 200, concurrency: 4, maxHandlerMs: 20, leaseMs: LEASE_MS, seed: SEED, probe, probeEveryMs: 400 });
      assert.equal(result.lost, 0, summary(result));
      assert.deepEqual(result.orderViolations, [], summary(result));
      const balanced = balancedAt(result, 3);
      assert.ok(balanced !== undefined, summary(result));
      // Partitions move while the group forms; from then on every sample must be true.
      const steady = samples.filter((s) => s.at > balanced + 300 && s.truth > 200);
      const detail = `samples: ${JSON.stringify(samples)}`;
      assert.ok(steady.length >= 4, `only ${steady.length} samples after the group balanced; ${detail}`);
      for (const sample of steady) {
        // `truth` counts a message as done when its handler wrote its line, just before the ack:
        // the backlog may exceed it by what is being acked (at most the fleet's 12 slots), plus
        // what was handled since the report (100 ms at ~1,000 msgs/s).
        const slack = 12 + 150 + Math.round(0.03 * sample.truth);
        assert.ok(Math.abs(sample.backlog - sample.truth) <= slack, `backlog ${sample.backlog} vs ${sample.truth} unsettled (±${slack}); ${detail}`);
        assert.equal(sample.members, 3, detail);
        assert.ok(sample.oldestAgeMs > 0 && sample.oldestAgeMs <= sample.at - publishedBy + 1_000, `oldestAgeMs ${sample.oldestAgeMs}; ${detail}`);
      }
    });
  });
}
