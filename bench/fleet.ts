/**
 * The "fleet" scenario of `npm run bench:rabbitmq`: a bot's backlog drained as users run it,
 * on SQLite and on RabbitMQ in the same run. 6,000 messages over 200 keys are published
 * first, with no consumer group yet; then 3 worker processes start together (concurrency 16,
 * leaseMs 2,000, group `g`) whose handler awaits a random 0–6 ms timer and writes one row to
 * its own SQLite file (test/support/worker-fleet.ts). The rate counts from the first worker
 * connected (before it joins or creates the group) to the last message handled, so group
 * set-up and the copy of the backlog to the new group are in it; process start-up is not.
 */
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanupNamespaces } from '../test/conformance/rabbitmq-harness.js';
import { runFleet, type FleetResult } from '../test/support/worker-fleet.js';

export const FLEET = { messages: 6_000, keys: 200, workers: 3, concurrency: 16, leaseMs: 2_000, maxHandlerMs: 6 } as const;

export interface FleetRun {
  backend: 'sqlite' | 'rabbitmq';
  msgsPerSec: number;
  lost: number;
  orderViolations: number;
  /** Messages each of the three workers handled. */
  perWorker: number[];
}

function summarize(backend: FleetRun['backend'], result: FleetResult): FleetRun {
  if (result.timedOut) throw new Error(`bench fleet on ${backend}: only ${result.handled} of ${result.messages} handled before the time-out`);
  return { backend, msgsPerSec: result.drainMsgsPerSec, lost: result.lost, orderViolations: result.orderViolations.length, perWorker: result.perSlot };
}

export async function fleetOnSqlite(run: string, seed: number): Promise<FleetRun> {
  const file = join(tmpdir(), `bq-bench-fleet-${process.pid}-${run}.db`);
  try {
    return summarize('sqlite', await runFleet({ url: `sqlite:${file}`, ...FLEET, seed, declareGroupFirst: false, timeoutMs: 120_000 }));
  } finally {
    for (const suffix of ['', '-wal', '-shm']) rmSync(`${file}${suffix}`, { force: true });
  }
}

export async function fleetOnRabbitmq(amqpUrl: string, storeUrl: string, run: string, seed: number): Promise<FleetRun> {
  const namespace = `benchfleet${process.pid}_${run}`;
  const url = `${amqpUrl}?namespace=${namespace}&store=${encodeURIComponent(storeUrl)}`;
  try {
    return summarize('rabbitmq', await runFleet({ url, ...FLEET, seed, declareGroupFirst: false, timeoutMs: 120_000 }));
  } finally {
    // Queues, exchanges and the store's schema (on the test servers: BOTQUEUE_TEST_AMQP_URL, BOTQUEUE_STORE_URL).
    await cleanupNamespaces(new Set([namespace]));
  }
}
