/**
 * The part of `npm run reliability` that fits in `npm test`: a short worker-chaos run (real worker
 * processes on a real SQLite file, SIGKILLed on a seeded schedule and restarted) checked by the
 * ledger checker, a few SIGKILLs of SQLite writers, and 2,000 good and bad webhook requests. The full quick profile is `npm run reliability`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runKillWrites, runScenario, scenarios, seededRandom, targetsMissed } from '../../reliability/run.js';
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
