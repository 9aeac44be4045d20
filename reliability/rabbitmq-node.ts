/**
 * d. RabbitMQ: a PRIVATE node (test/support/private-rabbitmq.ts: its own node name, ports and
 * data dir; the machine's shared broker on 5672 is never touched) is SIGKILLed mid-run (its
 * Erlang VM, no clean shutdown), left dead a moment, and started again on the same data dir,
 * while publishers (publishBatch on `amqp://…?namespace=…&store=postgres://…`) and worker processes
 * (reliability/worker.ts, ctx.once into the effect store) keep running.
 *
 * The ledger counts as 'ok' only a batch whose publishBatch resolved. A batch that failed is
 * retried, same ids (deduplication makes that safe), until it is acknowledged or the give-up
 * deadline passes, when it stays 'unknown'; a chain does not start its next batch before the
 * current one is settled either way, so each key's publishes stay in order. Then the run waits
 * for the backlog to drain and checks with the checker: every acknowledged message handled
 * once, in key order.
 *
 * Needs rabbitmq-server installed (to start a node) and PostgreSQL (the store). Missing either,
 * the scenario says "skipped: why" and, under CI, targetsMissed counts that as a miss.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Names } from '../src/brokers/rabbitmq/names.js';
import { connect, type Botqueue } from '../src/index.js';
import { dropPostgresSchema } from '../src/stores/postgres/index.js';
import { STORE_URL } from '../test/support/services.js';
import { findRabbitmqScripts, startPrivateRabbit, type PrivateRabbit } from '../test/support/private-rabbitmq.js';
import { check, type LedgerEntry } from './checker.js';
import { EffectStore } from './effects.js';
import type { ScenarioReport } from './run.js';
import type { WorkerConfig } from './worker.js';
import { dlqIds, startWorker, stopWorkers, waitUntil, type WorkerProc } from './worker-processes.js';

export interface BrokerKillOptions {
  messages: number;
  keys: number;
  /** Publishes per second, overall. */
  rate: number;
  workers: number;
  /** The node is killed once this share of the messages is acknowledged. */
  killAtShare: number;
  /** How long the node stays dead before it is started again. */
  downMs: number;
  /** How long the backlog may take to drain after the last publish (then what is left counts as stuck). */
  drainTimeoutMs: number;
}

export interface BrokerKillReport {
  /** Why the scenario did not run (no rabbitmq-server, no PostgreSQL, the node would not boot). */
  skipped?: string;
  /** SIGKILLs of the private node's Erlang VM. */
  nodeKills: number;
  /** From the kill until the restarted node accepted AMQP again. */
  outageMs: number;
  /** Of which the node was left dead on purpose. */
  downMs: number;
  /** The node's first boot, and its start after the kill, in ms. */
  firstBootMs: number;
  restartMs: number;
  /** publishBatch calls that rejected (each batch was then retried with the same ids). */
  publishErrors: number;
  /** Of those, the ones that rejected between the kill and 2 s after the node was back. */
  publishErrorsDuringOutage: number;
  /** Messages left 'unknown' (their batch was given up on). */
  givenUp: number;
  /** `error …` lines of the worker processes (reconnects, refused settlements). */
  workerErrors: number;
  /** Acknowledged before the kill: each must be handled like the rest. */
  acknowledgedAtKill: number;
  /** publishBatch calls pending when the node was killed. */
  publishesInFlightAtKill: number;
}

/**
 * Dead for 7 s: with the ~8 s boot after it, the outage outlasts the publisher's 15 s confirm
 * timeout, so publishes waiting for the node fail (retriably) and are retried, not only delayed.
 */
export const DEFAULT_BROKER_KILL: BrokerKillOptions = { messages: 6_000, keys: 300, rate: 200, workers: 3, killAtShare: 0.4, downMs: 7_000, drainTimeoutMs: 120_000 };

const TOPIC = 'rel';
/**
 * RabbitMQ 3.10 saves a new quorum queue's registration every 500 ms; a kill sooner than that
 * after a declaration may bring the queue back empty (see test/conformance/private-rabbitmq.test.ts).
 * The kill waits at least this long after the workers declared their queues.
 */
const QUEUE_REGISTRATION_SAVED_MS = 1_500;

/** Why scenario d cannot run here, or undefined when it can. */
export async function brokerKillMissing(): Promise<string | undefined> {
  if (findRabbitmqScripts() === undefined) return 'rabbitmq-server is not installed (looked in /usr/lib/rabbitmq/bin and on PATH), so no private node can be started';
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: STORE_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    return undefined;
  } catch (error) {
    return `PostgreSQL (the store, ${new URL(STORE_URL).host}) is not reachable: ${(error as Error).message}`;
  } finally {
    await client.end().catch(() => undefined);
  }
}

function skippedReport(why: string, seed: number, started: number): ScenarioReport {
  return {
    scenario: 'd',
    title: 'RabbitMQ: a private node SIGKILLed and restarted mid-run',
    seed,
    durationMs: Date.now() - started,
    publishMs: 0,
    rate: 0,
    faults: { kills: 0, pauses: 0, lateSettlesRefused: 0, outageMs: 0, broker: { skipped: why, nodeKills: 0, outageMs: 0, downMs: 0, firstBootMs: 0, restartMs: 0, publishErrors: 0, publishErrorsDuringOutage: 0, givenUp: 0, workerErrors: 0, acknowledgedAtKill: 0, publishesInFlightAtKill: 0 } },
    result: check({ ledger: [], attempts: [], effects: [], deadLetters: [], backlogAtEnd: 0 }),
  };
}

export async function runBrokerKill(options: BrokerKillOptions, seed: number): Promise<ScenarioReport> {
  const started = Date.now();
  const missing = await brokerKillMissing();
  if (missing !== undefined) return skippedReport(missing, seed, started);
  let rabbit: PrivateRabbit;
  try {
    rabbit = await startPrivateRabbit();
  } catch (error) {
    return skippedReport(`the private RabbitMQ node did not start: ${(error as Error).message.split('\n')[0]}`, seed, started);
  }
  const firstBootMs = Date.now() - started;
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-reliability-d-'));
  const effectsFile = join(dir, 'effects.db');
  // Its own namespace: its own queues (on a node that is thrown away anyway) and its own PostgreSQL schema.
  const namespace = `reld${process.pid}_${Date.now() % 1_000_000}`;
  const url = `${rabbit.url}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`;
  const workers: WorkerProc[] = [];
  let bq: Botqueue | undefined;
  try {
    bq = await connect(url);
    await bq.createTopic(TOPIC, { partitions: 8 });
    new EffectStore(effectsFile).close(); // creates the tables before the workers race to
    const config: WorkerConfig = {
      url,
      topic: TOPIC,
      effects: effectsFile,
      downFile: join(dir, 'downstream-down'), // never created: the downstream stays up
      handlerMaxMs: 4,
      options: { group: 'rel', concurrency: 16, leaseMs: 3_000, maxAttempts: 5, backoffBaseMs: 20, backoffCapMs: 200, maxDeferrals: 10_000 },
    };
    for (let i = 0; i < options.workers; i++) workers.push(startWorker(config));
    if (!(await waitUntil('the workers ready', () => workers.every((w) => w.lines.includes('ready')), 60_000))) {
      throw new Error(`scenario d: the workers did not start: ${workers.flatMap((w) => w.lines.filter((l) => l.startsWith('error'))).slice(0, 3).join('; ')}`);
    }
    const declaredAt = Date.now();

    const ledger: LedgerEntry[] = Array.from({ length: options.messages }, (_, i) => ({
      id: `d-${seed}-${i}`,
      key: `k${i % options.keys}`,
      seq: Math.floor(i / options.keys),
      outcome: 'unknown' as const,
    }));
    let acknowledged = 0;
    let publishErrors = 0;
    const errorTimes: number[] = [];
    let givenUp = 0;
    let inFlight = 0;
    const chains = 8;
    const batch = 20;
    const publishStart = Date.now();
    const plannedMs = (options.messages / options.rate) * 1_000;
    // A batch is retried until this long past the planned end (the outage included), then given up on.
    const giveUpAt = publishStart + plannedMs + 60_000;
    const publisher = Promise.all(
      Array.from({ length: chains }, async (_, c) => {
        const mine = ledger.filter((_e, i) => (i % options.keys) % chains === c);
        for (let from = 0; from < mine.length; from += batch) {
          const slice = mine.slice(from, from + batch);
          const dueAt = publishStart + ((from * chains) / options.rate) * 1_000;
          if (dueAt > Date.now()) await sleep(dueAt - Date.now());
          for (;;) {
            inFlight++;
            const ok = await bq!.publishBatch(TOPIC, slice.map((e) => ({ key: e.key, id: e.id, payload: { seq: e.seq } }))).then(
              () => true,
              () => false,
            );
            inFlight--;
            if (ok) {
              const now = Date.now();
              for (const e of slice) Object.assign(e, { outcome: 'ok', ackedAt: now });
              acknowledged += slice.length;
              break;
            }
            publishErrors++;
            errorTimes.push(Date.now());
            if (Date.now() > giveUpAt) {
              givenUp += slice.length; // left 'unknown': not owed, and the checker allows it
              break;
            }
            await sleep(250);
          }
        }
      }),
    );

    // The fault: once killAtShare is acknowledged (and the queues' registrations are on disk), SIGKILL the VM.
    let killedAt = 0;
    let backAt = 0;
    let restartMs = 0;
    let acknowledgedAtKill = 0;
    let publishesInFlightAtKill = 0;
    let nodeKills = 0;
    let publishingDone = false;
    void publisher.then(() => (publishingDone = true));
    await waitUntil('the kill point', () => publishingDone || acknowledged >= options.messages * options.killAtShare, plannedMs + 60_000);
    await sleep(Math.max(0, declaredAt + QUEUE_REGISTRATION_SAVED_MS - Date.now()));
    // Kill with a publish waiting for its confirm if one comes within 2 s (they last milliseconds: poll tightly).
    for (const until = Date.now() + 2_000; inFlight === 0 && !publishingDone && Date.now() < until; ) await sleep(1);
    if (!publishingDone) {
      acknowledgedAtKill = acknowledged;
      publishesInFlightAtKill = inFlight;
      killedAt = Date.now();
      await rabbit.kill();
      nodeKills++;
      await sleep(options.downMs);
      const restarting = Date.now();
      await rabbit.start();
      backAt = Date.now();
      restartMs = backAt - restarting;
    }
    await publisher;
    const publishMs = Date.now() - publishStart;

    // Drained: every acknowledged message has its effect and stats say nothing waits. Stats alone
    // are not enough here: RabbitMQ's backlog is ready + held as last reported, and a run was seen
    // reading 0 with 24 messages still in flight.
    let backlog = -1;
    const owed = ledger.filter((e) => e.outcome === 'ok').map((e) => e.id);
    const progress = new EffectStore(effectsFile);
    try {
      await waitUntil('every acknowledged message handled and the backlog drained', async () => {
        const done = new Set(progress.readEffects().map((e) => e.id));
        if (owed.some((id) => !done.has(id))) {
          await sleep(450);
          return false;
        }
        try {
          const [stats] = await bq!.stats(TOPIC);
          backlog = stats?.groups[0]?.backlog ?? -1;
        } catch {
          backlog = -1;
        }
        return backlog === 0;
      }, options.drainTimeoutMs);
    } finally {
      progress.close();
    }
    // Whatever is still owed at the timeout counts as stuck while stats see a backlog, else as lost.
    if (backlog < 0) {
      backlog = await bq.stats(TOPIC).then(([stats]) => stats?.groups[0]?.backlog ?? 0, () => 0);
    }
    const deadLetters = await dlqIds(bq, TOPIC);
    await stopWorkers(workers, 15_000);
    const workerErrors = workers.reduce((n, w) => n + w.lines.filter((l) => l.startsWith('error')).length, 0);
    const store = new EffectStore(effectsFile);
    // No worker process was killed: a repeated effect would be a real duplicate (ctx.once records in PostgreSQL, which stayed up).
    const result = check({ ledger, attempts: store.readAttempts(), effects: store.readEffects(), deadLetters, backlogAtEnd: Math.max(0, backlog), maxAttempts: 5 });
    store.close();
    const acked = ledger.filter((e) => e.outcome === 'ok').length;
    const broker: BrokerKillReport = {
      nodeKills,
      outageMs: backAt - killedAt,
      downMs: nodeKills > 0 ? options.downMs : 0,
      firstBootMs,
      restartMs,
      publishErrors,
      publishErrorsDuringOutage: errorTimes.filter((t) => killedAt > 0 && t >= killedAt && t <= backAt + 2_000).length,
      givenUp,
      workerErrors,
      acknowledgedAtKill,
      publishesInFlightAtKill,
    };
    return {
      scenario: 'd',
      title: `RabbitMQ: a private node (port ${rabbit.amqpPort}, never the shared 5672) SIGKILLed and restarted mid-run, ${options.workers} workers and ${chains} publishers running`,
      seed,
      durationMs: Date.now() - started,
      publishMs,
      rate: Math.round((acked / publishMs) * 1_000),
      // outageMs stays 0: it is the downstream's outage in the summary; the broker's is broker.outageMs.
      faults: { kills: 0, pauses: 0, lateSettlesRefused: 0, outageMs: 0, broker },
      result,
    };
  } finally {
    for (const w of workers) w.proc.kill('SIGKILL');
    await Promise.all(workers.map((w) => w.exited));
    await bq?.close().catch(() => undefined);
    await rabbit.destroy().catch(() => undefined);
    await dropPostgresSchema(STORE_URL, new Names(namespace).schema).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Scenario d's own targets, beyond the checker's: the fault happened, or (under CI) it was not skipped. */
export function brokerKillTargetsMissed(broker: BrokerKillReport): string[] {
  if (broker.skipped !== undefined) return process.env.CI ? [`d: skipped under CI (${broker.skipped})`] : [];
  const missed: string[] = [];
  if (broker.nodeKills < 1) missed.push('d: the node was never killed (publishing ended before the kill point)');
  if (broker.givenUp > 0) missed.push(`d: ${broker.givenUp} publishes never acknowledged after the node came back`);
  return missed;
}
