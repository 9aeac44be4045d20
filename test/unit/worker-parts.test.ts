import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { EventEmitter } from 'node:events';
import fc from 'fast-check';
import type { Broker } from '../../src/brokers/broker.js';
import { assignedPartitions } from '../../src/worker/assignment.js';
import { Instrumentation, type WorkerEvents } from '../../src/worker/events.js';
import { MessageContext } from '../../src/worker/handler-context.js';
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

describe('Instrumentation', () => {
  test('builds an event only when someone listens, and reports errors only to a listener', () => {
    const emitter = new EventEmitter<WorkerEvents>();
    const instrumentation = new Instrumentation(emitter);
    let built = 0;
    const build = () => {
      built++;
      return { topic: 't', group: 'g', partition: 0 };
    };
    instrumentation.emitIfListened('released', build);
    instrumentation.reportError(new Error('nobody listens')); // an 'error' event without a listener would throw
    assert.equal(built, 0);
    assert.equal(instrumentation.listens('released'), false);
    const seen: number[] = [];
    emitter.on('released', (e) => seen.push(e.partition));
    instrumentation.emitIfListened('released', build);
    assert.equal(built, 1);
    assert.deepEqual(seen, [0]);
    const errors: string[] = [];
    emitter.on('error', (e) => errors.push(e.message));
    instrumentation.reportError('not an Error');
    assert.deepEqual(errors, ['not an Error']);
  });
});

describe('MessageContext', () => {
  function effects(): { broker: Broker; calls: string[] } {
    const stored = new Map<string, string | null>();
    const calls: string[] = [];
    const broker = {
      getEffect: (_t: string, _g: string, id: string, name: string) => {
        calls.push(`get ${id}/${name}`);
        return Promise.resolve(stored.get(`${id}/${name}`));
      },
      putEffect: (_t: string, _g: string, id: string, name: string, result: string | null) => {
        calls.push(`put ${id}/${name}`);
        stored.set(`${id}/${name}`, result);
        return Promise.resolve();
      },
    } as unknown as Broker;
    return { broker, calls };
  }

  test('once runs a step once per message id and returns the recorded result on redelivery', async () => {
    const { broker, calls } = effects();
    const never = new AbortController().signal;
    let runs = 0;
    const step = () => ({ sent: ++runs });
    const first = new MessageContext(broker, 't', 'g', 'm1', 1, never, never);
    assert.deepEqual(await first.once('reply', step), { sent: 1 });
    const redelivered = new MessageContext(broker, 't', 'g', 'm1', 2, never, never);
    assert.deepEqual(await redelivered.once('reply', step), { sent: 1 });
    assert.equal(runs, 1);
    assert.equal(await redelivered.once('nothing', () => undefined), undefined);
    assert.deepEqual(calls, ['get m1/reply', 'put m1/reply', 'get m1/reply', 'get m1/nothing', 'put m1/nothing']);
    await assert.rejects(first.once('', step), { code: 'BOTQUEUE_INVALID_OPTION' });
  });

  test('signal aborts when the lease is lost or the shutdown deadline passes', () => {
    const { broker } = effects();
    const lease = new AbortController();
    const shutdown = new AbortController();
    const ctx = new MessageContext(broker, 't', 'g', 'm', 1, lease.signal, shutdown.signal);
    assert.equal(ctx.signal.aborted, false);
    assert.equal(ctx.signal, ctx.signal, 'built once');
    lease.abort(new Error('lease lost'));
    assert.equal(ctx.signal.aborted, true);
    const other = new MessageContext(broker, 't', 'g', 'm', 1, new AbortController().signal, shutdown.signal);
    shutdown.abort(new Error('deadline'));
    assert.equal(other.signal.aborted, true);
  });
});
