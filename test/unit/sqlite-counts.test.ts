/**
 * The SQLite count tables (backlog_counts, topic_counts, dead_letter_counts) are kept by the
 * code, summed per write transaction (src/brokers/sqlite/counts.ts). Property: after every
 * step of a random sequence of publishes (with and without producer ids, some repeated),
 * group creations (backfilling retained messages), acks, retries, dead letters (parked or
 * not), redrives, purges, group and topic deletions and clock jumps past the dedup window
 * (an expired id is stored again), each count equals the real count(*) of its rows, read from
 * the real file over a second connection. Some steps run several operations at once, so they
 * share one group-commit transaction (a deletion and a re-creation of the same group in one
 * transaction, say).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import type { Settlement } from '../../src/brokers/broker.js';
import type { PreparedMessage } from '../../src/core/envelope.js';
import { openSqlite, type SqliteBroker } from '../../src/brokers/sqlite/index.js';

const TOPICS = ['t0', 't1'];
const GROUPS = ['g0', 'g1'];
const PARTITIONS = 2;
const DEDUP_WINDOW_MS = 1_000;

type Step =
  | { kind: 'publish'; topic: string; messages: { partition: number; id: number | null }[] }
  | { kind: 'group'; topic: string; group: string }
  | { kind: 'handle'; topic: string; group: string; limit: number }
  | { kind: 'fail'; topic: string; group: string; how: 'retry' | 'dead' | 'park' }
  | { kind: 'redrive'; topic: string | undefined; group: string | undefined }
  | { kind: 'purge'; topic: string | undefined; group: string | undefined }
  | { kind: 'deleteGroup'; topic: string; group: string }
  | { kind: 'deleteTopic'; topic: string }
  | { kind: 'expire' };

const topicArb = fc.constantFrom(...TOPICS);
const groupArb = fc.constantFrom(...GROUPS);
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      topic: topicArb,
      messages: fc.array(fc.record({ partition: fc.integer({ min: 0, max: PARTITIONS - 1 }), id: fc.option(fc.integer({ min: 0, max: 6 })) }), {
        minLength: 1,
        maxLength: 6,
      }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('group' as const), topic: topicArb, group: groupArb }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('handle' as const), topic: topicArb, group: groupArb, limit: fc.integer({ min: 1, max: 5 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant('fail' as const), topic: topicArb, group: groupArb, how: fc.constantFrom('retry' as const, 'dead' as const, 'park' as const) }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('redrive' as const), topic: fc.option(topicArb, { nil: undefined }), group: fc.option(groupArb, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('purge' as const), topic: fc.option(topicArb, { nil: undefined }), group: fc.option(groupArb, { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteGroup' as const), topic: topicArb, group: groupArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deleteTopic' as const), topic: topicArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('expire' as const) }) },
);
/** One operation, or several issued together (one transaction). */
const roundArb = fc.oneof({ weight: 3, arbitrary: stepArb.map((s) => [s]) }, { weight: 1, arbitrary: fc.array(stepArb, { minLength: 2, maxLength: 4 }) });

class Run {
  clock = 1_000_000;
  private serial = 0;
  readonly broker: SqliteBroker;

  constructor(path: string) {
    this.broker = openSqlite(path, { now: () => this.clock });
  }

  /** What a step needs before it runs: its topic, for a publish or a group creation. */
  async prepare(step: Step): Promise<void> {
    if (step.kind !== 'publish' && step.kind !== 'group') return;
    if ((await this.broker.getTopic(step.topic)) === undefined) {
      await this.broker.ensureTopic(step.topic, { partitions: PARTITIONS, dedupWindowMs: DEDUP_WINDOW_MS });
    }
  }

  /**
   * Runs a prepared step. Its first write is queued synchronously, so the first writes of the
   * steps started in one turn share one transaction, in the order the steps were started.
   */
  async start(step: Step): Promise<void> {
    const b = this.broker;
    switch (step.kind) {
      case 'publish': {
        const messages: PreparedMessage[] = step.messages.map((m) => ({
          id: m.id === null ? `gen-${++this.serial}` : `id-${m.id}`,
          key: `k${m.partition}`,
          partition: m.partition,
          payload: '1',
          headers: {},
          notBefore: 0,
          dedup: m.id !== null,
        }));
        await b.publish(step.topic, messages);
        return;
      }
      case 'group':
        await b.ensureGroup(step.topic, step.group);
        return;
      case 'handle':
      case 'fail': {
        const member = `m-${++this.serial}`;
        const { owned } = await b.coordinate({ topic: step.topic, group: step.group, member, leaseMs: 60_000, acquire: [0, 1], release: [] });
        const settlements: Settlement[] = [];
        for (const [partition, fence] of owned) {
          const lease = { topic: step.topic, group: step.group, partition, member, fence };
          const deliveries = await b.fetch(step.topic, step.group, partition, 0, step.kind === 'handle' ? step.limit : 1);
          for (const d of deliveries) {
            if (step.kind === 'handle') settlements.push({ kind: 'ack', lease, seq: d.seq });
            else if (step.how === 'retry') {
              settlements.push({ kind: 'retry', lease, seq: d.seq, attempts: d.attempts + 1, notBefore: 0, error: { message: 'again' }, failedAt: this.clock });
            } else settlements.push({ kind: 'dead', lease, seq: d.seq, attempts: d.attempts + 1, error: { message: 'boom' }, failedAt: this.clock, park: step.how === 'park' });
          }
        }
        await b.settle(settlements);
        await b.coordinate({ topic: step.topic, group: step.group, member, leaseMs: 60_000, acquire: [], release: [...owned.keys()], leaving: true });
        return;
      }
      case 'redrive':
        await b.redriveDeadLetters({ topic: step.topic, group: step.group });
        return;
      case 'purge':
        await b.purgeDeadLetters({ topic: step.topic, group: step.group });
        return;
      case 'deleteGroup':
        await b.deleteGroup(step.topic, step.group);
        return;
      case 'deleteTopic':
        await b.deleteTopic(step.topic);
        return;
      case 'expire':
        this.clock += DEDUP_WINDOW_MS + 1;
        return;
    }
  }
}

/**
 * Operations of one round are queued in one turn of the event loop: one transaction. Run
 * together, one may find its topic deleted by another: a typed refusal is fine (it wrote
 * nothing, which the counts must show too); anything else fails the test.
 */
async function runRound(run: Run, round: Step[]): Promise<void> {
  for (const step of round) await run.prepare(step);
  for (const result of await Promise.allSettled(round.map((step) => run.start(step)))) {
    if (result.status === 'fulfilled') continue;
    const code = (result.reason as { code?: unknown }).code;
    if (code !== 'BOTQUEUE_TOPIC_NOT_FOUND' && code !== 'BOTQUEUE_GROUP_NOT_FOUND') throw result.reason;
  }
}

type CountRow = [key: string, n: number];

/** The count tables and the real counts, as sorted [key, n] lists without zeros. */
function readCounts(db: Database.Database): { kept: CountRow[]; real: CountRow[] } {
  const rows = (sql: string): CountRow[] => db.prepare<[], CountRow>(sql).raw().all();
  const read = db.transaction(() => ({
    kept: [
      ...rows("SELECT 'backlog ' || gid || '/' || partition, n FROM backlog_counts WHERE n != 0"),
      ...rows("SELECT 'retained ' || tid, n FROM topic_counts WHERE n != 0"),
      ...rows("SELECT 'dead ' || topic || '/' || grp, n FROM dead_letter_counts WHERE n != 0"),
    ],
    real: [
      ...rows("SELECT 'backlog ' || gid || '/' || partition, count(*) FROM pending GROUP BY gid, partition"),
      ...rows("SELECT 'retained ' || tid, count(*) FROM messages GROUP BY tid"),
      ...rows("SELECT 'dead ' || topic || '/' || grp, count(*) FROM dead_letters GROUP BY topic, grp"),
    ],
  }));
  const sort = (list: CountRow[]): CountRow[] => list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const { kept, real } = read();
  return { kept: sort(kept), real: sort(real) };
}

test('the SQLite count tables equal the real counts after every step of random sequences', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bq-counts-'));
  let file = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(roundArb, { minLength: 1, maxLength: 25 }), async (rounds) => {
        const path = join(dir, `${++file}.db`);
        const run = new Run(path);
        const reader = new Database(path, { readonly: true });
        try {
          for (const [i, round] of rounds.entries()) {
            await runRound(run, round);
            const { kept, real } = readCounts(reader);
            assert.deepEqual(kept, real, `after round ${i}: ${JSON.stringify(round)}`);
          }
        } finally {
          reader.close();
          await run.broker.close();
        }
      }),
      { numRuns: Number(process.env.BQ_COUNTS_RUNS ?? 60) },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the sequences reach every counted write path (the property is not vacuous)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bq-counts-'));
  const run = new Run(join(dir, 'fixed.db'));
  const reader = new Database(join(dir, 'fixed.db'), { readonly: true });
  try {
    const steps: Step[][] = [
      [{ kind: 'publish', topic: 't0', messages: [{ partition: 0, id: 1 }, { partition: 1, id: null }] }],
      [{ kind: 'group', topic: 't0', group: 'g0' }], // backfill
      [{ kind: 'publish', topic: 't0', messages: [{ partition: 0, id: 2 }, { partition: 0, id: 1 }] }], // one duplicate
      [{ kind: 'fail', topic: 't0', group: 'g0', how: 'park' }],
      [{ kind: 'fail', topic: 't0', group: 'g0', how: 'dead' }],
      [{ kind: 'redrive', topic: 't0', group: 'g0' }],
      [{ kind: 'fail', topic: 't0', group: 'g0', how: 'park' }],
      [{ kind: 'purge', topic: undefined, group: undefined }],
      [{ kind: 'expire' }],
      [{ kind: 'publish', topic: 't0', messages: [{ partition: 1, id: 1 }] }], // the expired id is stored again
      [{ kind: 'handle', topic: 't0', group: 'g0', limit: 1 }],
      // Deltas recorded, then the group deleted and created again (same id), in one transaction.
      [
        { kind: 'publish', topic: 't0', messages: [{ partition: 1, id: null }] },
        { kind: 'deleteGroup', topic: 't0', group: 'g0' },
        { kind: 'group', topic: 't0', group: 'g0' },
        { kind: 'publish', topic: 't0', messages: [{ partition: 0, id: null }] },
      ],
      [{ kind: 'fail', topic: 't0', group: 'g0', how: 'park' }],
      // Dead letters redriven (their counts go down), then their group deleted, in one transaction.
      [
        { kind: 'redrive', topic: 't0', group: 'g0' },
        { kind: 'deleteGroup', topic: 't0', group: 'g0' },
      ],
      // Messages recorded, then their topic deleted, in one transaction; then the topic again (same id).
      [
        { kind: 'group', topic: 't0', group: 'g1' },
        { kind: 'publish', topic: 't0', messages: [{ partition: 0, id: null }] },
        { kind: 'deleteTopic', topic: 't0' },
      ],
      [{ kind: 'publish', topic: 't0', messages: [{ partition: 0, id: null }] }],
    ];
    const seen: string[] = [];
    for (const round of steps) {
      await runRound(run, round);
      const { kept, real } = readCounts(reader);
      assert.deepEqual(kept, real, JSON.stringify(round));
      seen.push(real.map(([key, n]) => `${key}=${n}`).join(' '));
    }
    // Spot checks that the path did what its comment says (so the equality above was not 0 = 0).
    assert.match(seen[1]!, /backlog 1\/0=1 backlog 1\/1=1 retained 1=2/, 'backfill: both retained messages pending for g0');
    assert.match(seen[3]!, /dead t0\/g0=[12]/, 'parked dead letters');
    assert.match(seen[9]!, /retained 1=\d/, 'the expired id stored again');
    assert.equal(seen[11], 'backlog 1/0=1 retained 1=1', 'the group created again (same id) has only the message published after it');
    assert.match(seen[12]!, /dead t0\/g0=[12]/, 'dead letters of the group created again');
    assert.doesNotMatch(seen[13]!, /dead t0\/g0/, 'its dead letters went with the group');
    assert.equal(seen[15], 'retained 1=1', 'the topic created again holds only the new message');
  } finally {
    reader.close();
    await run.broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('an operation rolled back to its savepoint leaves nothing in the counts; the others of its transaction are counted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bq-counts-'));
  const path = join(dir, 'undo.db');
  const run = new Run(path);
  const reader = new Database(path, { readonly: true });
  try {
    const b = run.broker;
    await b.ensureTopic('t0', { partitions: PARTITIONS, dedupWindowMs: DEDUP_WINDOW_MS });
    await b.ensureGroup('t0', 'g0');
    const message = (id: string, payload: string): PreparedMessage => ({ id, key: 'k', partition: 0, payload, headers: {}, notBefore: 0, dedup: false });
    // Queued in one turn: one transaction, each publish in its own savepoint. The second one's
    // first message is stored (and counted) before its second fails the NOT NULL constraint.
    const good = b.publish('t0', [message('a', '1')]);
    const bad = b.publish('t0', [message('b', '1'), message('c', null as unknown as string)]);
    const after = b.publish('t0', [message('d', '1')]);
    await good;
    await assert.rejects(bad);
    await after;
    const { kept, real } = readCounts(reader);
    assert.deepEqual(kept, real);
    assert.deepEqual(real, [
      ['backlog 1/0', 2],
      ['retained 1', 2],
    ]);
  } finally {
    reader.close();
    await run.broker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
