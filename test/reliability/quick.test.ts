/**
 * The part of `npm run reliability` that fits in `npm test`: a short worker-chaos run (real worker
 * processes on a real SQLite file, SIGKILLed on a seeded schedule and restarted) checked by the
 * ledger checker, a few SIGKILLs of SQLite writers, and 2,000 good and bad webhook requests. A full disk too (the scenario is a second long). The full quick profile is `npm run reliability`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runKillWrites, runScenario, scenarios, seededRandom, targetsMissed } from '../../reliability/run.js';
import { runDiskFull } from '../../reliability/disk-full.js';
import { runOutbound } from '../../reliability/outbound.js';
import { runWebhookFuzz } from '../../reliability/webhooks.js';

const seed = Number(process.env.BOTQUEUE_RELIABILITY_SEED ?? Math.floor(Math.random() * 2 ** 31));

test(`worker chaos, small: nothing lost, no duplicate effect, no order violation (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const base = scenarios(1).find((s) => s.name === 'a')!;
  const report = await runScenario({ ...base, messages: 4_000, keys: 200, rate: 400 }, seed);
  t.diagnostic(JSON.stringify({ faults: report.faults, ...report.result, lostIds: undefined }));
  assert.ok(report.faults.kills >= 1, 'at least one worker was SIGKILLed');
  assert.equal(report.result.acknowledged, 4_000);
  assert.deepEqual(targetsMissed(report), []);
});

test(`SQLite writers SIGKILLed 10 times: integrity ok, every acknowledged publish stored (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const report = await runKillWrites(10, seed);
  t.diagnostic(`${report.result.acknowledged} acknowledged, integrity ${report.faults.integrity}`);
  assert.equal(report.faults.integrity, 'ok');
  assert.ok(report.result.acknowledged > 0);
  assert.deepEqual(targetsMissed(report), []);
});

test(`webhooks, 2,000 requests (valid, replayed, forged, stale, tampered, malformed...): accepted-invalid 0, nothing lost or stored twice (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const report = await runWebhookFuzz(2_000, seededRandom(seed));
  t.diagnostic(JSON.stringify(report));
  assert.ok(report.valid > 0 && report.invalid > 1_000);
  assert.deepEqual(report.acceptedInvalidByKind, {});
  assert.equal(report.acceptedInvalid, 0);
  assert.equal(report.lost, 0);
  assert.equal(report.duplicates, 0);
  assert.equal(report.serverErrors, 0);
});

test('disk full (SQLite on a 3 MiB tmpfs in a private mount namespace): only 202 or 503, nothing refused stored, nothing acknowledged lost, recovered once grown', { timeout: 120_000 }, async (t) => {
  const report = await runDiskFull();
  if (report.skipped !== undefined) {
    // Without mount namespaces the scenario cannot run: a loud skip here, a failure in CI.
    if (process.env.CI) assert.fail(`disk-full could not run: ${report.skipped}`);
    process.stderr.write(`\n!!! SKIPPED disk full: ${report.skipped} !!!\n`);
    return t.skip(report.skipped);
  }
  t.diagnostic(JSON.stringify(report));
  assert.ok(report.acknowledged > 0, 'publishes were acknowledged before the disk filled');
  assert.ok((report.refused['503'] ?? 0) > 0, 'the full disk was answered with 503');
  assert.deepEqual(Object.keys(report.refused).filter((status) => status !== '503'), [], 'no refusal other than 503');
  assert.equal(report.mismatch, 0, 'stored = acknowledged');
  assert.equal(report.recovered, true, 'publishing recovered once the disk was grown');
});

test(`replies out: sender processes SIGKILLed mid-run, one chat throttled: no reply lost, none sent twice outside the in-flight window, each chat in order (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const report = await runOutbound({ chats: 50, perChat: 12, rate: 100, apiDelayMs: 20 }, seed);
  t.diagnostic(JSON.stringify({ ...report.faults.outbound, ...report.result, lostIds: undefined }));
  assert.ok((report.faults.outbound?.senderKills ?? 0) >= 1, 'a sender was killed');
  assert.equal(report.result.acknowledged, 600);
  assert.deepEqual(targetsMissed(report), []);
});
