import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { assignedPartitions } from '../../src/worker/assignment.js';
import { OrderCheck } from '../../src/worker/order-check.js';
import { resolveWorkerOptions } from '../../src/worker/options.js';

describe('OrderCheck', () => {
  test('counts a key whose seq goes backwards, not a retry of the same seq', () => {
    const check = new OrderCheck();
    assert.equal(check.observe('a', 5), true);
    assert.equal(check.observe('a', 5), true, 'a retry repeats the seq');
    assert.equal(check.observe('b', 1), true, 'keys are independent');
    assert.equal(check.observe('a', 9), true);
    assert.equal(check.observe('a', 7), false);
    assert.equal(check.violations, 1);
    assert.equal(check.observe('a', 10), true);
    assert.equal(check.violations, 1);
  });

  test('stays bounded: the least recently used keys are forgotten', () => {
    const check = new OrderCheck(100);
    for (let i = 0; i < 1_000; i++) check.observe(`k${i}`, i);
    assert.equal((check as unknown as { lastSeq: Map<string, number> }).lastSeq.size, 100);
    assert.equal(check.observe('k999', 1), false, 'a recent key is still checked');
  });
});

describe('assignedPartitions', () => {
  test('every partition has exactly one owner and shares differ by at most one', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 12 }), fc.integer({ min: 1, max: 64 }), (members, partitions) => {
        const shares = members.map((m) => assignedPartitions(members, m, partitions));
        const all = shares.flat().sort((a, b) => a - b);
        assert.deepEqual(all, Array.from({ length: partitions }, (_, i) => i));
        const sizes = shares.map((s) => s.length);
        assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `shares ${sizes.join('/')}`);
        // Every member computes the same answer whatever order it saw the members in.
        const shuffled = [...members].reverse();
        for (const m of members) assert.deepEqual(assignedPartitions(shuffled, m, partitions), assignedPartitions(members, m, partitions));
      }),
    );
  });

  test('a member not in the list owns nothing', () => {
    assert.deepEqual(assignedPartitions(['a', 'b'], 'c', 8), []);
  });
});

describe('worker options', () => {
  test('defaults, and a typo named with a suggestion', () => {
    const o = resolveWorkerOptions({ concurrency: 32 });
    assert.equal(o.group, 'default');
    assert.equal(o.prefetch, 256);
    assert.equal(o.onExhausted, 'dead-letter');
    assert.throws(() => resolveWorkerOptions({ maxAttempt: 3 }), { code: 'BOTQUEUE_INVALID_OPTION', message: /"maxAttempt".*did you mean "maxAttempts"/ });
    assert.throws(() => resolveWorkerOptions({ group: 'has space' }), { code: 'BOTQUEUE_INVALID_OPTION', message: /group name/ });
    assert.throws(() => resolveWorkerOptions({ leaseMs: 10 }), { code: 'BOTQUEUE_INVALID_OPTION', message: /leaseMs.*at least 100/ });
  });
});
