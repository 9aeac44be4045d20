/**
 * The sender's sliding-window limiter: at most `limit` sends in any `windowMs`, a send counted
 * from its answer (a send in flight holds its place), and a 429's block.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SlidingWindow } from '../../src/outbound/rate-limit.js';

test('at most limit sends per window, counted from their answers', () => {
  const w = new SlidingWindow({ limit: 2, windowMs: 1_000 });
  assert.equal(w.waitMs(0), 0);
  w.take();
  w.take();
  // Both in flight: nothing is known about when the platform saw them; ask again soon.
  assert.equal(w.waitMs(5), 10);
  w.answered(100);
  w.answered(300);
  assert.equal(w.waitMs(400), 700, 'the first answer at 100 leaves the window at 1100');
  assert.equal(w.waitMs(1_100), 0);
  w.take();
  w.answered(1_150);
  assert.equal(w.waitMs(1_200), 100, 'the answer at 300 leaves at 1300');
  assert.equal(w.idle(1_200), false);
  assert.equal(w.idle(2_200), true);
});

test('a block (429 retry_after) delays even when the window has room', () => {
  const w = new SlidingWindow({ limit: 5, windowMs: 1_000 });
  w.block(3_000);
  assert.equal(w.waitMs(1_000), 2_000);
  assert.equal(w.waitMs(3_000), 0);
});
