/**
 * RetryLater: the error itself, how a worker recognises it (by code, so a copy from another
 * botqueue install counts), and the worker's edges the conformance suite does not walk: an
 * invalid delay, maxDeferrals 0, and a broker that fails the deferral's settlement.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { BotqueueError, connect, ErrorCodes, RetryLater, type Botqueue } from '../../src/index.js';
import type { Broker } from '../../src/brokers/broker.js';
import { readDeferral } from '../../src/core/retry-later.js';
import { resolveWorkerOptions } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';

const FAST = { leaseMs: 600, backoffBaseMs: 5, backoffCapMs: 20, shutdownTimeoutMs: 2_000 } as const;

async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** An error shaped like another botqueue copy's RetryLater: same code and fields, not our class. */
function foreignRetryLater(delayMs: unknown, reason?: string): Error {
  return Object.assign(new Error(reason ?? 'retry later'), { code: 'BOTQUEUE_RETRY_LATER', delayMs, reason });
}

describe('RetryLater', () => {
  test('is a BotqueueError with its own code, the delay and the reason', () => {
    const error = new RetryLater(1_500, 'telegram 429');
    assert.ok(error instanceof BotqueueError);
    assert.equal(error.name, 'RetryLater');
    assert.equal(error.code, ErrorCodes.RETRY_LATER);
    assert.equal(error.code, 'BOTQUEUE_RETRY_LATER');
    assert.equal(error.delayMs, 1_500);
    assert.equal(error.reason, 'telegram 429');
    assert.equal(error.retriable, true);
    assert.match(error.message, /telegram 429.*1500 ms/);
    assert.equal(new RetryLater(0).reason, undefined);
    assert.match(new RetryLater(0).message, /retry after 0 ms/);
  });

  test('refuses a delay that is not a finite number of ms ≥ 0', () => {
    for (const bad of [Number.NaN, -1, Number.POSITIVE_INFINITY, '100' as unknown as number]) {
      assert.throws(() => new RetryLater(bad), { code: 'BOTQUEUE_INVALID_OPTION', message: /RetryLater needs delayMs/ });
    }
  });
});

describe('readDeferral', () => {
  test('recognises RetryLater by its code, ours or another copy\'s', () => {
    assert.deepEqual(readDeferral(new RetryLater(250, 'slow down')), { delayMs: 250, reason: 'slow down' });
    assert.deepEqual(readDeferral(new RetryLater(250)), { delayMs: 250, reason: null });
    assert.deepEqual(readDeferral(foreignRetryLater(40, 'from elsewhere')), { delayMs: 40, reason: 'from elsewhere' });
  });

  test('rounds a fractional delay up, so the message never comes back early', () => {
    assert.equal(readDeferral(foreignRetryLater(10.2))?.delayMs, 11);
  });

  test('anything else, or a RetryLater code without a usable delay, is an ordinary failure', () => {
    for (const thrown of [
      new Error('boom'),
      Object.assign(new Error('x'), { code: 'BOTQUEUE_PERMANENT_FAILURE', delayMs: 5 }),
      foreignRetryLater(Number.NaN),
      foreignRetryLater(-5),
      foreignRetryLater(Number.POSITIVE_INFINITY),
      foreignRetryLater('5'),
      foreignRetryLater(undefined),
      'BOTQUEUE_RETRY_LATER',
      null,
      undefined,
    ]) {
      assert.equal(readDeferral(thrown), undefined, String(thrown));
    }
  });
});

describe('maxDeferrals option', () => {
  test('defaults to 100, allows 0, refuses negatives and fractions by name', () => {
    assert.equal(resolveWorkerOptions({}).maxDeferrals, 100);
    assert.equal(resolveWorkerOptions({ maxDeferrals: 0 }).maxDeferrals, 0);
    assert.throws(() => resolveWorkerOptions({ maxDeferrals: -1 }), { code: 'BOTQUEUE_INVALID_OPTION', message: /maxDeferrals.*at least 0/ });
    assert.throws(() => resolveWorkerOptions({ maxDeferrals: 1.5 }), { code: 'BOTQUEUE_INVALID_OPTION', message: /maxDeferrals.*integer/ });
    assert.throws(() => resolveWorkerOptions({ maxDeferral: 3 }), { code: 'BOTQUEUE_INVALID_OPTION', message: /did you mean "maxDeferrals"/ });
  });
});

describe('a worker meeting RetryLater', () => {
  const clients: Botqueue[] = [];
  async function open(): Promise<Botqueue> {
    const bq = await connect('memory:');
    clients.push(bq);
    await bq.createTopic('t', { partitions: 1 });
    return bq;
  }
  after(() => Promise.all(clients.map((c) => c.close())));

  test('another copy\'s RetryLater is deferred, with its reason in the event', async () => {
    const bq = await open();
    await bq.publish('t', { key: 'k', id: 'm', payload: null });
    const attempts: number[] = [];
    const worker = bq.worker('t', (_m, ctx) => {
      attempts.push(ctx.attempt);
      if (attempts.length === 1) throw foreignRetryLater(30, 'their 429');
    }, { group: 'g', ...FAST });
    const reasons: Array<string | null> = [];
    worker.on('deferred', (e) => reasons.push(e.reason));
    await waitFor('handled after the deferral', () => attempts.length === 2);
    await worker.close();
    assert.deepEqual(attempts, [1, 1]);
    assert.deepEqual(reasons, ['their 429']);
  });

  test('a RetryLater code with an invalid delay is an ordinary failure: the attempt counts and backoff applies', async () => {
    const bq = await open();
    await bq.publish('t', { key: 'k', id: 'm', payload: null });
    const attempts: number[] = [];
    const worker = bq.worker('t', (_m, ctx) => {
      attempts.push(ctx.attempt);
      if (attempts.length === 1) throw foreignRetryLater(Number.NaN);
    }, { group: 'g', ...FAST });
    let deferred = 0;
    let retried = 0;
    worker.on('deferred', () => deferred++);
    worker.on('retried', () => retried++);
    await waitFor('handled after the retry', () => attempts.length === 2);
    await worker.close();
    assert.deepEqual(attempts, [1, 2]);
    assert.equal(deferred, 0);
    assert.equal(retried, 1);
  });

  test('maxDeferrals 0: the first RetryLater applies the failure policy (park-key here)', async () => {
    const bq = await open();
    await bq.publishBatch('t', [
      { key: 'k', id: 'first', payload: null },
      { key: 'k', id: 'second', payload: null },
    ]);
    const handled: string[] = [];
    const worker = bq.worker('t', (m) => {
      handled.push(m.id);
      if (m.id === 'first') throw new RetryLater(10);
    }, { group: 'g', ...FAST, maxDeferrals: 0, onExhausted: 'park-key' });
    await waitFor('parked', async () => (await bq.deadLetters.list({ topic: 't' })).length === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await worker.close();
    assert.deepEqual(handled, ['first'], 'the parked key waits');
    const [letter] = await bq.deadLetters.list({ topic: 't' });
    assert.equal(letter?.parked, true);
    assert.equal(letter?.attempts, 1);
    assert.equal(letter?.error.code, 'BOTQUEUE_RETRY_LATER');
    assert.equal(worker.deferrals, 0);
  });

  test('when the broker fails the deferral\'s settlement, the message still waits at least delayMs', async () => {
    const bq = await open();
    await bq.publish('t', { key: 'k', id: 'm', payload: null });
    let failedOnce = false;
    const flaky = new Proxy(bq.broker, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (property === 'settle') {
          return (settlements: Parameters<Broker['settle']>[0]) => {
            if (!failedOnce && settlements.some((s) => s.kind === 'retry')) {
              failedOnce = true;
              return Promise.reject(new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'disk on fire'));
            }
            return target.settle(settlements);
          };
        }
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const delayMs = 1_300; // longer than the 1 s the worker waits after a failed settlement
    const at: number[] = [];
    const worker = new Worker(flaky, 't', () => {
      at.push(Date.now());
      if (at.length === 1) throw new RetryLater(delayMs);
    }, { group: 'g', ...FAST });
    worker.on('error', () => undefined);
    await waitFor('handled again', () => at.length === 2);
    await worker.close();
    assert.ok(failedOnce, 'the settlement really failed');
    assert.ok(at[1]! - at[0]! >= delayMs, `came back after ${at[1]! - at[0]!} ms, asked ${delayMs}`);
  });
});
