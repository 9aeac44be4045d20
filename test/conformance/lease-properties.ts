/**
 * Property-based check of lease and settle interleavings at the broker port, against a model:
 * for any sequence of heartbeats, acquisitions, releases, clock jumps, publishes and
 * settlements by two members, a settlement is applied exactly when the settler still owns the
 * partition with the fence it was given (no zombie ack), fences only grow, and the pending set
 * always equals the model's (nothing lost, nothing settled twice).
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { BackendFactory } from './harness.js';

type Member = 'A' | 'B';
type Command =
  | { t: 'publish' }
  | { t: 'beat'; m: Member; acquire: boolean }
  | { t: 'release'; m: Member }
  | { t: 'advance'; steps: number }
  | { t: 'settle'; m: Member; pick: number; kind: 'ack' | 'retry'; fenceAge: number };

const member = fc.constantFrom<Member>('A', 'B');
const command: fc.Arbitrary<Command> = fc.oneof(
  { weight: 2, arbitrary: fc.constant({ t: 'publish' as const }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('beat' as const), m: member, acquire: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('release' as const), m: member }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('advance' as const), steps: fc.integer({ min: 0, max: 30 }) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('settle' as const), m: member, pick: fc.nat(), kind: fc.constantFrom<'ack' | 'retry'>('ack', 'retry'), fenceAge: fc.nat({ max: 2 }) }) },
);

/** The zombie case, always tried: A owns, loses the partition to B, takes it back, then settles with its first fence. */
const zombie: Command[] = [
  { t: 'publish' },
  { t: 'beat', m: 'A', acquire: true },
  { t: 'advance', steps: 30 },
  { t: 'beat', m: 'B', acquire: true },
  { t: 'advance', steps: 30 },
  { t: 'beat', m: 'A', acquire: true },
  { t: 'settle', m: 'A', pick: 0, kind: 'ack', fenceAge: 1 },
  { t: 'settle', m: 'B', pick: 0, kind: 'ack', fenceAge: 0 },
  { t: 'settle', m: 'A', pick: 0, kind: 'ack', fenceAge: 0 },
];

// Times move in steps of 7 ms and leases last 100 ms, so no check ever lands exactly on an
// expiry instant: the property does not depend on `<` versus `<=` at the boundary.
const STEP = 7;
const LEASE = 100;

export function describeLeaseProperties(factory: BackendFactory): void {
  describe('lease and settle interleavings (property-based)', () => {
    test('a settlement is applied exactly when its fence is current; nothing is lost or settled twice', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(command, { minLength: 1, maxLength: 60 }), async (commands) => {
          let now = 7 * 200_000_000_000;
          const broker = await factory.brokerWithClock(() => now);
          try {
            await broker.ensureTopic('lease', { partitions: 1, dedupWindowMs: 60_000 });
            await broker.ensureGroup('lease', 'g');
            const model = { owner: null as Member | null, fence: 0, leaseUntil: 0, members: new Map<Member, number>(), pending: new Set<number>() };
            // Every fence each member was given, newest last: a zombie settles with an old one.
            const given: Record<Member, number[]> = { A: [], B: [] };
            const published: number[] = [];
            let lastFence = 0;
            let counter = 0;
            for (const c of commands) {
              switch (c.t) {
                case 'publish': {
                  const [receipt] = await broker.publish('lease', [{ id: `m${counter++}`, key: 'k', partition: 0, payload: '1', headers: {}, notBefore: 0, dedup: true }]);
                  published.push(receipt!.seq);
                  model.pending.add(receipt!.seq);
                  break;
                }
                case 'advance':
                  now += c.steps * STEP;
                  break;
                case 'beat':
                case 'release': {
                  const result = await broker.coordinate({
                    topic: 'lease', group: 'g', member: c.m, leaseMs: LEASE,
                    acquire: c.t === 'beat' && c.acquire ? [0] : [], release: c.t === 'release' ? [0] : [],
                  });
                  model.members.set(c.m, now + LEASE);
                  for (const [m, until] of model.members) if (until < now) model.members.delete(m);
                  if (c.t === 'release' && model.owner === c.m) model.owner = null;
                  if (model.owner === c.m) model.leaseUntil = now + LEASE;
                  if (c.t === 'beat' && c.acquire && model.owner !== c.m && (model.owner === null || model.leaseUntil < now)) {
                    model.owner = c.m;
                    model.fence = result.owned.get(0) ?? -1;
                    assert.ok(model.fence > lastFence, `fence grows on a change of owner (${lastFence} -> ${model.fence})`);
                    lastFence = model.fence;
                    model.leaseUntil = now + LEASE;
                  }
                  assert.deepEqual([...result.owned.keys()], model.owner === c.m ? [0] : [], `owned partitions of ${c.m}`);
                  if (model.owner === c.m) {
                    assert.equal(result.owned.get(0), model.fence);
                    if (given[c.m].at(-1) !== model.fence) given[c.m].push(model.fence);
                  }
                  assert.deepEqual(result.members, [...model.members.keys()].sort());
                  break;
                }
                case 'settle': {
                  if (published.length === 0) break;
                  const seq = published[c.pick % published.length]!;
                  const fences = given[c.m];
                  const fence = fences[Math.max(0, fences.length - 1 - c.fenceAge)] ?? -1;
                  const lease = { topic: 'lease', group: 'g', partition: 0, member: c.m, fence };
                  const [outcome] = await broker.settle([
                    c.kind === 'ack'
                      ? { kind: 'ack', lease, seq }
                      : { kind: 'retry', lease, seq, attempts: 1, notBefore: 0, error: { message: 'x' }, failedAt: now },
                  ]);
                  const expected = model.owner !== c.m || model.fence !== fence ? 'fenced' : model.pending.has(seq) ? 'ok' : 'missing';
                  assert.equal(outcome, expected, `settle ${c.kind} of ${seq} by ${c.m} (fence ${fence}, owner ${model.owner}/${model.fence})`);
                  if (outcome === 'ok' && c.kind === 'ack') model.pending.delete(seq);
                  break;
                }
              }
            }
            // A backend that reads its log asynchronously (Kafka) hands out what it has read so
            // far, which may be the start of the pending messages: fetched until it has read them
            // all (the condition, not a time; the deadline only ends a failing run), and no fetch
            // may ever hand out a message that is not pending.
            const expected = [...model.pending].sort((a, b) => a - b);
            let left: number[] = [];
            for (const deadline = Date.now() + 10_000; ; await new Promise((resolve) => setTimeout(resolve, 5))) {
              left = (await broker.fetch('lease', 'g', 0, 0, 1_000)).map((d) => d.seq);
              assert.deepEqual(left, expected.slice(0, left.length), 'fetch hands out the start of the pending messages, in order');
              if (left.length === expected.length || Date.now() > deadline) break;
            }
            assert.deepEqual(left, expected, 'pending messages match the model');
          } finally {
            await broker.close();
          }
        }),
        { numRuns: 150, examples: [[zombie]] },
      );
    });
  });
}
