import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { backoffCeiling, backoffDelay, DEFAULT_BACKOFF, type BackoffOptions } from '../../src/core/backoff.js';

const opts = (baseMs: number, capMs: number): BackoffOptions => ({ baseMs, capMs });
const JUST_UNDER_ONE = 1 - Number.EPSILON / 2; // the largest double below 1

describe('backoffCeiling', () => {
  test('doubles from base per attempt: base * 2^(n-1)', () => {
    const o = opts(100, 1_000_000);
    assert.deepEqual(
      [1, 2, 3, 4, 5, 6].map((n) => backoffCeiling(n, o)),
      [100, 200, 400, 800, 1600, 3200],
    );
  });

  test('is capped at capMs', () => {
    const o = opts(1_000, 60_000);
    assert.equal(backoffCeiling(6, o), 32_000);
    assert.equal(backoffCeiling(7, o), 60_000); // 64 000 capped
    assert.equal(backoffCeiling(8, o), 60_000);
  });

  test('stays finite and equal to the cap for huge attempt numbers', () => {
    for (const attempt of [53, 54, 1_000, 1_025, 1e6, Number.MAX_SAFE_INTEGER, Number.MAX_VALUE, Infinity]) {
      const c = backoffCeiling(attempt, DEFAULT_BACKOFF);
      assert.ok(Number.isFinite(c), `attempt ${attempt} gave ${c}`);
      assert.equal(c, DEFAULT_BACKOFF.capMs, `attempt ${attempt}`);
    }
  });

  test('stays finite when base * 2^52 overflows a double', () => {
    assert.equal(backoffCeiling(10_000, opts(1e300, 5_000)), 5_000);
  });

  test('a zero base gives 0 for any attempt (never 0 * Infinity = NaN)', () => {
    for (const attempt of [1, 60, 2_000, Infinity]) {
      assert.equal(backoffCeiling(attempt, opts(0, 60_000)), 0, `attempt ${attempt}`);
      assert.equal(backoffDelay(attempt, opts(0, 60_000), () => 0.5), 0);
    }
  });

  test('attempt 0 or negative is treated as the first retry', () => {
    const o = opts(250, 10_000);
    assert.equal(backoffCeiling(0, o), 250);
    assert.equal(backoffCeiling(-5, o), 250);
    assert.equal(backoffCeiling(1, o), 250);
  });

  test('defaults are 1 s base and 60 s cap', () => {
    assert.deepEqual(DEFAULT_BACKOFF, { baseMs: 1_000, capMs: 60_000 });
  });
});

describe('backoffDelay (full jitter)', () => {
  test('random() = 0 gives 0', () => {
    for (const attempt of [1, 2, 5, 30, 10_000]) {
      assert.equal(backoffDelay(attempt, DEFAULT_BACKOFF, () => 0), 0);
    }
  });

  test('random() just under 1 gives just under the ceiling, never above it', () => {
    assert.equal(backoffDelay(1, opts(1_000, 60_000), () => 0.999), 999);
    assert.equal(backoffDelay(3, opts(1_000, 60_000), () => 0.999), 3_996);
    assert.equal(backoffDelay(100, opts(1_000, 60_000), () => 0.999), 59_940);
    // The largest random() gives one below the ceiling: random() is in [0, 1), never 1.
    assert.equal(backoffDelay(100, opts(1_000, 60_000), () => JUST_UNDER_ONE), 59_999);
    assert.equal(backoffDelay(1, opts(1_000, 60_000), () => 0.9995), 999);
  });

  test('random() = 0.5 gives half the ceiling', () => {
    assert.equal(backoffDelay(4, opts(1_000, 60_000), () => 0.5), 4_000);
  });

  test('uses the injected random exactly once per call', () => {
    let calls = 0;
    backoffDelay(3, DEFAULT_BACKOFF, () => {
      calls++;
      return 0.25;
    });
    assert.equal(calls, 1);
  });

  test('defaults to Math.random and stays within [0, ceiling]', () => {
    for (let i = 0; i < 500; i++) {
      const d = backoffDelay(3, DEFAULT_BACKOFF);
      assert.ok(Number.isInteger(d) && d >= 0 && d <= 4_000, `got ${d}`);
    }
  });

  test('huge attempt numbers give finite delays bounded by the cap', () => {
    for (const attempt of [1_000, 1e9, Number.MAX_SAFE_INTEGER]) {
      const d = backoffDelay(attempt, DEFAULT_BACKOFF, () => JUST_UNDER_ONE);
      assert.ok(Number.isFinite(d) && d <= DEFAULT_BACKOFF.capMs, `attempt ${attempt} gave ${d}`);
    }
  });

  test('property: delay is an integer in [0, min(cap, base * 2^(n-1))]', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 5_000 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, capMs, r) => {
          const o = opts(baseMs, capMs);
          const ceiling = backoffCeiling(attempt, o);
          const expected = Math.min(capMs, baseMs * 2 ** Math.min(attempt - 1, 1023));
          assert.equal(ceiling, expected);
          const d = backoffDelay(attempt, o, () => r);
          assert.ok(Number.isInteger(d), `not an integer: ${d}`);
          assert.ok(d >= 0 && d <= ceiling, `delay ${d} outside [0, ${ceiling}]`);
          assert.ok(d <= capMs);
        },
      ),
    );
  });

  test('property: the ceiling never decreases with the attempt number', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 200 }),
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        (attempt, baseMs, capMs) => {
          const o = opts(baseMs, capMs);
          assert.ok(backoffCeiling(attempt + 1, o) >= backoffCeiling(attempt, o));
        },
      ),
    );
  });

  test('property: the delay grows with random() (monotone in the jitter)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, a, b) => {
          const [lo, hi] = a <= b ? [a, b] : [b, a];
          assert.ok(backoffDelay(attempt, DEFAULT_BACKOFF, () => lo) <= backoffDelay(attempt, DEFAULT_BACKOFF, () => hi));
        },
      ),
    );
  });
});
