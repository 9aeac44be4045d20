/**
 * Small versions of `npm run reliability`'s scenarios d and g, checked by the same ledger checker:
 * - d: a private RabbitMQ node (never the shared one on 5672) SIGKILLed and restarted while
 *   publishers and 3 worker processes run;
 * - g: the real service's HTTP publish route driven at twice its consumers' capacity against a
 *   topic's maxBacklog: it must shed (503 with Retry-After), keep its RSS bounded and lose
 *   nothing it acknowledged.
 * d needs rabbitmq-server installed and PostgreSQL: without them it is skipped, loudly, and fails
 * under CI.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { brokerKillMissing, DEFAULT_BROKER_KILL, runBrokerKill } from '../../reliability/rabbitmq-node.js';
import { DEFAULT_OVERLOAD, runOverload } from '../../reliability/overload.js';
import { targetsMissed } from '../../reliability/run.js';
import { reportMissing } from '../support/services.js';

const seed = Number(process.env.BOTQUEUE_RELIABILITY_SEED ?? Math.floor(Math.random() * 2 ** 31));
const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);

if (!reportMissing('RabbitMQ node killed mid-run (reliability d)', await brokerKillMissing(), register)) {
  test(`RabbitMQ node SIGKILLed and restarted mid-run, small: every acknowledged publish handled once, in key order (seed ${seed})`, { timeout: 150_000 }, async (t) => {
    // Dead 2 s (the ~8 s boot follows): publishes wait across the outage; the quick profile's 7 s also makes them time out and retry.
    const report = await runBrokerKill({ ...DEFAULT_BROKER_KILL, messages: 2_000, keys: 100, rate: 200, downMs: 2_000, drainTimeoutMs: 45_000 }, seed);
    const b = report.faults.broker!;
    t.diagnostic(JSON.stringify({ broker: b, ...report.result, lostIds: undefined }));
    assert.equal(b.skipped, undefined);
    assert.equal(b.nodeKills, 1, 'the node was SIGKILLed once');
    assert.ok(b.outageMs >= 2_000, `the outage was observed (${b.outageMs} ms from the kill until the node accepted AMQP again)`);
    assert.ok(b.acknowledgedAtKill > 0 && b.acknowledgedAtKill < 2_000, `publishing went on across the kill (${b.acknowledgedAtKill} acknowledged before it)`);
    assert.equal(report.result.acknowledged, 2_000);
    assert.deepEqual(targetsMissed(report), []);
  });
}

test(`overload at 2× the consumers' capacity, small: shed with 503 + Retry-After above maxBacklog, RSS bounded, nothing acknowledged lost (seed ${seed})`, { timeout: 120_000 }, async (t) => {
  const report = await runOverload({ ...DEFAULT_OVERLOAD, maxBacklog: 500, overloadMs: 12_000, keys: 200 }, seed);
  const g = report.faults.overload!;
  t.diagnostic(JSON.stringify({ overload: { ...g, rss: { ...g.rss, seriesMiB: undefined } }, ...report.result, lostIds: undefined }));
  assert.ok(g.capacity > 0);
  assert.ok((g.shed['503'] ?? 0) + (g.shed['429'] ?? 0) > 0, 'the gateway shed load');
  assert.ok(report.result.acknowledged > 0);
  assert.deepEqual(targetsMissed(report), []);
});
