/**
 * The parts of `npm run reliability` scenarios e and p that fit in `npm test`:
 * - e: a worker process in its own network namespace, cut off from RabbitMQ and PostgreSQL by
 *   setting its veth link down past its lease (right after it sent a COMMIT), then up again;
 * - p: SQLite publishers under the power-loss shim, power cut twice per setting.
 * Outside CI a missing capability (network namespaces, the servers, gcc) skips loudly; under
 * CI=true it fails.
 */
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { networkCutTargetsMissed, runNetworkCut } from '../../reliability/network-cut.js';
import { powerLossTargetsMissed, runPowerLoss } from '../../reliability/power-loss.js';

const seed = Number(process.env.BOTQUEUE_RELIABILITY_SEED ?? Math.floor(Math.random() * 2 ** 31));
const ci = process.env.CI !== undefined && process.env.CI !== '';

/** Loud skip outside CI, failure in CI. */
function cannotRun(t: TestContext, what: string, why: string): void {
  const message = `${what} could not run: ${why}`;
  if (ci) assert.fail(`${message} (CI: a failure)`);
  console.warn(`\n*** SKIPPED ${message} ***\n`);
  t.skip(message);
}

test(`e: a worker cut off from its broker past its lease loses its partitions, nothing is lost or repeated, and it comes back (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const report = await runNetworkCut({ messages: 4_000, keys: 200, rate: 300, leaseMs: 2_000, heartbeatSeconds: 1, workersOutside: 2, cutAtMs: 3_000, cutForMs: 7_000, cutWhen: 'after-commit' }, seed);
  if (report.skipped !== undefined) return cannotRun(t, 'the network-cut scenario', report.skipped);
  const { timeline: _timeline, ...shown } = report;
  t.diagnostic(JSON.stringify({ ...shown, result: { ...report.result, lostIds: undefined } }));
  // The fault happened, and at the moment asked for.
  assert.equal(report.linkWasDown, true, 'the veth link read back as down');
  assert.equal(report.cutAfter, 'after-commit');
  assert.ok(report.cutMs >= 7_000);
  // The partitions moved while the link was down, and the cut-off worker heard it lost them.
  assert.ok(report.takenOverDuringCut > 0, 'partitions taken over during the cut');
  assert.ok(report.cutWorkerLeaseLost > 0, 'the cut-off worker reported its leases lost');
  // It came back: partitions again, messages handled after the link returned.
  assert.ok(report.cutWorkerAssignedAfter > 0, 'the cut-off worker took partitions again');
  assert.ok(report.cutWorkerEffectsAfter > 0, 'the cut-off worker handled messages after');
  // The checker's targets.
  assert.equal(report.result.acknowledged, 4_000);
  assert.deepEqual(report.deadLetterErrors, {});
  for (const field of ['lost', 'duplicateEffects', 'orderViolations', 'stuck', 'unexpected', 'healthyDeadLettered'] as const) assert.equal(report.result[field], 0, field);
  assert.deepEqual(networkCutTargetsMissed(report), []);
});

test(`p: power cut on SQLite: default settings lose no acknowledged publish, synchronous=OFF does (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const report = await runPowerLoss(2, seed);
  if (report.skipped !== undefined) return cannotRun(t, 'the power-loss scenario', report.skipped);
  t.diagnostic(JSON.stringify(report.modes.map((m) => ({ ...m, lostIds: undefined }))));
  const mode = (name: string) => report.modes.find((m) => m.mode === name)!;
  for (const m of report.modes) {
    assert.deepEqual(m.integrityErrors, [], `${m.mode}: integrity_check ok on every image`);
    assert.ok(m.acknowledged > 0, `${m.mode}: publishes acknowledged before the cuts`);
    assert.ok(m.shimWrites > 0, `${m.mode}: the shim saw the writes (the fault was modelled)`);
  }
  assert.equal(mode('default').settings, 'wal FULL');
  assert.ok(mode('default').shimSyncs > 0, 'FULL syncs');
  assert.equal(mode('default').lost, 0, `default (FULL) lost ${mode('default').lost}: e.g. ${mode('default').lostIds.join(', ')}`);
  assert.equal(mode('OFF').settings, 'wal OFF');
  assert.ok(mode('OFF').lost > 0, 'synchronous=OFF loses acknowledged publishes: the harness sees a loss');
  assert.deepEqual(powerLossTargetsMissed(report), []);
});
