import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { KeyedScheduler, type KeyedSchedulerOptions, type RunOutcome } from '../../src/core/keyed-scheduler.js';

/** Lets every pending promise continuation run (the scheduler settles an outcome a few microtasks later). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

const DONE: RunOutcome = { kind: 'done' };
const PARK: RunOutcome = { kind: 'park' };
const DONE_AND_PARK: RunOutcome = { kind: 'done-and-park' };

interface Job {
  key: string;
  item: string;
  resolve: (outcome: RunOutcome) => void;
  reject: (error: unknown) => void;
}

/**
 * A scheduler whose `run` hands back a promise the test settles by hand, with a clock the test
 * moves (together with the mocked setTimeout, see `advance`).
 */
class Harness {
  clock = 1_000_000;
  readonly jobs: Job[] = [];
  readonly starts: string[] = [];
  readonly completed: string[] = [];
  readonly violations: string[] = [];
  maxRunning = 0;
  readonly sched: KeyedScheduler<string>;

  constructor(concurrency: number, extra: Partial<KeyedSchedulerOptions<string>> = {}) {
    this.sched = new KeyedScheduler<string>({
      concurrency,
      now: () => this.clock,
      ...extra,
      run: (item, key) => {
        // No assert here: a throw inside run would be taken by the scheduler as a handler crash.
        if (this.jobs.some((j) => j.key === key)) this.violations.push(`${item} started while ${key} was running`);
        const promise = new Promise<RunOutcome>((resolve, reject) => this.jobs.push({ key, item, resolve, reject }));
        this.starts.push(item);
        this.maxRunning = Math.max(this.maxRunning, this.jobs.length);
        return promise;
      },
    });
  }

  running(): string[] {
    return this.jobs.map((j) => j.item);
  }

  private take(item: string): Job {
    const i = this.jobs.findIndex((j) => j.item === item);
    assert.ok(i >= 0, `${item} is not running (running: ${this.running().join(', ') || 'nothing'})`);
    return this.jobs.splice(i, 1)[0]!;
  }

  async finish(item: string, outcome: RunOutcome = DONE): Promise<void> {
    const job = this.take(item);
    if (outcome.kind === 'done' || outcome.kind === 'done-and-park') this.completed.push(item);
    job.resolve(outcome);
    await flush();
  }

  async crash(item: string, error: unknown = new Error(`${item} crashed`)): Promise<void> {
    this.take(item).reject(error);
    await flush();
  }

  /** Moves the injected clock and the mocked setTimeout together. */
  async advance(t: TestContext, ms: number): Promise<void> {
    this.clock += ms;
    t.mock.timers.tick(ms);
    await flush();
  }

  push(key: string, ...items: string[]): void {
    for (const item of items) this.sched.push(key, item);
  }
}

describe('KeyedScheduler: construction', () => {
  test('rejects a concurrency that is not a positive integer', () => {
    for (const concurrency of [0, -1, 1.5, Number.NaN, Infinity]) {
      assert.throws(
        () => new KeyedScheduler<string>({ concurrency, run: () => Promise.resolve(DONE) }),
        (error: unknown) => error instanceof RangeError && /concurrency must be a positive integer/.test(error.message),
        `concurrency ${concurrency}`,
      );
    }
  });

  test('starts empty', () => {
    const h = new Harness(2);
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.running, 0);
    assert.equal(h.sched.keyLength('a'), 0);
    assert.equal(h.sched.hasKey('a'), false);
    assert.equal(h.sched.isParked('a'), false);
  });
});

describe('KeyedScheduler: per-key FIFO', () => {
  test('items of one key run one at a time, in push order, even with free slots', async () => {
    const h = new Harness(4);
    h.push('A', 'a1', 'a2', 'a3');
    await flush();
    assert.deepEqual(h.starts, ['a1']);
    assert.equal(h.sched.running, 1);
    assert.equal(h.sched.size, 3);
    assert.equal(h.sched.keyLength('A'), 3);

    await h.finish('a1');
    assert.deepEqual(h.starts, ['a1', 'a2']);
    assert.equal(h.sched.size, 2);
    await h.finish('a2');
    assert.deepEqual(h.starts, ['a1', 'a2', 'a3']);
    await h.finish('a3');

    assert.deepEqual(h.completed, ['a1', 'a2', 'a3']);
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.running, 0);
    assert.equal(h.sched.hasKey('A'), false, 'an empty key is forgotten');
    assert.deepEqual(h.violations, []);
  });

  test('an item pushed while its key runs waits for the running one', async () => {
    const h = new Harness(3);
    h.push('A', 'a1');
    await flush();
    h.push('A', 'a2');
    h.push('B', 'b1');
    await flush();
    assert.deepEqual(h.running(), ['a1', 'b1']);
    await h.finish('a1');
    assert.deepEqual(h.running(), ['b1', 'a2']);
    assert.deepEqual(h.violations, []);
  });

  test('run gets the item and its key', async () => {
    const seen: Array<[string, string]> = [];
    const s = new KeyedScheduler<string>({
      concurrency: 2,
      run: (item, key) => {
        seen.push([item, key]);
        return Promise.resolve(DONE);
      },
    });
    s.push('chat:1', 'hello');
    s.push('chat:2', 'world');
    await flush();
    assert.deepEqual(seen, [
      ['hello', 'chat:1'],
      ['world', 'chat:2'],
    ]);
    assert.equal(s.size, 0);
  });

  test('handles long queues (internal compaction keeps order and counts)', async () => {
    const order: number[] = [];
    const s = new KeyedScheduler<number>({
      concurrency: 3,
      run: (item) => {
        order.push(item);
        return Promise.resolve(DONE);
      },
    });
    for (let i = 0; i < 300; i++) s.push('A', i);
    for (let i = 0; i < 2_000; i++) s.push(`k${i}`, 1_000 + i);
    for (let guard = 0; guard < 100 && s.size > 0; guard++) await flush();
    const a = order.filter((i) => i < 1_000);
    assert.deepEqual(a, Array.from({ length: 300 }, (_, i) => i));
    assert.equal(order.length, 2_300);
    assert.equal(s.running, 0);
    assert.equal(s.hasKey('A'), false);
  });
});

describe('KeyedScheduler: concurrency and parallelism', () => {
  test('never more than `concurrency` items run at once', async () => {
    const h = new Harness(3);
    for (let i = 0; i < 10; i++) h.push(`k${i}`, `i${i}`);
    await flush();
    assert.equal(h.sched.running, 3);
    assert.deepEqual(h.running(), ['i0', 'i1', 'i2']);
    assert.equal(h.sched.size, 10);

    await h.finish('i1');
    assert.deepEqual(h.running(), ['i0', 'i2', 'i3'], 'a freed slot takes the next ready key');
    while (h.jobs.length > 0) await h.finish(h.jobs[0]!.item);
    assert.equal(h.completed.length, 10);
    assert.equal(h.maxRunning, 3);
    assert.equal(h.sched.size, 0);
  });

  test('keys start in the order they became ready', async () => {
    const h = new Harness(1);
    h.push('C', 'c1');
    h.push('A', 'a1');
    h.push('B', 'b1');
    h.push('A', 'a2');
    while (h.jobs.length > 0) await h.finish(h.jobs[0]!.item);
    assert.deepEqual(h.starts, ['c1', 'a1', 'b1', 'a2']);
  });

  test('a key whose item never finishes does not stall other keys', async () => {
    const h = new Harness(2);
    h.push('stuck', 's1', 's2');
    h.push('B', 'b1', 'b2', 'b3');
    h.push('C', 'c1', 'c2');
    await flush();
    for (let n = 0; n < 10 && h.jobs.some((j) => j.key !== 'stuck'); n++) {
      await h.finish(h.jobs.find((j) => j.key !== 'stuck')!.item);
    }
    assert.deepEqual(h.completed.sort(), ['b1', 'b2', 'b3', 'c1', 'c2']);
    assert.deepEqual(h.running(), ['s1']);
    assert.equal(h.sched.size, 2);
    assert.equal(h.maxRunning, 2);
    assert.deepEqual(h.violations, []);
  });

  test('concurrency 1 runs everything one after the other', async () => {
    const h = new Harness(1);
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1');
    while (h.jobs.length > 0) {
      assert.equal(h.jobs.length, 1);
      await h.finish(h.jobs[0]!.item);
    }
    assert.equal(h.completed.length, 3);
    assert.equal(h.maxRunning, 1);
  });
});

describe('KeyedScheduler: retry', () => {
  test('retry re-runs the same head, not before `at`, while other keys go on', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1', 'b2');
    await flush();
    assert.deepEqual(h.running(), ['a1', 'b1']);

    await h.finish('a1', { kind: 'retry', at: h.clock + 1_000 });
    assert.deepEqual(h.running(), ['b1'], 'neither a1 again nor a2 starts during the backoff');
    assert.equal(h.sched.keyLength('A'), 2, 'the retried head stays queued');
    assert.equal(h.sched.size, 4);

    await h.finish('b1');
    assert.deepEqual(h.running(), ['b2'], 'B goes on while A waits');
    await h.finish('b2');

    await h.advance(t, 999);
    assert.deepEqual(h.running(), [], 'not before `at`');
    await h.advance(t, 1);
    assert.deepEqual(h.running(), ['a1'], 'the same head runs again at `at`');
    assert.deepEqual(h.starts, ['a1', 'b1', 'b2', 'a1']);

    await h.finish('a1');
    assert.deepEqual(h.running(), ['a2']);
    await h.finish('a2');
    assert.deepEqual(h.completed, ['b1', 'b2', 'a1', 'a2']);
    assert.equal(h.sched.size, 0);
  });

  test('a retry whose `at` has passed runs again at once', async () => {
    const h = new Harness(1);
    h.push('A', 'a1', 'a2');
    await flush();
    await h.finish('a1', { kind: 'retry', at: h.clock - 5 });
    assert.deepEqual(h.running(), ['a1']);
    assert.deepEqual(h.starts, ['a1', 'a1']);
  });

  test('a waiting retry does not occupy a slot', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(1);
    h.push('A', 'a1');
    h.push('B', 'b1');
    await flush();
    await h.finish('a1', { kind: 'retry', at: h.clock + 50 });
    assert.deepEqual(h.running(), ['b1']);
    await h.advance(t, 60);
    assert.deepEqual(h.running(), ['b1'], 'due, but the only slot is taken');
    await h.finish('b1');
    assert.deepEqual(h.running(), ['a1']);
  });

  test('a rejected run calls onRunError and is retried after retryAfterCrashMs', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const errors: Array<[unknown, string, string]> = [];
    const h = new Harness(2, { retryAfterCrashMs: 200, onRunError: (e, item, key) => errors.push([e, item, key]) });
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1');
    await flush();
    const boom = new Error('handler bug');
    await h.crash('a1', boom);
    assert.deepEqual(errors, [[boom, 'a1', 'A']]);
    assert.deepEqual(h.running(), ['b1']);
    assert.equal(h.sched.size, 3);
    await h.advance(t, 199);
    assert.deepEqual(h.running(), ['b1']);
    await h.advance(t, 1);
    assert.deepEqual(h.running(), ['b1', 'a1']);
    assert.deepEqual(h.starts, ['a1', 'b1', 'a1']);
  });

  test('a run that throws synchronously is handled like a rejection', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let clock = 0;
    let calls = 0;
    const errors: unknown[] = [];
    const s = new KeyedScheduler<string>({
      concurrency: 1,
      now: () => clock,
      retryAfterCrashMs: 10,
      onRunError: (e) => errors.push(e),
      run: () => {
        calls++;
        if (calls === 1) throw new Error('sync');
        return Promise.resolve(DONE);
      },
    });
    s.push('A', 'a1');
    await flush();
    assert.equal(errors.length, 1);
    assert.equal(s.running, 0);
    assert.equal(s.size, 1);
    clock += 10;
    t.mock.timers.tick(10);
    await flush();
    assert.equal(calls, 2);
    assert.equal(s.size, 0);
  });

  test('retryAfterCrashMs defaults to 1000 ms and now defaults to Date.now', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 5_000_000 });
    let calls = 0;
    const s = new KeyedScheduler<string>({
      concurrency: 1,
      run: () => {
        calls++;
        return calls === 1 ? Promise.reject(new Error('x')) : Promise.resolve(DONE);
      },
    });
    s.push('A', 'a1');
    await flush();
    assert.equal(calls, 1);
    t.mock.timers.tick(999);
    await flush();
    assert.equal(calls, 1);
    t.mock.timers.tick(1);
    await flush();
    assert.equal(calls, 2);
    assert.equal(s.size, 0);
  });
});

describe('KeyedScheduler: delayed items (notBefore)', () => {
  test('a delayed head holds its key, not the others', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(2);
    h.sched.push('A', 'a1', h.clock + 500);
    h.push('A', 'a2');
    h.push('B', 'b1');
    await flush();
    assert.deepEqual(h.running(), ['b1']);
    await h.advance(t, 499);
    assert.deepEqual(h.running(), ['b1']);
    await h.advance(t, 1);
    assert.deepEqual(h.running(), ['b1', 'a1']);
    await h.finish('a1');
    assert.deepEqual(h.running(), ['b1', 'a2']);
  });

  test('a notBefore in the past runs at once', async () => {
    const h = new Harness(1);
    h.sched.push('A', 'a1', h.clock - 1);
    await flush();
    assert.deepEqual(h.running(), ['a1']);
  });

  test('a later item with notBefore waits after its predecessor is done', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(1);
    h.push('A', 'a1');
    h.sched.push('A', 'a2', h.clock + 100);
    await flush();
    await h.finish('a1');
    assert.deepEqual(h.running(), []);
    await h.advance(t, 100);
    assert.deepEqual(h.running(), ['a2']);
  });
});

describe('KeyedScheduler: park', () => {
  test('park keeps the head and holds the key until unpark; other keys go on', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1', 'b2');
    await flush();
    await h.finish('a1', PARK);
    assert.equal(h.sched.isParked('A'), true);
    assert.equal(h.sched.keyLength('A'), 2);
    assert.deepEqual(h.running(), ['b1']);

    h.push('A', 'a3');
    await h.finish('b1');
    await h.finish('b2');
    assert.deepEqual(h.running(), [], 'nothing of A starts while parked');
    assert.equal(h.sched.size, 3);

    h.sched.unpark('A');
    await flush();
    assert.equal(h.sched.isParked('A'), false);
    assert.deepEqual(h.running(), ['a1'], 'the parked head runs again');
    await h.finish('a1');
    await h.finish('a2');
    await h.finish('a3');
    assert.deepEqual(h.completed, ['b1', 'b2', 'a1', 'a2', 'a3']);
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.hasKey('A'), false);
  });

  test('done-and-park removes the head and holds the rest of the key', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    await flush();
    await h.finish('a1', DONE_AND_PARK);
    assert.equal(h.sched.isParked('A'), true);
    assert.equal(h.sched.keyLength('A'), 1);
    assert.equal(h.sched.size, 1);
    assert.deepEqual(h.running(), []);
    h.sched.unpark('A');
    await flush();
    assert.deepEqual(h.running(), ['a2']);
    await h.finish('a2');
    assert.equal(h.sched.size, 0);
  });

  test('done-and-park on the last item keeps the key parked for later pushes', async () => {
    const h = new Harness(2);
    h.push('A', 'a1');
    await flush();
    await h.finish('a1', DONE_AND_PARK);
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.isParked('A'), true);
    assert.equal(h.sched.hasKey('A'), true);
    h.push('A', 'a2');
    await flush();
    assert.deepEqual(h.running(), [], 'a new item of a parked key waits');
    assert.equal(h.sched.size, 1);
    h.sched.unpark('A');
    await flush();
    assert.deepEqual(h.running(), ['a2']);
  });

  test('unparking an empty parked key forgets it', async () => {
    const h = new Harness(1);
    h.push('A', 'a1');
    await flush();
    await h.finish('a1', DONE_AND_PARK);
    h.sched.unpark('A');
    assert.equal(h.sched.isParked('A'), false);
    assert.equal(h.sched.hasKey('A'), false);
  });

  test('unpark of an unknown, running or not parked key does nothing', async () => {
    const h = new Harness(2);
    h.sched.unpark('nobody');
    assert.equal(h.sched.hasKey('nobody'), false);
    h.push('A', 'a1', 'a2');
    await flush();
    h.sched.unpark('A');
    await flush();
    assert.deepEqual(h.running(), ['a1'], 'unpark must not start a second item of a running key');
    assert.deepEqual(h.violations, []);
  });

  test('a parked key does not take a slot', async () => {
    const h = new Harness(1);
    h.push('A', 'a1');
    h.push('B', 'b1');
    await flush();
    await h.finish('a1', PARK);
    assert.deepEqual(h.running(), ['b1']);
  });
});

describe('KeyedScheduler: drop and clear', () => {
  test('never removes a running item; removes the whole tail from the first match', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2', 'a3', 'a4');
    h.push('B', 'b1', 'b2');
    await flush();
    assert.deepEqual(h.sched.drop((item) => item === 'a1'), [], 'the running head is not dropped');
    assert.equal(h.sched.size, 6);

    assert.deepEqual(h.sched.drop((item) => item === 'a3'), ['a3', 'a4']);
    assert.equal(h.sched.keyLength('A'), 2);
    assert.equal(h.sched.keyLength('B'), 2);
    assert.equal(h.sched.size, 4);

    await h.finish('a1');
    await h.finish('a2');
    assert.equal(h.sched.hasKey('A'), false);
    await h.finish('b1');
    await h.finish('b2');
    assert.deepEqual(h.starts.sort(), ['a1', 'a2', 'b1', 'b2']);
    assert.equal(h.sched.size, 0);
  });

  test('the predicate gets the key; a waiting key dropped whole is forgotten', async () => {
    const h = new Harness(1);
    h.push('X', 'x1');
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1', 'b2');
    await flush();
    const seenKeys = new Set<string>();
    const dropped = h.sched.drop((_item, key) => {
      seenKeys.add(key);
      return key === 'A';
    });
    assert.deepEqual(dropped, ['a1', 'a2']);
    assert.ok(seenKeys.has('A') && seenKeys.has('B'));
    assert.equal(h.sched.hasKey('A'), false);
    assert.equal(h.sched.size, 3);
    await h.finish('x1');
    assert.deepEqual(h.running(), ['b1'], 'the dropped key does not run although it was ready');
    await h.finish('b1');
    await h.finish('b2');
    assert.deepEqual(h.starts, ['x1', 'b1', 'b2']);
    assert.equal(h.sched.size, 0);
  });

  test('the predicate never sees a running item', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1');
    await flush();
    const seen: string[] = [];
    h.sched.drop((item) => {
      seen.push(item);
      return false;
    });
    assert.deepEqual(seen, ['a2']);
  });

  test('dropping a key that waits on a retry timer cancels it', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(1);
    h.push('A', 'a1');
    await flush();
    await h.finish('a1', { kind: 'retry', at: h.clock + 100 });
    assert.deepEqual(h.sched.drop(() => true), ['a1']);
    assert.equal(h.sched.hasKey('A'), false);
    await h.advance(t, 200);
    assert.deepEqual(h.starts, ['a1'], 'the dropped item must not run again');
    h.push('A', 'a9');
    await flush();
    assert.deepEqual(h.running(), ['a9'], 'a new item of the key runs at once');
  });

  test('dropping the items of a parked key keeps the key parked', async () => {
    const h = new Harness(1);
    h.push('A', 'a1', 'a2');
    await flush();
    await h.finish('a1', PARK);
    assert.deepEqual(h.sched.drop((_i, key) => key === 'A'), ['a1', 'a2']);
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.isParked('A'), true);
    h.push('A', 'a3');
    await flush();
    assert.deepEqual(h.running(), []);
    h.sched.unpark('A');
    await flush();
    assert.deepEqual(h.running(), ['a3']);
  });

  test('a dropped head waiting on its notBefore does not block the key later', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(1);
    h.sched.push('A', 'late', h.clock + 1_000);
    h.push('A', 'next');
    assert.deepEqual(h.sched.drop((item) => item === 'late'), ['late', 'next']);
    h.push('A', 'fresh');
    await flush();
    assert.deepEqual(h.running(), ['fresh']);
    await h.advance(t, 1_000);
    assert.deepEqual(h.starts, ['fresh']);
  });

  test('drop returns [] and changes nothing when nothing matches', async () => {
    const h = new Harness(1);
    h.push('A', 'a1', 'a2');
    await flush();
    assert.deepEqual(h.sched.drop(() => false), []);
    assert.equal(h.sched.size, 2);
    assert.equal(h.sched.keyLength('A'), 2);
  });

  test('clear drops every waiting item and keeps the running ones', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1', 'b2');
    h.push('C', 'c1');
    await flush();
    const dropped = h.sched.clear();
    assert.deepEqual(dropped.sort(), ['a2', 'b2', 'c1']);
    assert.equal(h.sched.size, 2);
    assert.equal(h.sched.hasKey('C'), false);
    await h.finish('a1');
    await h.finish('b1');
    assert.deepEqual(h.running(), []);
    assert.equal(h.sched.size, 0);
  });
});

describe('KeyedScheduler: trimKey', () => {
  test('keeps the first `keep` items of a waiting key and returns the rest in order', async () => {
    const h = new Harness(1);
    h.push('X', 'x1');
    h.push('A', 'a1', 'a2', 'a3', 'a4');
    h.push('B', 'b1');
    await flush();
    assert.deepEqual(h.sched.trimKey('A', 2), ['a3', 'a4']);
    assert.equal(h.sched.keyLength('A'), 2);
    assert.equal(h.sched.keyLength('B'), 1, 'other keys are untouched');
    assert.equal(h.sched.size, 4);
    assert.deepEqual(h.sched.trimKey('A', 2), [], 'nothing more to trim');
    assert.deepEqual(h.sched.trimKey('A', 10), []);
    while (h.jobs.length > 0) await h.finish(h.jobs[0]!.item);
    assert.deepEqual(h.completed, ['x1', 'a1', 'b1', 'a2']);
    assert.equal(h.sched.size, 0);
  });

  test('a running head always counts as kept, even with keep 0', async () => {
    const h = new Harness(1);
    h.push('A', 'a1', 'a2', 'a3');
    await flush();
    assert.deepEqual(h.sched.trimKey('A', 0), ['a2', 'a3']);
    assert.deepEqual(h.running(), ['a1']);
    assert.equal(h.sched.size, 1);
    await h.finish('a1');
    assert.equal(h.sched.size, 0);
    assert.equal(h.sched.hasKey('A'), false);
  });

  test('keep 0 on a waiting key removes it whole and forgets it', async () => {
    const h = new Harness(1);
    h.push('X', 'x1');
    h.push('A', 'a1', 'a2');
    await flush();
    assert.deepEqual(h.sched.trimKey('A', 0), ['a1', 'a2']);
    assert.equal(h.sched.hasKey('A'), false);
    await h.finish('x1');
    assert.deepEqual(h.starts, ['x1']);
  });

  test('trimming from inside run, then retrying, keeps only the head (the worker holds a waiting key this way)', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(2);
    h.push('A', 'a1', 'a2', 'a3');
    await flush();
    assert.deepEqual(h.sched.trimKey('A', 1), ['a2', 'a3']);
    await h.finish('a1', { kind: 'retry', at: h.clock + 100 });
    assert.equal(h.sched.size, 1);
    await h.advance(t, 100);
    assert.deepEqual(h.running(), ['a1'], 'the kept head still runs at `at`');
    await h.finish('a1');
    assert.equal(h.sched.size, 0);
  });

  test('trimming a parked key keeps it parked', async () => {
    const h = new Harness(1);
    h.push('A', 'a1', 'a2');
    await flush();
    await h.finish('a1', PARK);
    assert.deepEqual(h.sched.trimKey('A', 0), ['a1', 'a2']);
    assert.equal(h.sched.isParked('A'), true);
    assert.equal(h.sched.size, 0);
  });

  test('an unknown key gives []', () => {
    const h = new Harness(1);
    assert.deepEqual(h.sched.trimKey('nobody', 0), []);
    assert.equal(h.sched.hasKey('nobody'), false);
  });
});

describe('KeyedScheduler: pause, resume, whenIdle', () => {
  test('pause stops new starts, running items finish, resume starts up to concurrency', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    await flush();
    h.sched.pause();
    h.push('B', 'b1');
    h.push('C', 'c1');
    await flush();
    assert.deepEqual(h.running(), ['a1']);
    await h.finish('a1');
    assert.deepEqual(h.running(), [], 'a freed slot is not used while paused');
    assert.equal(h.sched.size, 3);
    h.sched.resume();
    await flush();
    assert.equal(h.running().length, 2);
    assert.deepEqual(h.running(), ['b1', 'c1']);
  });

  test('a retry that falls due while paused starts on resume', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const h = new Harness(1);
    h.push('A', 'a1');
    await flush();
    await h.finish('a1', { kind: 'retry', at: h.clock + 10 });
    h.sched.pause();
    await h.advance(t, 50);
    assert.deepEqual(h.running(), []);
    h.sched.resume();
    await flush();
    assert.deepEqual(h.running(), ['a1']);
  });

  test('whenIdle resolves at once when nothing runs, even with parked or delayed items', async () => {
    const h = new Harness(1);
    await h.sched.whenIdle();
    h.push('A', 'a1', 'a2');
    await flush();
    await h.finish('a1', PARK);
    assert.equal(h.sched.size, 2);
    let resolved = false;
    void h.sched.whenIdle().then(() => (resolved = true));
    await flush();
    assert.equal(resolved, true);
  });

  test('whenIdle waits for the last running item', async () => {
    const h = new Harness(3);
    h.push('A', 'a1');
    h.push('B', 'b1');
    await flush();
    let first = false;
    let second = false;
    void h.sched.whenIdle().then(() => (first = true));
    void h.sched.whenIdle().then(() => (second = true));
    await h.finish('a1');
    assert.equal(first, false, 'b1 still runs');
    await h.finish('b1');
    assert.equal(first, true);
    assert.equal(second, true, 'every waiter is resolved');
  });

  test('after pause, whenIdle means drained: nothing runs when it resolves', async () => {
    const h = new Harness(2);
    h.push('A', 'a1', 'a2');
    h.push('B', 'b1', 'b2');
    await flush();
    h.sched.pause();
    const idle = h.sched.whenIdle();
    await h.finish('a1');
    await h.finish('b1');
    await idle;
    assert.equal(h.sched.running, 0);
    assert.deepEqual(h.running(), []);
    assert.equal(h.sched.size, 2);
  });

  // Regression: a throwing onRunError used to leave the key running and its slot lost for ever.
  test('an onRunError that throws does not wedge the scheduler', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    let clock = 0;
    const ran: string[] = [];
    const s = new KeyedScheduler<string>({
      concurrency: 1,
      now: () => clock,
      retryAfterCrashMs: 10,
      onRunError: () => {
        throw new Error('logger broke');
      },
      run: (item) => {
        ran.push(item);
        return ran.length === 1 ? Promise.reject(new Error('handler bug')) : Promise.resolve(DONE);
      },
    });
    s.push('A', 'a1');
    s.push('B', 'b1');
    await flush();
    assert.deepEqual(ran, ['a1', 'b1'], 'b1 should get the slot a1 left');
    assert.equal(s.running, 0);
    clock += 10;
    t.mock.timers.tick(10);
    await flush();
    assert.deepEqual(ran, ['a1', 'b1', 'a1'], 'a1 is retried after retryAfterCrashMs');
    assert.equal(s.size, 0);
  });
});

// ---------------------------------------------------------------------------------------------
// Property-based tests
// ---------------------------------------------------------------------------------------------

/** What one run of an item does; an item's script ends with 'done' or 'done-and-park'. */
type Step =
  | { kind: 'done' }
  | { kind: 'done-and-park' }
  | { kind: 'retry'; delay: number }
  | { kind: 'park' }
  | { kind: 'crash' };

type Command =
  | { t: 'push'; key: number; delay: number; script: Step[] }
  | { t: 'finish'; pick: number }
  | { t: 'tick'; ms: number }
  | { t: 'unpark'; key: number }
  | { t: 'pause' }
  | { t: 'resume' }
  | { t: 'drop'; key: number; pick: number }
  | { t: 'trim'; key: number; keep: number };

const CRASH_RETRY_MS = 7;

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ kind: fc.constant('retry' as const), delay: fc.integer({ min: 0, max: 25 }) }),
  fc.constant({ kind: 'park' as const }),
  fc.constant({ kind: 'crash' as const }),
);
const finalArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.constant({ kind: 'done' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'done-and-park' as const }) },
);
const scriptArb: fc.Arbitrary<Step[]> = fc
  .tuple(fc.array(stepArb, { maxLength: 2 }), finalArb)
  .map(([before, last]) => [...before, last]);

const commandArb = (keys: number, withDrop: boolean): fc.Arbitrary<Command> =>
  fc.oneof(
    {
      weight: 5,
      arbitrary: fc.record({
        t: fc.constant('push' as const),
        key: fc.nat(keys - 1),
        delay: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 30 }) }),
        script: scriptArb,
      }),
    },
    { weight: 5, arbitrary: fc.record({ t: fc.constant('finish' as const), pick: fc.nat(7) }) },
    { weight: 2, arbitrary: fc.record({ t: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 30 }) }) },
    { weight: 1, arbitrary: fc.record({ t: fc.constant('unpark' as const), key: fc.nat(keys - 1) }) },
    { weight: 1, arbitrary: fc.constant({ t: 'pause' as const }) },
    { weight: 1, arbitrary: fc.constant({ t: 'resume' as const }) },
    { weight: withDrop ? 1 : 0, arbitrary: fc.record({ t: fc.constant('drop' as const), key: fc.nat(keys - 1), pick: fc.nat(7) }) },
    { weight: withDrop ? 1 : 0, arbitrary: fc.record({ t: fc.constant('trim' as const), key: fc.nat(keys - 1), keep: fc.nat(3) }) },
  );

interface ModelJob {
  key: string;
  item: string;
  step: Step;
  resolve: (outcome: RunOutcome) => void;
  reject: (error: unknown) => void;
}

/**
 * Drives a real scheduler with `commands`, keeping a model of what it must do, then drains it
 * (finishing runs, unparking keys, moving time) and checks the invariants:
 * (a) at most `concurrency` running, (b) never two items of one key at once, (c) per key, items
 * complete in push order, (d) every item completes or is returned by drop/trimKey, exactly once,
 * (e) size, running and keyLength match the model at every step and return to 0 — plus: a parked
 * or paused scheduler starts nothing, nothing runs before its notBefore, and no slot stays free
 * while some key is ready (work conservation: no head-of-line blocking across keys).
 */
async function checkScenario(tick: (ms: number) => void, concurrency: number, keyCount: number, commands: Command[]): Promise<void> {
  let clock = 0;
  const keyName = (k: number): string => `k${k}`;
  const keys = Array.from({ length: keyCount }, (_, k) => keyName(k));
  const pending = new Map(keys.map((k) => [k, [] as string[]]));
  const pushed = new Map(keys.map((k) => [k, [] as string[]]));
  const completed = new Map(keys.map((k) => [k, [] as string[]]));
  const parked = new Map(keys.map((k) => [k, false]));
  const scripts = new Map<string, Step[]>();
  const runsOf = new Map<string, number>();
  const notBefore = new Map<string, number>();
  const running = new Map<string, ModelJob>(); // by key
  const droppedItems: string[] = [];
  const violations: string[] = [];
  let paused = false;
  let seq = 0;
  let crashes = 0;

  const sched = new KeyedScheduler<string>({
    concurrency,
    now: () => clock,
    retryAfterCrashMs: CRASH_RETRY_MS,
    onRunError: () => {
      crashes++;
    },
    run: (item, key) => {
      if (paused) violations.push(`${item} started while paused`);
      if (running.has(key)) violations.push(`(b) ${item} started while ${running.get(key)!.item} of ${key} runs`);
      if (running.size >= concurrency) violations.push(`(a) ${item} started with ${running.size} running, concurrency ${concurrency}`);
      if (parked.get(key)) violations.push(`${item} started while ${key} is parked`);
      if (pending.get(key)![0] !== item) violations.push(`(c) ${item} started but the head of ${key} is ${pending.get(key)![0]}`);
      if (clock < notBefore.get(item)!) violations.push(`${item} started at ${clock}, before its notBefore ${notBefore.get(item)}`);
      const n = runsOf.get(item)!;
      runsOf.set(item, n + 1);
      const step = scripts.get(item)![n];
      if (step === undefined) {
        violations.push(`${item} ran again after it was done`);
        return Promise.resolve(DONE);
      }
      return new Promise<RunOutcome>((resolve, reject) => running.set(key, { key, item, step, resolve, reject }));
    },
  });

  const check = (where: string): void => {
    assert.deepEqual(violations, [], where);
    assert.equal(sched.running, running.size, `${where}: running count`);
    let total = 0;
    for (const k of keys) {
      const queue = pending.get(k)!;
      total += queue.length;
      assert.equal(sched.keyLength(k), queue.length, `${where}: keyLength(${k})`);
      assert.equal(sched.isParked(k), parked.get(k), `${where}: isParked(${k})`);
    }
    assert.equal(sched.size, total, `${where}: size`);
    if (!paused && running.size < concurrency) {
      for (const k of keys) {
        const head = pending.get(k)![0];
        if (head !== undefined && !running.has(k) && !parked.get(k) && notBefore.get(head)! <= clock) {
          assert.fail(`${where}: ${k} is ready (head ${head}) but only ${running.size} of ${concurrency} slots are used`);
        }
      }
    }
  };

  const settle = async (job: ModelJob): Promise<void> => {
    running.delete(job.key);
    const { key, item, step } = job;
    switch (step.kind) {
      case 'done':
      case 'done-and-park':
        pending.get(key)!.shift();
        completed.get(key)!.push(item);
        if (step.kind === 'done-and-park') parked.set(key, true);
        job.resolve({ kind: step.kind });
        break;
      case 'park':
        parked.set(key, true);
        job.resolve(PARK);
        break;
      case 'retry':
        notBefore.set(item, clock + step.delay);
        job.resolve({ kind: 'retry', at: clock + step.delay });
        break;
      case 'crash':
        notBefore.set(item, clock + CRASH_RETRY_MS);
        crashes--;
        job.reject(new Error(`${item} crashed`));
        break;
    }
    await flush();
    if (step.kind === 'crash' && crashes !== 0) violations.push(`onRunError was not called once for ${item}`);
  };

  const advance = (ms: number): void => {
    // One millisecond at a time, so that "not before notBefore" is checked exactly.
    for (let i = 0; i < ms; i++) {
      clock++;
      tick(1);
    }
  };

  const unpark = (key: string): void => {
    parked.set(key, false);
    sched.unpark(key);
  };

  for (const [i, command] of commands.entries()) {
    switch (command.t) {
      case 'push': {
        const key = keyName(command.key);
        const item = `${key}#${seq++}`;
        scripts.set(item, command.script);
        runsOf.set(item, 0);
        notBefore.set(item, clock + command.delay);
        pending.get(key)!.push(item);
        pushed.get(key)!.push(item);
        sched.push(key, item, command.delay === 0 ? 0 : clock + command.delay);
        break;
      }
      case 'finish': {
        const jobs = [...running.values()];
        if (jobs.length > 0) await settle(jobs[command.pick % jobs.length]!);
        break;
      }
      case 'tick':
        advance(command.ms);
        break;
      case 'unpark':
        unpark(keyName(command.key));
        break;
      case 'pause':
        paused = true;
        sched.pause();
        break;
      case 'resume':
        paused = false;
        sched.resume();
        break;
      case 'drop': {
        const key = keyName(command.key);
        const queue = pending.get(key)!;
        const target = queue.length === 0 ? '(none)' : queue[command.pick % queue.length]!;
        const runningItems = new Set([...running.values()].map((j) => j.item));
        const seenRunning: string[] = [];
        const result = sched.drop((item) => {
          if (runningItems.has(item)) seenRunning.push(item);
          return item === target;
        });
        assert.deepEqual(seenRunning, [], 'drop showed a running item to the predicate');
        const index = queue.indexOf(target);
        const expected = index === -1 || runningItems.has(target) ? [] : queue.slice(index);
        assert.deepEqual(result, expected, `drop(${target})`);
        if (expected.length > 0) queue.length = index;
        droppedItems.push(...result);
        break;
      }
      case 'trim': {
        const key = keyName(command.key);
        const queue = pending.get(key)!;
        const keep = Math.max(command.keep, running.has(key) ? 1 : 0);
        const result = sched.trimKey(key, command.keep);
        assert.deepEqual(result, queue.slice(keep), `trimKey(${key}, ${command.keep})`);
        if (queue.length > keep) queue.length = keep;
        droppedItems.push(...result);
        break;
      }
    }
    await flush();
    check(`after command #${i} ${JSON.stringify(command)}`);
  }

  // Drain: nothing is parked for ever and time moves on, so everything must complete.
  for (let guard = 0; ; guard++) {
    assert.ok(guard < 5_000, 'the scheduler did not drain (liveness)');
    if (paused) {
      paused = false;
      sched.resume();
    } else if (running.size > 0) {
      await settle([...running.values()][0]!);
    } else if (keys.some((k) => parked.get(k))) {
      unpark(keys.find((k) => parked.get(k))!);
    } else if (sched.size > 0) {
      const due = Math.min(...keys.flatMap((k) => (pending.get(k)!.length > 0 ? [notBefore.get(pending.get(k)![0]!)!] : [])));
      assert.ok(due > clock, `heads are due at ${due} (now ${clock}) but nothing runs`);
      advance(due - clock);
    } else {
      break;
    }
    await flush();
    check(`draining, step ${guard}`);
  }

  // (c) + (d): per key, exactly the pushed items that were not dropped completed, in push order.
  const dropped = new Set(droppedItems);
  assert.equal(dropped.size, droppedItems.length, 'an item was dropped twice');
  for (const k of keys) {
    assert.deepEqual(
      completed.get(k),
      pushed.get(k)!.filter((item) => !dropped.has(item)),
      `completion order of ${k}`,
    );
    assert.equal(sched.hasKey(k), false, `${k} is still held after draining`);
  }
  // (e)
  assert.equal(sched.size, 0);
  assert.equal(sched.running, 0);
  await sched.whenIdle();
}

describe('KeyedScheduler: properties', () => {
  test('model-based: invariants (a)-(e) over random pushes, outcomes, parks, pauses and time', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const tick = (ms: number): void => t.mock.timers.tick(ms);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 4 }).chain((keys) => fc.tuple(fc.constant(keys), fc.array(commandArb(keys, false), { minLength: 1, maxLength: 60, size: 'max' }))),
        async (concurrency, [keyCount, commands]) => {
          await checkScenario(tick, concurrency, keyCount, commands);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('model-based with drop and trimKey: removed items are whole waiting tails and never run', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const tick = (ms: number): void => t.mock.timers.tick(ms);
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3 }),
        fc.integer({ min: 1, max: 3 }).chain((keys) => fc.tuple(fc.constant(keys), fc.array(commandArb(keys, true), { minLength: 1, maxLength: 60, size: 'max' }))),
        async (concurrency, [keyCount, commands]) => {
          await checkScenario(tick, concurrency, keyCount, commands);
        },
      ),
      { numRuns: 200 },
    );
  });

  test('fc.scheduler: any interleaving of completions keeps per-key order, the bound and liveness', async () => {
    type Outcome = 'done' | 'retry' | 'park' | 'done-and-park';
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.integer({ min: 1, max: 3 }),
        fc.array(
          fc.record({
            key: fc.nat(3),
            later: fc.boolean(),
            outcomes: fc
              .tuple(fc.array(fc.constantFrom<Outcome>('retry', 'park'), { maxLength: 2 }), fc.constantFrom<Outcome>('done', 'done', 'done-and-park'))
              .map(([before, last]) => [...before, last]),
          }),
          { minLength: 1, maxLength: 30, size: 'max' },
        ),
        async (s, concurrency, pushes) => {
          const runningKeys = new Set<string>();
          const violations: string[] = [];
          const completed = new Map<string, string[]>();
          const expected = new Map<string, string[]>();
          const attempts = new Map<string, number>();
          let maxRunning = 0;

          const sched = new KeyedScheduler<string>({
            concurrency,
            run: (item, key) => {
              if (runningKeys.has(key)) violations.push(`two items of ${key} at once`);
              runningKeys.add(key);
              maxRunning = Math.max(maxRunning, runningKeys.size);
              const n = attempts.get(item) ?? 0;
              attempts.set(item, n + 1);
              const outcome = outcomesOf.get(item)![n];
              if (outcome === undefined) {
                violations.push(`${item} ran again after it was done`);
                runningKeys.delete(key);
                return Promise.resolve(DONE);
              }
              return s.schedule(Promise.resolve(outcome), `${item} -> ${outcome}`).then((o): RunOutcome => {
                runningKeys.delete(key);
                if (o === 'done' || o === 'done-and-park') {
                  const list = completed.get(key) ?? [];
                  list.push(item);
                  completed.set(key, list);
                }
                if (o === 'park' || o === 'done-and-park') unparkLater(key, 0);
                return o === 'retry' ? { kind: 'retry', at: 0 } : { kind: o };
              });
            },
          });

          // Unparks once the scheduler has actually parked the key (its outcome lands a few
          // microtasks after ours), at a moment fast-check chooses.
          const unparkLater = (key: string, tries: number): void => {
            void s.schedule(Promise.resolve(), `unpark ${key}`).then(() => {
              if (sched.isParked(key)) sched.unpark(key);
              else if (tries < 20) unparkLater(key, tries + 1);
              else violations.push(`${key} never got parked`);
            });
          };

          const outcomesOf = new Map<string, Outcome[]>();
          // Later pushes are released by fast-check in any order: the expected order of a key is
          // the order in which push() was actually called.
          const pushOrder = new Map<string, string[]>();
          const push = (key: string, item: string): void => {
            pushOrder.set(key, [...(pushOrder.get(key) ?? []), item]);
            sched.push(key, item);
          };
          pushes.forEach((p, i) => {
            const key = `k${p.key}`;
            const item = `${key}#${i}`;
            outcomesOf.set(item, p.outcomes);
            expected.set(key, [...(expected.get(key) ?? []), item]);
            if (p.later) void s.schedule(Promise.resolve(), `push ${item}`).then(() => push(key, item));
            else push(key, item);
          });

          for (let round = 0; round === 0 || s.count() > 0; round++) {
            assert.ok(round < 100, 'still scheduling work after 100 rounds');
            await s.waitIdle();
            await flush();
          }

          assert.deepEqual(violations, []);
          assert.ok(maxRunning <= concurrency, `max running ${maxRunning} > ${concurrency}`);
          for (const [key, items] of expected) {
            assert.deepEqual([...(pushOrder.get(key) ?? [])].sort(), [...items].sort(), `every item of ${key} was pushed`);
            assert.deepEqual(completed.get(key) ?? [], pushOrder.get(key), `completion order of ${key} (liveness and FIFO)`);
          }
          assert.equal(sched.size, 0);
          assert.equal(sched.running, 0);
          for (const key of expected.keys()) assert.equal(sched.hasKey(key), false);
        },
      ),
      { numRuns: 200 },
    );
  });
});
