/** The reliability suite's checker: a pure function, so each violation it must find is built by hand here. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { check, percentile, type Attempt, type CheckInput, type EffectExecution, type LedgerEntry } from '../../reliability/checker.js';

const ledger = (n: number, keys = 2): LedgerEntry[] =>
  Array.from({ length: n }, (_, i) => ({ id: `m${i}`, key: `k${i % keys}`, seq: Math.floor(i / keys), outcome: 'ok' as const, ackedAt: 1_000 + i }));
const attemptsOf = (entries: LedgerEntry[]): Attempt[] => entries.map((e) => ({ id: e.id, key: e.key, seq: e.seq, pid: 1 }));
const effectsOf = (entries: LedgerEntry[]): EffectExecution[] => entries.map((e, i) => ({ id: e.id, pid: 1, at: 1_010 + i }));
const clean = (n: number): CheckInput => {
  const l = ledger(n);
  return { ledger: l, attempts: attemptsOf(l), effects: effectsOf(l), deadLetters: [], backlogAtEnd: 0 };
};

describe('reliability checker', () => {
  test('a clean run has every violation at 0 and latency from ack to effect', () => {
    const result = check(clean(10));
    assert.equal(result.acknowledged, 10);
    assert.equal(result.keys, 2);
    for (const field of ['lost', 'unexpected', 'duplicateEffects', 'crashWindowDuplicates', 'redeliveries', 'orderViolations', 'stuck', 'healthyDeadLettered'] as const) assert.equal(result[field], 0, field);
    assert.equal(result.latencyP50, 10);
    assert.equal(result.latencyP99, 10);
  });

  test('an acknowledged message without effect is lost; with a backlog left it is stuck instead', () => {
    const input = clean(10);
    const effects = input.effects.filter((e) => e.id !== 'm3');
    assert.deepEqual([check({ ...input, effects }).lost, check({ ...input, effects }).lostIds], [1, ['m3']]);
    const stuck = check({ ...input, effects, backlogAtEnd: 1 });
    assert.deepEqual([stuck.lost, stuck.stuck], [0, 1]);
  });

  test('a message whose publish failed or was never answered is not owed', () => {
    const input = clean(4);
    const l = input.ledger.map((e) => (e.id === 'm1' ? { ...e, outcome: 'unknown' as const } : e.id === 'm2' ? { ...e, outcome: 'failed' as const } : e));
    const result = check({ ...input, ledger: l, effects: input.effects.filter((e) => e.id !== 'm1' && e.id !== 'm2') });
    assert.equal(result.lost, 0);
    assert.equal(result.acknowledged, 2);
  });

  test('an effect of an id never sent, or refused for sure, is unexpected', () => {
    const input = clean(4);
    const l = input.ledger.map((e) => (e.id === 'm2' ? { ...e, outcome: 'failed' as const } : e));
    const result = check({ ...input, ledger: l, effects: [...input.effects, { id: 'ghost', pid: 1, at: 5 }] });
    assert.deepEqual(result.unexpectedIds.sort(), ['ghost', 'm2']);
  });

  test('a second execution is a duplicate effect, unless the first one ran in a process killed after it or the second in one paused past its lease', () => {
    const input = clean(4);
    const again = check({ ...input, effects: [...input.effects, { id: 'm0', pid: 2, at: 9_999 }] });
    assert.deepEqual([again.duplicateEffects, again.crashWindowDuplicates], [1, 0]);
    const windowed = check({ ...input, effects: [...input.effects, { id: 'm0', pid: 2, at: 9_999 }], killedPids: new Set([1]) });
    assert.deepEqual([windowed.duplicateEffects, windowed.crashWindowDuplicates], [0, 1]);
    // A repeat by a process paused past its lease (inside the step) is in the window; one by another process is not.
    const pausedRepeat = check({ ...input, effects: [...input.effects, { id: 'm0', pid: 7, at: 9_999 }], pausedPids: new Set([7]) });
    assert.deepEqual([pausedRepeat.duplicateEffects, pausedRepeat.crashWindowDuplicates], [0, 1]);
    const otherRepeat = check({ ...input, effects: [...input.effects, { id: 'm0', pid: 2, at: 9_999 }], pausedPids: new Set([7]) });
    assert.deepEqual([otherRepeat.duplicateEffects, otherRepeat.crashWindowDuplicates], [1, 0]);
  });

  test('redeliveries are counted; a key whose later message first runs before an earlier one is an order violation', () => {
    const input = clean(6);
    const redelivered = check({ ...input, attempts: [...input.attempts, input.attempts[0]!] });
    assert.deepEqual([redelivered.redeliveries, redelivered.orderViolations], [1, 0]);
    const swapped = [...input.attempts];
    [swapped[0], swapped[2]] = [swapped[2]!, swapped[0]!]; // k0 seq 1 before k0 seq 0
    const result = check({ ...input, attempts: swapped });
    assert.equal(result.orderViolations, 1);
    assert.match(result.orderViolationSamples[0]!, /k0: seq 0 first ran after seq 1/);
  });

  test('poison: dead-lettered after exactly maxAttempts tries; a healthy dead letter and a missing poison are reported', () => {
    const l = ledger(4).map((e) => (e.id === 'm1' || e.id === 'm2' ? { ...e, poison: true } : e));
    const healthy = l.filter((e) => e.poison !== true);
    const attempts = [...attemptsOf(l), ...attemptsOf(l.filter((e) => e.id === 'm1')), ...attemptsOf(l.filter((e) => e.id === 'm1'))];
    const result = check({ ledger: l, attempts, effects: effectsOf(healthy), deadLetters: ['m1', 'm2', 'm3'], backlogAtEnd: 0, maxAttempts: 3 });
    assert.equal(result.poisonInjected, 2);
    assert.equal(result.poisonDeadLettered, 2);
    assert.equal(result.poisonTriesWrong, 1, 'm2 was tried once, not 3 times');
    assert.equal(result.healthyDeadLettered, 1);
    const missingPoison = check({ ledger: l, attempts, effects: effectsOf(healthy), deadLetters: ['m1'], backlogAtEnd: 0 });
    assert.deepEqual(missingPoison.lostIds, ['m2']);
  });

  test('percentile picks the nearest rank', () => {
    assert.equal(percentile([], 50), null);
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(percentile(Array.from({ length: 100 }, (_, i) => i + 1), 99), 99);
  });
});
