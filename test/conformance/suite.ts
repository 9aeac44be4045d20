/**
 * The delivery contract (docs/contract.md), one section per point, run unchanged against
 * every backend through the public API. A backend passes when this whole file passes.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { connect, PermanentError, RetryLater, partitionForKey, type Botqueue, type Envelope, type PublishReceipt, type Worker } from '../../src/index.js';
import type { BackendFactory } from './harness.js';
import { deferred, orderViolations, sleep, waitFor } from './harness.js';
import { describeLeaseProperties } from './lease-properties.js';
import { pausable } from './pausable-broker.js';

const FAST = { leaseMs: 600, backoffBaseMs: 5, backoffCapMs: 40, shutdownTimeoutMs: 5_000 } as const;

export function describeConformance(factory: BackendFactory): void {
  describe(`conformance: ${factory.name}`, () => {
    const clients: Botqueue[] = [];
    async function open(shared?: string): Promise<Botqueue> {
      const bq = await connect(factory.url(shared));
      clients.push(bq);
      return bq;
    }
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await factory.cleanup();
    });

    async function backlog(bq: Botqueue, topic: string, group: string): Promise<number> {
      const [stats] = await bq.stats(topic);
      return stats?.groups.find((g) => g.group === group)?.backlog ?? -1;
    }

    describe('1. durable before acknowledged', () => {
      test('publish resolves with a receipt whose partition is the Kafka partition of the key and whose seq grows per partition', async () => {
        const bq = await open();
        await bq.createTopic('t1', { partitions: 8 });
        const receipts: PublishReceipt[] = [];
        for (let i = 0; i < 20; i++) receipts.push(await bq.publish('t1', { key: `chat:${i % 3}`, id: `m${i}`, payload: { i } }));
        for (const [i, r] of receipts.entries()) {
          assert.equal(r.topic, 't1');
          assert.equal(r.id, `m${i}`);
          assert.equal(r.duplicate, false);
          assert.equal(r.partition, partitionForKey(`chat:${i % 3}`, 8));
        }
        for (let k = 0; k < 3; k++) {
          const seqs = receipts.filter((_, i) => i % 3 === k).map((r) => r.seq);
          assert.deepEqual([...seqs].sort((a, b) => a - b), seqs, 'seq increases in publish order');
          assert.equal(new Set(seqs).size, seqs.length);
        }
      });

      test('an acknowledged message is visible to another client on the same storage', async (t) => {
        const shared = `visible-${Date.now()}`;
        const first = await open(shared);
        if (!first.broker.capabilities.durable) {
          t.diagnostic(`${factory.name} is not durable; the same client checks visibility`);
        }
        const second = first.broker.capabilities.durable ? await open(shared) : first;
        await first.createTopic('t1', { partitions: 4 });
        await first.publishBatch('t1', Array.from({ length: 50 }, (_, i) => ({ key: `k${i % 5}`, id: `v${i}`, payload: i })));
        const seen: number[] = [];
        const worker = second.worker<number>('t1', (m) => void seen.push(m.payload), { group: 'g', ...FAST });
        await waitFor('all 50 messages handled by the other client', () => seen.length >= 50);
        await worker.close();
        assert.deepEqual([...new Set(seen)].sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i));
      });

      test('a batch with one invalid message stores nothing', async () => {
        const bq = await open();
        await bq.createTopic('t1', { partitions: 2 });
        await assert.rejects(
          bq.publishBatch('t1', [
            { key: 'a', id: 'ok-1', payload: 1 },
            { key: '', id: 'bad', payload: 2 },
          ]),
          { code: 'BOTQUEUE_INVALID_MESSAGE', message: /message #1: .*key/ },
        );
        const [stats] = await bq.stats('t1');
        assert.equal(stats?.retained, 0);
        const receipt = await bq.publish('t1', { key: 'a', id: 'ok-1', payload: 1 });
        assert.equal(receipt.duplicate, false, 'the refused batch left no dedup record behind');
      });
    });

    describe('2. at least once, with leases', () => {
      test('a handler that throws gets the message again until it succeeds', async () => {
        const bq = await open();
        await bq.createTopic('t2', { partitions: 2 });
        await bq.publish('t2', { key: 'a', id: 'x', payload: 'x' });
        const attempts: number[] = [];
        const worker = bq.worker('t2', (_m, ctx) => {
          attempts.push(ctx.attempt);
          if (ctx.attempt < 3) throw new Error('flaky');
        }, { group: 'g', ...FAST });
        await waitFor('third attempt succeeds', async () => attempts.length === 3 && (await backlog(bq, 't2', 'g')) === 0);
        await worker.close();
        assert.deepEqual(attempts, [1, 2, 3]);
      });

      test('a lease is renewed while a long handler runs: no other worker gets its message', async () => {
        const bq = await open();
        await bq.createTopic('t2', { partitions: 1 });
        await bq.publish('t2', { key: 'a', id: 'slow', payload: null });
        const handledBy: string[] = [];
        const release = deferred();
        const started = deferred();
        const a = bq.worker('t2', async () => {
          handledBy.push('a');
          started.resolve();
          await release.promise;
        }, { group: 'g', ...FAST, leaseMs: 300 });
        await started.promise;
        const b = bq.worker('t2', () => void handledBy.push('b'), { group: 'g', ...FAST, leaseMs: 300 });
        await b.ready;
        await sleep(1_200); // four lease periods
        release.resolve();
        await waitFor('message settled', async () => (await backlog(bq, 't2', 'g')) === 0);
        await Promise.all([a.close(), b.close()]);
        assert.deepEqual(handledBy, ['a']);
      });

      test('a worker that stops heartbeating loses its lease; the message is redelivered and the stale worker cannot settle', async () => {
        const bq = await open();
        await bq.createTopic('t2', { partitions: 1 });
        await bq.publish('t2', { key: 'a', id: 'z', payload: null });
        const frozen = pausable(bq.broker);
        const { Worker } = await import('../../src/worker/worker.js');
        const started = deferred();
        const release = deferred();
        const handledBy: string[] = [];
        const zombie = new Worker(frozen.broker, 't2', async () => {
          handledBy.push('zombie');
          started.resolve();
          await release.promise;
        }, { group: 'g', ...FAST, leaseMs: 300 });
        const lost = deferred();
        zombie.on('lease-lost', () => lost.resolve());
        await started.promise;
        frozen.pause(); // like SIGSTOP: no heartbeat, no settle
        const healthy = bq.worker('t2', () => void handledBy.push('healthy'), { group: 'g', ...FAST, leaseMs: 300 });
        await waitFor('healthy worker handles the message after the lease expired', () => handledBy.includes('healthy'), 5_000);
        release.resolve();
        frozen.resume();
        await lost.promise;
        // The zombie's settle reached the broker with its stale fence and was refused.
        await waitFor('the zombie tried to settle', () => frozen.settleOutcomes.length > 0, 5_000);
        assert.deepEqual(frozen.settleOutcomes, ['fenced'], 'the stale worker\'s settlement is refused, not applied');
        await waitFor('settled once', async () => (await backlog(bq, 't2', 'g')) === 0);
        const [stats] = await bq.stats('t2');
        assert.equal(stats?.groups[0]?.deadLetters, 0);
        await healthy.close();
        await zombie.close();
        assert.deepEqual(handledBy, ['zombie', 'healthy']);
      });

      test('a worker paused past its lease does not start a ctx.once step the new owner may run', async () => {
        const bq = await open();
        await bq.createTopic('t2', { partitions: 1 });
        await bq.publish('t2', { key: 'a', id: 'step', payload: null });
        const frozen = pausable(bq.broker);
        const { Worker } = await import('../../src/worker/worker.js');
        const zombieAt = deferred();
        const zombieGo = deferred();
        const healthyAt = deferred();
        const healthyGo = deferred();
        const effects: string[] = [];
        const zombieErrors: unknown[] = [];
        const zombie = new Worker(frozen.broker, 't2', async (_m, ctx) => {
          zombieAt.resolve();
          await zombieGo.promise;
          try {
            await ctx.once('effect', () => void effects.push('zombie'));
          } catch (error) {
            zombieErrors.push(error);
            throw error;
          }
        }, { group: 'g', ...FAST, leaseMs: 300 });
        await zombieAt.promise;
        frozen.pause(); // like SIGSTOP: no heartbeat reaches the broker
        const healthy = bq.worker('t2', async (_m, ctx) => {
          healthyAt.resolve();
          await healthyGo.promise; // the new owner has not run the step yet when the zombie wakes
          await ctx.once('effect', () => void effects.push('healthy'));
        }, { group: 'g', ...FAST, leaseMs: 300 });
        try {
          await healthyAt.promise;
          zombieGo.resolve();
          frozen.resume();
          await waitFor('the zombie gave up its step', () => zombieErrors.length > 0 || effects.includes('zombie'), 5_000);
          healthyGo.resolve();
          await waitFor('settled once', async () => (await backlog(bq, 't2', 'g')) === 0);
        } finally {
          healthyGo.resolve();
          await healthy.close();
          await zombie.close();
        }
        assert.equal((zombieErrors[0] as { code?: string }).code, 'BOTQUEUE_LEASE_LOST');
        assert.deepEqual(effects, ['healthy'], 'the step ran once, on the partition\'s new owner');
      });
    });

    describe('3. per-key FIFO', () => {
      test('each key is handled one at a time, in publish order, through random failures and delays', async () => {
        const bq = await open();
        await bq.createTopic('t3', { partitions: 4 });
        const keys = 20;
        const perKey = 25;
        const batch = [];
        for (let n = 0; n < perKey; n++) for (let k = 0; k < keys; k++) batch.push({ key: `chat:${k}`, id: `${k}-${n}`, payload: { k, n } });
        await bq.publishBatch('t3', batch);
        const running = new Set<string>();
        const overlaps: string[] = [];
        const completed: Array<{ key: string; n: number }> = [];
        const failedOnce = new Set<string>();
        const worker = bq.worker<{ k: number; n: number }>('t3', async (m) => {
          const key = m.key!;
          if (running.has(key)) overlaps.push(key);
          running.add(key);
          await sleep(Math.random() * 2);
          running.delete(key);
          if (!failedOnce.has(m.id) && Math.random() < 0.15) {
            failedOnce.add(m.id);
            throw new Error('transient');
          }
          completed.push({ key, n: m.payload.n });
        }, { group: 'g', ...FAST, concurrency: 8, perKeyBuffer: 4 });
        await waitFor('every message completed', () => completed.length >= keys * perKey, 30_000);
        await worker.close();
        assert.deepEqual(overlaps, [], 'two handlers of one key overlapped');
        assert.deepEqual(orderViolations(completed), []);
        for (let k = 0; k < keys; k++) {
          assert.deepEqual(completed.filter((c) => c.key === `chat:${k}`).map((c) => c.n), Array.from({ length: perKey }, (_, n) => n));
        }
        const [stats] = await bq.stats('t3');
        assert.equal(stats?.groups[0]?.orderViolations, 0, 'the built-in order check saw no violation');
        assert.equal(worker.orderViolations, 0);
      });
    });

    describe('3b. the built-in order check', () => {
      test('a backend that hands a key\'s messages out of order is caught and counted in stats', async () => {
        const bq = await open();
        await bq.createTopic('t3b', { partitions: 1 });
        await bq.publishBatch('t3b', Array.from({ length: 6 }, (_, i) => ({ key: 'k', id: `o${i}`, payload: i })));
        // A faulty backend: the real broker, but every fetch comes back in reverse seq order.
        const reversing = new Proxy(bq.broker, {
          get(target, property, receiver) {
            const value: unknown = Reflect.get(target, property, receiver);
            if (property === 'fetch') {
              return async (...args: Parameters<typeof target.fetch>) => (await target.fetch(...args)).reverse();
            }
            return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
          },
        });
        const { Worker } = await import('../../src/worker/worker.js');
        const seen: number[] = [];
        const violations: number[] = [];
        const worker = new Worker<number>(reversing, 't3b', (m) => void seen.push(m.payload), { group: 'g', ...FAST });
        worker.on('order-violation', (e) => violations.push(e.seq));
        await waitFor('all six handled', () => seen.length === 6);
        await worker.close();
        assert.deepEqual(seen, [5, 4, 3, 2, 1, 0], 'the faulty backend really reordered');
        assert.equal(worker.orderViolations, 5);
        assert.equal(violations.length, 5);
        const [stats] = await bq.stats('t3b');
        assert.equal(stats?.groups[0]?.orderViolations, 5, 'the violations reached stats');
      });
    });

    describe('4. parallel across keys', () => {
      test('a stuck key does not stall other keys, and concurrency is respected', async () => {
        const bq = await open();
        await bq.createTopic('t4', { partitions: 2 });
        await bq.publishBatch('t4', [
          { key: 'stuck', id: 's1', payload: 0 },
          { key: 'stuck', id: 's2', payload: 0 },
          ...Array.from({ length: 60 }, (_, i) => ({ key: `k${i % 12}`, id: `o${i}`, payload: i })),
        ]);
        const release = deferred();
        let active = 0;
        let maxActive = 0;
        const done: string[] = [];
        const worker = bq.worker('t4', async (m) => {
          active++;
          maxActive = Math.max(maxActive, active);
          if (m.key === 'stuck') await release.promise;
          else await sleep(3);
          active--;
          done.push(m.id);
        }, { group: 'g', ...FAST, concurrency: 4 });
        await waitFor('the 60 other messages complete while "stuck" holds', () => done.filter((id) => id.startsWith('o')).length === 60, 15_000);
        assert.ok(!done.includes('s1') && !done.includes('s2'));
        release.resolve();
        await waitFor('stuck key finishes', () => done.includes('s2'));
        await worker.close();
        assert.ok(maxActive <= 4, `at most 4 handlers at once, saw ${maxActive}`);
        assert.ok(maxActive >= 3, `handlers ran in parallel (saw ${maxActive})`);
        assert.ok(done.indexOf('s1') < done.indexOf('s2'));
      });

      test('a failing handler does not take other conversations down', async () => {
        const bq = await open();
        await bq.createTopic('t4', { partitions: 2 });
        await bq.publishBatch('t4', Array.from({ length: 40 }, (_, i) => ({ key: `k${i % 8}`, id: `f${i}`, payload: i })));
        const ok: number[] = [];
        const worker = bq.worker<number>('t4', (m) => {
          if (m.key === 'k3') throw new Error('k3 is broken');
          ok.push(m.payload);
        }, { group: 'g', ...FAST, maxAttempts: 2 });
        await waitFor('the 35 healthy messages complete', () => ok.length === 35);
        await waitFor('k3 dead-lettered', async () => (await bq.deadLetters.list({ topic: 't4' })).length === 5);
        await worker.close();
      });
    });

    describe('5. retries, backoff and failure policies', () => {
      test('attempts are persisted; a retrying head holds its key while other keys go on', async () => {
        const bq = await open();
        await bq.createTopic('t5', { partitions: 1 });
        await bq.publishBatch('t5', [
          { key: 'a', id: 'a1', payload: 'a1' },
          { key: 'a', id: 'a2', payload: 'a2' },
          { key: 'b', id: 'b1', payload: 'b1' },
        ]);
        const log: string[] = [];
        const worker = bq.worker<string>('t5', (m, ctx) => {
          log.push(`${m.payload}#${ctx.attempt}`);
          if (m.payload === 'a1' && ctx.attempt < 4) throw new Error(`fail ${ctx.attempt}`);
        }, { group: 'g', ...FAST, backoffBaseMs: 60, backoffCapMs: 60, maxAttempts: 5 });
        await waitFor('a2 handled', () => log.includes('a2#1'));
        await worker.close();
        assert.deepEqual(log.filter((l) => l.startsWith('a')), ['a1#1', 'a1#2', 'a1#3', 'a1#4', 'a2#1']);
        assert.ok(log.indexOf('b1#1') < log.indexOf('a1#4'), `b went on while a waited: ${log.join(' ')}`);
      });

      test('attempts survive a worker restart (they are stored, not counted in memory)', async () => {
        const bq = await open();
        await bq.createTopic('t5', { partitions: 1 });
        await bq.publish('t5', { key: 'a', id: 'p', payload: null });
        const seen: number[] = [];
        const first = bq.worker('t5', (_m, ctx) => {
          seen.push(ctx.attempt);
          throw new Error('nope');
        }, { group: 'g', ...FAST, backoffBaseMs: 5_000, backoffCapMs: 5_000, maxAttempts: 5 });
        await waitFor('first attempt failed', () => seen.length === 1);
        await sleep(50);
        await first.close();
        const second = bq.worker('t5', (_m, ctx) => void seen.push(ctx.attempt), { group: 'g', ...FAST, maxAttempts: 5 });
        await waitFor('retried after restart', () => seen.length === 2, 10_000);
        await second.close();
        assert.deepEqual(seen, [1, 2]);
      });

      test('PermanentError dead-letters at once; maxAttempts dead-letters with the error, attempts and times kept', async () => {
        const bq = await open();
        await bq.createTopic('t5', { partitions: 2 });
        const publishedFrom = Date.now();
        await bq.publishBatch('t5', [
          { key: 'p', id: 'perm', payload: { bad: true }, headers: { source: 'test' } },
          { key: 'p', id: 'after-perm', payload: { bad: false } },
          { key: 'q', id: 'exhaust', payload: { bad: 'always' } },
        ]);
        const handled: string[] = [];
        const worker = bq.worker('t5', (m) => {
          handled.push(m.id);
          if (m.id === 'perm') throw new PermanentError('cannot parse this update');
          if (m.id === 'exhaust') throw new Error('downstream is down');
        }, { group: 'g', ...FAST, maxAttempts: 3 });
        await waitFor('both dead-lettered and the next message handled', async () => (await bq.deadLetters.list({ topic: 't5' })).length === 2 && handled.includes('after-perm'));
        await worker.close();
        assert.equal(handled.filter((id) => id === 'perm').length, 1, 'a PermanentError is not retried');
        assert.equal(handled.filter((id) => id === 'exhaust').length, 3);
        const letters = await bq.deadLetters.list({ topic: 't5', group: 'g' });
        const perm = letters.find((l) => l.id === 'perm')!;
        assert.equal(perm.attempts, 1);
        assert.equal(perm.key, 'p');
        assert.equal(perm.topic, 't5');
        assert.equal(perm.group, 'g');
        assert.deepEqual(JSON.parse(perm.payload), { bad: true });
        assert.deepEqual(perm.headers, { source: 'test' });
        assert.equal(perm.error.message, 'cannot parse this update');
        assert.match(perm.error.stack ?? '', /PermanentError/);
        const exhausted = letters.find((l) => l.id === 'exhaust')!;
        assert.equal(exhausted.attempts, 3);
        assert.equal(exhausted.error.message, 'downstream is down');
        // Real times (ms since the epoch, taken when the handler failed), not only ordered numbers.
        const listedAt = Date.now();
        for (const letter of [perm, exhausted]) {
          for (const field of ['firstFailedAt', 'lastFailedAt'] as const) {
            const at = letter[field];
            assert.ok(at >= publishedFrom - 5 && at <= listedAt, `${letter.id}.${field} = ${at}, a time between the publish (${publishedFrom}) and now (${listedAt})`);
          }
        }
        assert.equal(perm.firstFailedAt, perm.lastFailedAt, 'one attempt: first and last failure are the same moment');
        assert.ok(exhausted.firstFailedAt <= exhausted.lastFailedAt);
        assert.equal(exhausted.parked, false);
      });

      test('park-key: the key waits after its poison message until an operator redrives it; other keys go on', async () => {
        const bq = await open();
        await bq.createTopic('t5', { partitions: 1 });
        await bq.publishBatch('t5', [
          { key: 'poison', id: 'p1', payload: 1 },
          { key: 'poison', id: 'p2', payload: 2 },
          { key: 'fine', id: 'f1', payload: 3 },
        ]);
        let healed = false;
        const handled: string[] = [];
        const worker = bq.worker('t5', (m) => {
          if (m.id === 'p1' && !healed) throw new Error('poison');
          handled.push(m.id);
        }, { group: 'g', ...FAST, maxAttempts: 2, onExhausted: 'park-key' });
        await waitFor('p1 parked', async () => (await bq.stats('t5'))[0]?.groups[0]?.parkedKeys === 1);
        await waitFor('other key handled', () => handled.includes('f1'));
        await sleep(200);
        assert.ok(!handled.includes('p2'), 'the parked key waits');
        const [letter] = await bq.deadLetters.list({ topic: 't5', key: 'poison' });
        assert.equal(letter?.parked, true);
        healed = true;
        assert.equal(await bq.deadLetters.redrive({ topic: 't5', key: 'poison' }), 1);
        await waitFor('p1 then p2 handled after the redrive', () => handled.includes('p2'), 10_000);
        assert.deepEqual(handled.filter((id) => id.startsWith('p')), ['p1', 'p2']);
        await waitFor('no parked keys', async () => (await bq.stats('t5'))[0]?.groups[0]?.parkedKeys === 0);
        await worker.close();
      });

      test('park-key: purging the parked message skips it and the key goes on', async () => {
        const bq = await open();
        await bq.createTopic('t5', { partitions: 1 });
        await bq.publishBatch('t5', [
          { key: 'poison', id: 'p1', payload: 1 },
          { key: 'poison', id: 'p2', payload: 2 },
        ]);
        const handled: string[] = [];
        const worker = bq.worker('t5', (m) => {
          if (m.id === 'p1') throw new PermanentError('poison');
          handled.push(m.id);
        }, { group: 'g', ...FAST, onExhausted: 'park-key' });
        await waitFor('p1 parked', async () => (await bq.deadLetters.list({ topic: 't5' })).length === 1);
        await sleep(100);
        assert.equal(handled.length, 0, 'the parked key waits');
        assert.equal(await bq.deadLetters.purge({ topic: 't5', key: 'poison' }), 1);
        await waitFor('p2 handled after the skip', () => handled.includes('p2'), 10_000);
        await worker.close();
        assert.deepEqual(handled, ['p2']);
        assert.equal((await bq.deadLetters.list({ topic: 't5' })).length, 0);
      });
    });

    describe('5b. RetryLater: later, not a failure', () => {
      test('the message comes back after at least delayMs, its key waits, other keys go on, and no attempt is counted', async () => {
        const bq = await open();
        await bq.createTopic('t5b', { partitions: 1 });
        await bq.publishBatch('t5b', [
          { key: 'a', id: 'a1', payload: null },
          { key: 'a', id: 'a2', payload: null },
          { key: 'b', id: 'b1', payload: null },
        ]);
        const delayMs = 300;
        const log: Array<{ id: string; attempt: number; envelopeAttempt: number; at: number }> = [];
        const deferredAt: number[] = [];
        // maxAttempts 2: were a deferral an attempt, the second one would dead-letter a1.
        const worker = bq.worker('t5b', (m, ctx) => {
          log.push({ id: m.id, attempt: ctx.attempt, envelopeAttempt: m.attempt, at: Date.now() });
          if (m.id === 'a1' && deferredAt.length < 2) {
            deferredAt.push(Date.now());
            throw new RetryLater(delayMs, 'rate limited');
          }
        }, { group: 'g', ...FAST, maxAttempts: 2 });
        const deferrals: Array<{ id: string; delayMs: number; deferrals: number; reason: string | null }> = [];
        worker.on('deferred', (e) => deferrals.push({ id: e.id, delayMs: e.delayMs, deferrals: e.deferrals, reason: e.reason }));
        let retried = 0;
        worker.on('retried', () => retried++);
        await waitFor('a2 handled and everything settled', async () => log.some((l) => l.id === 'a2') && (await backlog(bq, 't5b', 'g')) === 0);
        await worker.close();
        const a1 = log.filter((l) => l.id === 'a1');
        assert.equal(a1.length, 3, 'two deferrals, then the handler succeeded');
        for (let i = 0; i < 2; i++) {
          const waited = a1[i + 1]!.at - deferredAt[i]!;
          assert.ok(waited >= delayMs, `delivery ${i + 2} came ${waited} ms after the deferral, asked ${delayMs}`);
        }
        assert.deepEqual(a1.map((l) => l.attempt), [1, 1, 1], 'ctx.attempt does not grow with deferrals');
        assert.deepEqual(a1.map((l) => l.envelopeAttempt), [1, 1, 1]);
        const ids = log.map((l) => l.id);
        assert.ok(ids.indexOf('a2') > ids.lastIndexOf('a1'), `the key waited for a1: ${ids.join(' ')}`);
        const secondA1 = ids.indexOf('a1', ids.indexOf('a1') + 1);
        assert.ok(ids.indexOf('b1') < secondA1, `b went on while a waited: ${ids.join(' ')}`);
        assert.deepEqual(deferrals, [
          { id: 'a1', delayMs, deferrals: 1, reason: 'rate limited' },
          { id: 'a1', delayMs, deferrals: 2, reason: 'rate limited' },
        ]);
        assert.equal(retried, 0, 'a deferral is not a retry');
        assert.equal(worker.deferrals, 2);
        const [stats] = await bq.stats('t5b');
        assert.equal(stats?.groups[0]?.deferrals, 2, 'deferrals are counted in the group\'s stats');
        assert.equal((await bq.deadLetters.list({ topic: 't5b' })).length, 0);
      });

      test('a deferral is stored: a worker that takes over still waits for it, and ctx.attempt is still 1', async () => {
        const bq = await open();
        await bq.createTopic('t5b', { partitions: 1 });
        await bq.publish('t5b', { key: 'a', id: 'later', payload: null });
        const delayMs = 800;
        let deferredAt = 0;
        const first = bq.worker('t5b', () => {
          deferredAt = Date.now();
          throw new RetryLater(delayMs);
        }, { group: 'g', ...FAST });
        const deferredOnce = deferred();
        first.on('deferred', () => deferredOnce.resolve());
        await deferredOnce.promise;
        await first.close();
        const seen: Array<{ attempt: number; at: number }> = [];
        const second = bq.worker('t5b', (_m, ctx) => void seen.push({ attempt: ctx.attempt, at: Date.now() }), { group: 'g', ...FAST });
        await waitFor('handled by the second worker', () => seen.length === 1, 10_000);
        await second.close();
        assert.ok(seen[0]!.at - deferredAt >= delayMs, `came back ${seen[0]!.at - deferredAt} ms after the deferral, asked ${delayMs}`);
        assert.equal(seen[0]!.attempt, 1);
      });

      test('past maxDeferrals the failure policy applies: the message is dead-lettered with the RetryLater, and its key goes on', async () => {
        const bq = await open();
        await bq.createTopic('t5b', { partitions: 1 });
        await bq.publishBatch('t5b', [
          { key: 'k', id: 'stuck', payload: null },
          { key: 'k', id: 'next', payload: null },
        ]);
        const handled: Array<{ id: string; attempt: number }> = [];
        const worker = bq.worker('t5b', (m, ctx) => {
          handled.push({ id: m.id, attempt: ctx.attempt });
          if (m.id === 'stuck') throw new RetryLater(20, 'still rate limited');
        }, { group: 'g', ...FAST, maxDeferrals: 2, maxAttempts: 5 });
        let deferrals = 0;
        worker.on('deferred', () => deferrals++);
        const dead = deferred<{ attempts: number; parked: boolean }>();
        worker.on('dead-lettered', (e) => dead.resolve({ attempts: e.attempts, parked: e.parked }));
        await waitFor('the next message handled after the dead letter', () => handled.some((h) => h.id === 'next'));
        await worker.close();
        assert.deepEqual(handled, [
          { id: 'stuck', attempt: 1 },
          { id: 'stuck', attempt: 1 },
          { id: 'stuck', attempt: 1 },
          { id: 'next', attempt: 1 },
        ], 'maxDeferrals (2) deferrals, then the failure policy');
        assert.equal(deferrals, 2);
        assert.deepEqual(await dead.promise, { attempts: 1, parked: false });
        const letters = await bq.deadLetters.list({ topic: 't5b' });
        assert.equal(letters.length, 1);
        assert.equal(letters[0]!.id, 'stuck');
        assert.equal(letters[0]!.attempts, 1, 'deferrals are not attempts');
        assert.match(letters[0]!.error.message, /deferred 2 times \(maxDeferrals 2\).*still rate limited/);
        assert.equal(await backlog(bq, 't5b', 'g'), 0);
      });
    });

    describe('6. dead letters: list, filter, redrive, purge', () => {
      test('redrive sends messages back to their topic, key and group; purge deletes; filters select', async () => {
        const bq = await open();
        await bq.createTopic('t6', { partitions: 4 });
        await bq.publishBatch('t6', Array.from({ length: 30 }, (_, i) => ({ key: `k${i % 3}`, id: `d${i}`, payload: i })));
        let broken = true;
        const handled: Array<Envelope<number>> = [];
        const other: string[] = [];
        const worker = bq.worker<number>('t6', (m) => {
          if (broken) throw new PermanentError(m.key === 'k0' ? 'timeout talking to telegram' : 'bad request');
          handled.push(m);
        }, { group: 'g', ...FAST });
        const otherGroup = bq.worker('t6', (m) => void other.push(m.id), { group: 'other', ...FAST });
        await waitFor('30 dead letters', async () => (await bq.deadLetters.list({ topic: 't6', group: 'g', limit: 100 })).length === 30);
        await waitFor('the other group handled all 30', () => other.length === 30);
        assert.equal((await bq.deadLetters.list({ topic: 't6', key: 'k1' })).length, 10);
        assert.equal((await bq.deadLetters.list({ topic: 't6', errorContains: 'TELEGRAM' })).length, 10);
        const page1 = await bq.deadLetters.list({ topic: 't6', limit: 7 });
        const page2 = await bq.deadLetters.list({ topic: 't6', limit: 100, afterDlqId: page1.at(-1)!.dlqId });
        assert.equal(page1.length + page2.length, 30);
        broken = false;
        assert.equal(await bq.deadLetters.redrive({ topic: 't6', key: 'k0' }), 10);
        await waitFor('k0 handled again', () => handled.length === 10);
        assert.ok(handled.every((m) => m.key === 'k0' && m.topic === 't6'));
        assert.deepEqual(handled.map((m) => m.payload), [0, 3, 6, 9, 12, 15, 18, 21, 24, 27], 'redriven in order');
        assert.equal(await bq.deadLetters.purge({ topic: 't6', errorContains: 'bad request' }), 20);
        assert.equal((await bq.deadLetters.list({ topic: 't6' })).length, 0);
        await sleep(100);
        assert.equal(other.length, 30, 'a redrive goes to the failed group only');
        await Promise.all([worker.close(), otherGroup.close()]);
      });
    });

    describe('7. deduplication and ctx.once', () => {
      test('a duplicate id inside the window is dropped and reported; other topics are independent', async () => {
        const bq = await open();
        await bq.createTopic('t7', { partitions: 4 });
        await bq.createTopic('t7b', { partitions: 4 });
        const first = await bq.publish('t7', { key: 'c', id: 'tg:1001', payload: 'first' });
        const again = await bq.publish('t7', { key: 'c', id: 'tg:1001', payload: 'retry from telegram' });
        assert.equal(again.duplicate, true);
        assert.equal(again.seq, first.seq);
        assert.equal(again.partition, first.partition);
        const batch = await bq.publishBatch('t7', [
          { key: 'c', id: 'tg:1002', payload: 1 },
          { key: 'c', id: 'tg:1002', payload: 2 },
        ]);
        assert.deepEqual(batch.map((r) => r.duplicate), [false, true]);
        assert.equal((await bq.publish('t7b', { key: 'c', id: 'tg:1001', payload: 'x' })).duplicate, false);
        const seen: unknown[] = [];
        const worker = bq.worker('t7', (m) => void seen.push(m.payload), { group: 'g', ...FAST });
        await waitFor('two messages handled', () => seen.length === 2);
        await sleep(100);
        await worker.close();
        assert.deepEqual(seen, ['first', 1]);
      });

      test('an id of the longest allowed length (512 characters, beyond AMQP message-id) is handled and deduplicated', async () => {
        const bq = await open();
        await bq.createTopic('t7', { partitions: 2 });
        const id = `wa:${'é'.repeat(509)}`;
        assert.equal((await bq.publish('t7', { key: 'c', id, payload: 'long' })).duplicate, false);
        assert.equal((await bq.publish('t7', { key: 'c', id, payload: 'again' })).duplicate, true);
        const seen: Array<{ id: string; payload: unknown }> = [];
        const worker = bq.worker('t7', (m) => void seen.push({ id: m.id, payload: m.payload }), { group: 'g', ...FAST });
        await waitFor('the message handled', () => seen.length === 1);
        await sleep(100);
        await worker.close();
        assert.deepEqual(seen, [{ id, payload: 'long' }]);
      });

      test('concurrent publishes of one id store it once', async () => {
        const bq = await open();
        await bq.createTopic('t7', { partitions: 2 });
        const receipts = await Promise.all(Array.from({ length: 20 }, () => bq.publish('t7', { key: 'c', id: 'same', payload: 1 })));
        assert.equal(receipts.filter((r) => !r.duplicate).length, 1);
        assert.equal(new Set(receipts.map((r) => r.seq)).size, 1);
        const [stats] = await bq.stats('t7');
        assert.equal(stats?.retained, 1);
      });

      test('ctx.publish from a handler is stored once; where the backend can, with the ack (a failed attempt stores nothing)', async () => {
        const bq = await open();
        await bq.createTopic('t7in', { partitions: 1 });
        await bq.createTopic('t7out', { partitions: 1 });
        const received: string[] = [];
        const sink = bq.worker('t7out', (m) => void received.push(m.id), { group: 'sink', ...FAST });
        await sink.ready;
        const withAck = bq.broker.capabilities.publishWithAck === true;
        const receipts: { stored: string; duplicate?: boolean }[] = [];
        let receivedDuringFailedAttempt = -1;
        const worker = bq.worker('t7in', async (m, ctx) => {
          receipts.push(await ctx.publish('t7out', { key: 'k', payload: { from: m.id } }));
          if (ctx.attempt === 1) {
            await sleep(400); // the sink would have it by now, were it stored
            receivedDuringFailedAttempt = received.length;
            throw new Error('fails after publishing');
          }
        }, { group: 'g', ...FAST });
        await bq.publish('t7in', { key: 'k', id: 'source', payload: null });
        await waitFor('handled, and its publish received', async () => received.length > 0 && (await backlog(bq, 't7in', 'g')) === 0);
        await sleep(200);
        await Promise.all([worker.close(), sink.close()]);
        assert.equal(received.length, 1, 'stored once although the handler ran twice');
        if (withAck) {
          assert.equal(receivedDuringFailedAttempt, 0, 'nothing of the failed attempt was stored');
          assert.deepEqual(receipts.map((r) => r.stored), ['with-ack', 'with-ack']);
        } else {
          assert.deepEqual(receipts.map((r) => [r.stored, r.duplicate]), [['now', false], ['now', true]]);
        }
      });

      test('a completed ctx.once step is skipped on redelivery and returns its recorded result', async () => {
        const bq = await open();
        await bq.createTopic('t7', { partitions: 1 });
        await bq.publish('t7', { key: 'c', id: 'reply-once', payload: null });
        let sent = 0;
        const results: unknown[] = [];
        const worker = bq.worker('t7', async (_m, ctx) => {
          results.push(await ctx.once('reply', () => ({ messageId: ++sent })));
          if (ctx.attempt < 3) throw new Error('crash after the reply');
        }, { group: 'g', ...FAST });
        await waitFor('third attempt done', async () => results.length === 3 && (await backlog(bq, 't7', 'g')) === 0);
        await worker.close();
        assert.equal(sent, 1, 'the reply was sent once');
        assert.deepEqual(results, [{ messageId: 1 }, { messageId: 1 }, { messageId: 1 }]);
      });
    });

    describe('8. delays', () => {
      test('delayMs holds the message and its key\'s later messages; other keys go on', async () => {
        const bq = await open();
        await bq.createTopic('t8', { partitions: 1 });
        const start = Date.now();
        await bq.publish('t8', { key: 'a', id: 'a1', payload: 'a1', delayMs: 400 });
        await bq.publish('t8', { key: 'a', id: 'a2', payload: 'a2' });
        await bq.publish('t8', { key: 'b', id: 'b1', payload: 'b1' });
        const log: Array<{ id: string; at: number }> = [];
        const worker = bq.worker('t8', (m) => void log.push({ id: m.id, at: Date.now() - start }), { group: 'g', ...FAST });
        await waitFor('a2 handled', () => log.some((l) => l.id === 'a2'));
        await worker.close();
        assert.deepEqual(log.map((l) => l.id), ['b1', 'a1', 'a2']);
        assert.ok(log[1]!.at >= 400, `a1 ran after its delay (${log[1]!.at} ms)`);
        assert.ok(log[0]!.at < 400, 'b1 did not wait for a');
      });
    });

    describe('9. graceful shutdown', () => {
      test('close lets running handlers finish, settles them, and hands partitions over at once', async () => {
        const bq = await open();
        await bq.createTopic('t9', { partitions: 2 });
        await bq.publishBatch('t9', [
          { key: 'a', id: 'a', payload: 1 },
          { key: 'b', id: 'b', payload: 2 },
        ]);
        const started = deferred();
        const finished: string[] = [];
        const worker = bq.worker('t9', async (m) => {
          started.resolve();
          await sleep(300);
          finished.push(m.id);
        }, { group: 'g', ...FAST, leaseMs: 20_000 });
        await started.promise;
        const result = await worker.close();
        assert.equal(result.timedOut, false);
        assert.ok(finished.length >= 1, 'the running handler finished before close resolved');
        await bq.publish('t9', { key: 'c', id: 'c', payload: 3 });
        const t0 = Date.now();
        const next: string[] = [];
        const successor = bq.worker('t9', (m) => void next.push(m.id), { group: 'g', ...FAST, leaseMs: 20_000 });
        await waitFor('successor handles the rest', () => next.includes('c') && next.length + finished.length === 3, 5_000);
        assert.ok(Date.now() - t0 < 5_000, 'partitions were released, not left to expire');
        await successor.close();
        assert.equal(await backlog(bq, 't9', 'g'), 0);
      });

      test('when the deadline passes, close returns and the message is redelivered later: nothing lost', async () => {
        const bq = await open();
        await bq.createTopic('t9', { partitions: 1 });
        await bq.publish('t9', { key: 'a', id: 'long', payload: null });
        const started = deferred();
        let aborted = false;
        const worker = bq.worker('t9', async (_m, ctx) => {
          started.resolve();
          await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => {
            aborted = true;
            resolve();
          }));
          throw new Error('aborted');
        }, { group: 'g', ...FAST, leaseMs: 400, shutdownTimeoutMs: 100 });
        await started.promise;
        const result = await worker.close();
        assert.equal(result.timedOut, true);
        assert.equal(aborted, true, 'the handler saw ctx.signal abort');
        const seen: string[] = [];
        const successor = bq.worker('t9', (m) => void seen.push(m.id), { group: 'g', ...FAST, leaseMs: 400 });
        await waitFor('redelivered after the lease expired', () => seen.includes('long'), 5_000);
        await successor.close();
      });
    });

    describe('10. bounded memory', () => {
      test('a worker never holds more than its prefetch, and a waiting hot key holds one message', async () => {
        const bq = await open();
        await bq.createTopic('t10', { partitions: 4 });
        const total = 4_000;
        for (let i = 0; i < total; i += 1_000) {
          await bq.publishBatch('t10', Array.from({ length: 1_000 }, (_, j) => ({ key: (i + j) % 2 === 0 ? 'hot' : `k${(i + j) % 400}`, id: `b${i + j}`, payload: i + j })));
        }
        let handled = 0;
        let maxBuffered = 0;
        let hotFailures = 0;
        // Between a hot-key failure (the `retried` event, emitted as the key starts waiting) and its next try.
        let hotWaiting = false;
        let hotSamples = 0;
        let maxHotWhileWaiting = 0;
        let maxHotBuffered = 0;
        let worker: Worker<number> | undefined;
        worker = bq.worker<number>('t10', (m) => {
          maxBuffered = Math.max(maxBuffered, worker?.buffered ?? 0);
          if (m.key === 'hot') {
            hotWaiting = false;
            maxHotBuffered = Math.max(maxHotBuffered, worker?.bufferedForKey('hot') ?? 0);
          }
          // Four failures (maxAttempts is 5): each backoff is a full-jitter draw in 0-100 ms, so three could all be short.
          if (m.key === 'hot' && hotFailures < 4) {
            hotFailures++;
            throw new Error('hot key hiccup');
          }
          handled++;
        }, { group: 'g', ...FAST, prefetch: 64, perKeyBuffer: 8, concurrency: 8, backoffBaseMs: 100, backoffCapMs: 100 });
        worker.on('retried', (event) => {
          if (event.id.startsWith('b') && Number(event.id.slice(1)) % 2 === 0) hotWaiting = true;
        });
        const sampler = setInterval(() => {
          maxBuffered = Math.max(maxBuffered, worker?.buffered ?? 0);
          const hot = worker?.bufferedForKey('hot') ?? 0;
          maxHotBuffered = Math.max(maxHotBuffered, hot);
          if (hotWaiting) {
            hotSamples++;
            maxHotWhileWaiting = Math.max(maxHotWhileWaiting, hot);
          }
        }, 1);
        await waitFor('all handled', () => handled === total, 60_000);
        clearInterval(sampler);
        await worker.close();
        assert.ok(maxBuffered <= 64, `buffered at most the prefetch (64), saw ${maxBuffered}`);
        assert.ok(maxBuffered >= 16, `the buffer was used (${maxBuffered})`);
        assert.ok(hotSamples >= 3, `the hot key was seen waiting (${hotSamples} samples)`);
        assert.equal(maxHotWhileWaiting, 1, 'a waiting hot key holds one message (its head), not its share');
        assert.ok(maxHotBuffered > 1, `the hot key held more than one message when not waiting (${maxHotBuffered}), so the check above can fail`);
        worker = undefined;
      });
    });

    describe('groups and partitions', () => {
      test('every group receives every message; workers of one group split the partitions within ±1', async () => {
        const bq = await open();
        await bq.createTopic('tg', { partitions: 8 });
        const byGroup = new Map<string, string[]>();
        const handler = (group: string) => (m: Envelope) => {
          const list = byGroup.get(group) ?? [];
          list.push(m.id);
          byGroup.set(group, list);
        };
        const workers = [
          bq.worker('tg', handler('a'), { group: 'a', ...FAST, leaseMs: 400 }),
          bq.worker('tg', handler('a'), { group: 'a', ...FAST, leaseMs: 400 }),
          bq.worker('tg', handler('a'), { group: 'a', ...FAST, leaseMs: 400 }),
          bq.worker('tg', handler('b'), { group: 'b', ...FAST, leaseMs: 400 }),
        ];
        await waitFor('group a balanced 3/3/2', () => {
          const counts = workers.slice(0, 3).map((w) => w.ownedPartitions.length).sort();
          return counts.join(',') === '2,3,3';
        }, 10_000);
        // Group b subscribes once its worker is ready (its group made and, on RabbitMQ, bound):
        // what was published before that goes to the groups that existed. Group a's balance says
        // nothing of b's worker, which a loaded CI machine had not yet readied (b missed messages).
        await Promise.all(workers.map((w) => w.ready));
        await bq.publishBatch('tg', Array.from({ length: 200 }, (_, i) => ({ key: `c${i % 40}`, id: `g${i}`, payload: i })));
        await waitFor('both groups handled all 200', () => (byGroup.get('a')?.length ?? 0) >= 200 && (byGroup.get('b')?.length ?? 0) >= 200);
        assert.equal(new Set(byGroup.get('a')).size, 200);
        assert.equal(new Set(byGroup.get('b')).size, 200);
        // Membership in stats is the store's view of recent heartbeats: on a loaded machine one
        // snapshot may fall between a late heartbeat and its renewal, so read until it settles.
        let stats: Awaited<ReturnType<Botqueue['stats']>>[number] | undefined;
        // The same for owners: a lease renewed late (leaseMs 400 here) shows a partition unowned
        // for a moment.
        const ownersOf = (): Array<string | null | undefined> => stats?.groups.find((g) => g.group === 'a')?.partitions.map((p) => p.owner) ?? [];
        await waitFor('stats show group a with 3 members owning its partitions', async () => {
          [stats] = await bq.stats('tg');
          return stats?.groups.find((g) => g.group === 'a')?.members === 3 && ownersOf().every((o) => typeof o === 'string') && new Set(ownersOf()).size === 3;
        }, 10_000, 100);
        assert.equal(stats?.groups.length, 2);
        assert.equal(stats?.groups.find((g) => g.group === 'a')?.members, 3);
        assert.equal(new Set(ownersOf()).size, 3, 'three owners in group a');
        await Promise.all(workers.map((w) => w.close()));
      });

      test('partitions move to the remaining workers when one leaves, and order holds through the handover', async () => {
        const bq = await open();
        await bq.createTopic('tg', { partitions: 4 });
        const done: Array<{ key: string; n: number }> = [];
        const handler = async (m: Envelope<{ n: number }>) => {
          await sleep(1);
          done.push({ key: m.key!, n: m.payload.n });
        };
        const a = bq.worker('tg', handler, { group: 'g', ...FAST, leaseMs: 400, concurrency: 4 });
        const b = bq.worker('tg', handler, { group: 'g', ...FAST, leaseMs: 400, concurrency: 4 });
        await waitFor('balanced', () => a.ownedPartitions.length === 2 && b.ownedPartitions.length === 2);
        const batch = [];
        for (let n = 0; n < 60; n++) for (let k = 0; k < 10; k++) batch.push({ key: `k${k}`, id: `h${k}-${n}`, payload: { n } });
        await bq.publishBatch('tg', batch);
        await waitFor('some progress', () => done.length > 100);
        await b.close();
        await waitFor('a owns all 4', () => a.ownedPartitions.length === 4, 5_000);
        const c = bq.worker('tg', handler, { group: 'g', ...FAST, leaseMs: 400, concurrency: 4 });
        await waitFor('all 600 handled', () => new Set(done.map((d) => `${d.key}:${d.n}`)).size === 600, 20_000);
        await Promise.all([a.close(), c.close()]);
        assert.deepEqual(orderViolations(done), []);
      });
    });

    describe('bad input', () => {
      test('an unsupported URL lists the supported schemes', async () => {
        await assert.rejects(connect('redis://127.0.0.1:6379'), (error: Error & { code?: string }) => {
          assert.equal(error.code, 'BOTQUEUE_UNSUPPORTED_URL');
          assert.match(error.message, /sqlite:/);
          assert.match(error.message, /memory:/);
          return true;
        });
      });

      test('invalid messages are refused with a clear error and nothing is stored', async () => {
        const bq = await open();
        await bq.createTopic('tb', { partitions: 2 });
        const circular: Record<string, unknown> = {};
        circular.self = circular;
        const cases: Array<[unknown, string, RegExp]> = [
          [{ key: '', id: 'x', payload: 1 }, 'BOTQUEUE_INVALID_MESSAGE', /key must be a non-empty string/],
          [{ key: 42, id: 'x', payload: 1 }, 'BOTQUEUE_INVALID_MESSAGE', /key must be a non-empty string/],
          [{ key: 'k', id: '', payload: 1 }, 'BOTQUEUE_INVALID_MESSAGE', /id must be a non-empty string/],
          [{ key: 'k', id: 7, payload: 1 }, 'BOTQUEUE_INVALID_MESSAGE', /id must be a non-empty string/],
          [{ key: 'k', id: 'x', payload: circular }, 'BOTQUEUE_INVALID_MESSAGE', /not JSON-serialisable/],
          [{ key: 'k', id: 'x', payload: 10n }, 'BOTQUEUE_INVALID_MESSAGE', /not JSON-serialisable/],
          [{ key: 'k', id: 'x', payload: 'x'.repeat(256 * 1024 + 1) }, 'BOTQUEUE_MESSAGE_TOO_LARGE', /over the limit of 262144 bytes/],
        ];
        for (const [message, code, text] of cases) {
          await assert.rejects(bq.publish('tb', message as never), (error: Error & { code?: string }) => {
            assert.equal(error.code, code);
            assert.match(error.message, text);
            return true;
          });
        }
        const [stats] = await bq.stats('tb');
        assert.equal(stats?.retained, 0);
        const small = await connect(factory.url(), { maxMessageBytes: 1_000 });
        clients.push(small);
        await assert.rejects(small.publish('tb', { key: 'k', id: 'y', payload: 'x'.repeat(1_000) }), { code: 'BOTQUEUE_MESSAGE_TOO_LARGE' });
      });

      test('a mistyped worker option is an error that names it', async () => {
        const bq = await open();
        assert.throws(() => bq.worker('tb', () => undefined, { concurency: 4 } as never), { code: 'BOTQUEUE_INVALID_OPTION', message: /"concurency".*did you mean "concurrency"/ });
        assert.throws(() => bq.worker('tb', () => undefined, { onExhausted: 'drop' } as never), { code: 'BOTQUEUE_INVALID_OPTION', message: /onExhausted/ });
        await assert.rejects(connect(factory.url(), { maxMessageBytes: -1 }), { code: 'BOTQUEUE_INVALID_OPTION', message: /maxMessageBytes/ });
      });
    });

    describeLeaseProperties(factory);
  });
}
