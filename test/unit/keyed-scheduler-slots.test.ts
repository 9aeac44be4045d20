import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedScheduler, type RunOutcome } from '../../src/core/keyed-scheduler.js';

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const DONE: RunOutcome = { kind: 'done' };

interface Job {
  item: string;
  releaseSlot: () => void;
  resolve: (outcome: RunOutcome) => void;
}

/** A scheduler whose runs the test settles by hand, keeping each run's releaseSlot. */
function harness(concurrency: number, now: () => number = Date.now) {
  const jobs: Job[] = [];
  const starts: string[] = [];
  const sched = new KeyedScheduler<string>({
    concurrency,
    now,
    run: (item, _key, releaseSlot) => {
      starts.push(item);
      return new Promise<RunOutcome>((resolve) => jobs.push({ item, releaseSlot, resolve }));
    },
  });
  const job = (item: string): Job => {
    const found = jobs.find((j) => j.item === item);
    assert.ok(found, `${item} is not running`);
    return found;
  };
  const finish = async (item: string, outcome: RunOutcome = DONE): Promise<void> => {
    const j = job(item);
    jobs.splice(jobs.indexOf(j), 1);
    j.resolve(outcome);
    await flush();
  };
  return { sched, starts, job, finish };
}

describe('KeyedScheduler: releaseSlot', () => {
  test('frees the slot for another key while the key itself stays held', async () => {
    const h = harness(1);
    h.sched.push('A', 'a1');
    h.sched.push('A', 'a2');
    h.sched.push('B', 'b1');
    await flush();
    assert.deepEqual(h.starts, ['a1']);
    h.job('a1').releaseSlot();
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1'], 'B takes the released slot; a2 waits for a1');
    assert.equal(h.sched.running, 1);
    await h.finish('a1');
    assert.deepEqual(h.starts, ['a1', 'b1'], 'a2 waits for a slot: b1 holds the only one');
    await h.finish('b1');
    assert.deepEqual(h.starts, ['a1', 'b1', 'a2']);
    await h.finish('a2');
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.running, 0);
  });

  test('a second call, or a call after the run settled, does nothing', async () => {
    const h = harness(1);
    h.sched.push('A', 'a1');
    h.sched.push('A', 'a2');
    h.sched.push('B', 'b1');
    await flush();
    const stale = h.job('a1').releaseSlot;
    stale();
    stale();
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1']);
    assert.equal(h.sched.running, 1, 'one release frees one slot');
    await h.finish('a1');
    await h.finish('b1');
    assert.deepEqual(h.starts, ['a1', 'b1', 'a2']);
    h.sched.push('C', 'c1');
    stale();
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1', 'a2'], "a1's late release must not free a2's slot");
    assert.equal(h.sched.running, 1);
    await h.finish('a2');
    assert.deepEqual(h.starts, ['a1', 'b1', 'a2', 'c1']);
    await h.finish('c1');
    assert.equal(h.sched.running, 0);
  });

  test('a late release from a forgotten key does not free the slot of a key that reuses its state', async () => {
    const h = harness(1);
    h.sched.push('A', 'a1');
    await flush();
    const stale = h.job('a1').releaseSlot;
    await h.finish('a1');
    assert.equal(h.sched.hasKey('A'), false);
    h.sched.push('B', 'b1');
    h.sched.push('C', 'c1');
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1']);
    stale();
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1'], 'c1 waits: b1 still holds the only slot');
    assert.equal(h.sched.running, 1);
    await h.finish('b1');
    await h.finish('c1');
  });
});

describe('KeyedScheduler: keys that empty and come back', () => {
  test('a key dropped while its retry timer was set does not wake a later key', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let clock = 1_000;
    const h = harness(2, () => clock);
    h.sched.push('A', 'a1');
    await flush();
    await h.finish('a1', { kind: 'retry', at: clock + 100 });
    assert.deepEqual(h.sched.clear(), ['a1'], 'a waiting head is not running: clear drops it');
    assert.equal(h.sched.hasKey('A'), false);
    h.sched.push('B', 'b1');
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1']);
    clock += 200;
    t.mock.timers.tick(200);
    await flush();
    assert.deepEqual(h.starts, ['a1', 'b1'], 'the old timer was cancelled');
    await h.finish('b1');
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.running, 0);
  });

  test('many short-lived keys: order, counts and parking stay right', async () => {
    const ran: string[] = [];
    const sched = new KeyedScheduler<string>({
      concurrency: 3,
      run: (item) => {
        ran.push(item);
        return Promise.resolve<RunOutcome>(item.endsWith('!') ? { kind: 'done-and-park' } : DONE);
      },
    });
    for (let round = 0; round < 5; round++) {
      for (let k = 0; k < 50; k++) {
        sched.push(`k${k}`, `k${k}.${round}.a`);
        sched.push(`k${k}`, `k${k}.${round}.b`);
      }
      for (let guard = 0; guard < 50 && sched.size > 0; guard++) await flush();
      assert.equal(sched.size, 0, `round ${round}`);
      assert.equal(sched.running, 0);
    }
    for (let k = 0; k < 50; k++) {
      const mine = ran.filter((item) => item.startsWith(`k${k}.`));
      assert.deepEqual(
        mine,
        Array.from({ length: 5 }, (_, r) => [`k${k}.${r}.a`, `k${k}.${r}.b`]).flat(),
      );
    }
    sched.push('p', 'p1!');
    sched.push('p', 'p2');
    for (let guard = 0; guard < 10; guard++) await flush();
    assert.equal(sched.isParked('p'), true);
    assert.deepEqual(ran.slice(-1), ['p1!'], 'p2 waits behind the park');
    sched.unpark('p');
    for (let guard = 0; guard < 10; guard++) await flush();
    assert.deepEqual(ran.slice(-2), ['p1!', 'p2']);
    assert.equal(sched.hasKey('p'), false);
  });
});
