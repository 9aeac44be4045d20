/**
 * The RabbitMQ backend's shared store on a real PostgreSQL (BOTQUEUE_STORE_URL, by default
 * postgres://postgres@127.0.0.1:5432/test). Every test gets a fresh schema, dropped after.
 * Without a reachable server the tests are skipped loudly, or fail under CI.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import pg from 'pg';
import { dropPostgresSchema, openPostgresStore, type PostgresStore } from '../../src/stores/postgres/index.js';
import type { HeldReport, NewDeadLetter } from '../../src/stores/store.js';
import type { CoordinateRequest } from '../../src/brokers/broker.js';
import { ErrorCodes, isBotqueueError, type ErrorCode } from '../../src/core/errors.js';
import { redactUrl } from '../../src/core/redact.js';

const url = process.env.BOTQUEUE_STORE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const unreachable = await probe();

async function probe(): Promise<string | undefined> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message || String(error) : String(error);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** A clock the test moves by hand. */
class Clock {
  t = 1_700_000_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

interface Env {
  clock: Clock;
  schema: string;
  /** Opens a store on the test's schema (several may be open at once); all are closed after. */
  open: (options?: { serverClock?: boolean; queryTimeoutMs?: number }) => Promise<PostgresStore>;
  /** Runs SQL on the test's schema directly, to look at rows the API does not show. */
  sql: (text: string, params?: unknown[]) => Promise<Record<string, unknown>[]>;
}

function pgTest(name: string, body: (env: Env) => Promise<void>): void {
  test(name, async (t) => {
    if (unreachable !== undefined) {
      const message = `PostgreSQL not reachable on ${redactUrl(url)}: ${unreachable}`;
      if (process.env.CI !== undefined && process.env.CI !== '') assert.fail(`${message} (CI is set, so this fails instead of skipping)`);
      console.warn(`\n!!! SKIPPED "${name}": ${message}. Start PostgreSQL or set BOTQUEUE_STORE_URL.\n`);
      t.skip(message);
      return;
    }
    const schema = `bq_test_${randomBytes(6).toString('hex')}`;
    const clock = new Clock();
    const stores: PostgresStore[] = [];
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    const env: Env = {
      clock,
      schema,
      open: async (options) => {
        const store = await openPostgresStore(url, { schema, ...(options?.serverClock === true ? {} : { now: clock.now }), ...(options?.queryTimeoutMs === undefined ? {} : { queryTimeoutMs: options.queryTimeoutMs }) });
        stores.push(store);
        return store;
      },
      sql: async (text, params = []) => (await client.query<Record<string, unknown>>(text.replaceAll('$schema', `"${schema}"`), params)).rows,
    };
    try {
      await body(env);
    } finally {
      await Promise.all(stores.map((s) => s.close()));
      await client.end();
      await dropPostgresSchema(url, schema);
    }
  });
}

const LEASE = 10_000;

function request(member: string, fields: Partial<CoordinateRequest> = {}): CoordinateRequest {
  return { topic: 't', group: 'g', member, leaseMs: LEASE, acquire: [], release: [], ...fields };
}

function owned(result: { owned: Map<number, number> }): Record<number, number> {
  return Object.fromEntries(result.owned);
}

async function rejects(promise: Promise<unknown>, code: ErrorCode, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(isBotqueueError(error, code), `expected ${code}, got ${String(error)}`);
    if (message !== undefined) assert.match(error.message, message);
    return true;
  });
}

function letter(fields: Partial<NewDeadLetter> = {}): NewDeadLetter {
  return {
    topic: 't',
    group: 'g',
    partition: 0,
    seq: 1,
    id: 'm1',
    key: 'k1',
    payload: '{"n":1}',
    headers: {},
    publishedAt: 1_000,
    attempts: 3,
    firstFailedAt: 2_000,
    lastFailedAt: 3_000,
    error: { message: 'boom' },
    parked: false,
    ...fields,
  };
}

// ---- Topics and groups ---------------------------------------------------------------------

pgTest('ensureTopic creates once, then checks the partition count; groups are created once', async ({ open, clock }) => {
  const store = await open();
  const info = await store.ensureTopic('t', { partitions: 4, dedupWindowMs: 60_000 });
  assert.deepEqual(info, { name: 't', partitions: 4, dedupWindowMs: 60_000, createdAt: clock.t });
  clock.advance(5);
  assert.deepEqual(await store.ensureTopic('t', { partitions: 4, dedupWindowMs: 60_000 }), info, 'the existing topic, created at its first time');
  await rejects(store.ensureTopic('t', { partitions: 8, dedupWindowMs: 60_000 }), ErrorCodes.TOPIC_MISMATCH, /4 partitions, not 8/);
  assert.deepEqual(await store.getTopic('t'), info);
  assert.equal(await store.getTopic('nope'), undefined);
  await store.ensureTopic('B', { partitions: 1, dedupWindowMs: 1 });
  assert.deepEqual(
    (await store.listTopics()).map((t) => t.name),
    ['B', 't'],
  );

  assert.deepEqual(await store.ensureGroup('t', 'g'), { created: true, backfillPending: true });
  assert.deepEqual(await store.ensureGroup('t', 'g'), { created: false, backfillPending: true });
  await store.ensureGroup('t', 'a');
  assert.deepEqual(await store.listGroups('t'), ['a', 'g']);
  await rejects(store.ensureGroup('nope', 'g'), ErrorCodes.TOPIC_NOT_FOUND, /topic "nope" does not exist/);
  await rejects(store.ensureTopic('z', { partitions: 0, dedupWindowMs: 1 }), ErrorCodes.INVALID_OPTION);
  await rejects(store.ensureTopic('z', { partitions: 1.5, dedupWindowMs: 1 }), ErrorCodes.INVALID_OPTION);
});

pgTest('concurrent ensureGroup calls: exactly one is told it created the group', async ({ open }) => {
  const [a, b] = await Promise.all([open(), open()]);
  await a.ensureTopic('t', { partitions: 3, dedupWindowMs: 1_000 });
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).ensureGroup('t', 'g')));
  assert.equal(results.filter((r) => r.created).length, 1);
  const [snapshot] = await a.groupSnapshots('t');
  assert.equal(snapshot?.leases.length, 3, 'one lease row per partition');
});

// ---- Coordinate ----------------------------------------------------------------------------

pgTest('coordinate: acquire, release, fences, expiry, leaving, sorted members', async ({ open, clock }) => {
  const store = await open();
  await store.ensureTopic('t', { partitions: 4, dedupWindowMs: 60_000 });

  // A member may coordinate before ensureGroup: the group is created then.
  let b = await store.coordinate(request('b-worker', { acquire: [0, 1] }), {});
  assert.deepEqual(owned(b), { 0: 1, 1: 1 });
  assert.deepEqual(b.members, ['b-worker']);
  assert.equal(b.partitions, 4);
  assert.equal(b.controlVersion, 0);
  assert.deepEqual(await store.ensureGroup('t', 'g'), { created: false, backfillPending: true }, 'a group made by coordinate still waits for its backfill');

  // 'B' sorts before 'a' by code unit, after it in most collations.
  let a = await store.coordinate(request('a-worker', { acquire: [0, 1, 2] }), {});
  assert.deepEqual(owned(a), { 2: 1 }, 'live leases of b are not taken');
  const upper = await store.coordinate(request('B-worker'), {});
  assert.deepEqual(upper.members, ['B-worker', 'a-worker', 'b-worker']);
  await store.coordinate(request('B-worker', { leaving: true }), {});

  // Releasing frees the partition; the next owner gets a new fence.
  b = await store.coordinate(request('b-worker', { release: [1] }), {});
  assert.deepEqual(owned(b), { 0: 1 });
  a = await store.coordinate(request('a-worker', { acquire: [1] }), {});
  assert.deepEqual(owned(a), { 1: 2, 2: 1 });

  // b stops heartbeating; its lease of 0 expires but is not revoked by time alone.
  clock.advance(LEASE / 2);
  await store.coordinate(request('a-worker'), {});
  clock.advance(LEASE / 2);
  a = await store.coordinate(request('a-worker'), {});
  assert.deepEqual(a.members, ['a-worker'], 'b expired');
  b = await store.coordinate(request('b-worker', { acquire: [0] }), {});
  assert.deepEqual(owned(b), { 0: 1 }, 'taking back an expired lease nobody took keeps its fence');
  assert.deepEqual(b.members, ['a-worker', 'b-worker']);

  // b expires again and a takes partition 0: the fence grows.
  clock.advance(LEASE / 2);
  await store.coordinate(request('a-worker'), {});
  clock.advance(LEASE / 2);
  a = await store.coordinate(request('a-worker', { acquire: [0] }), {});
  assert.deepEqual(owned(a), { 0: 2, 1: 2, 2: 1 });
  b = await store.coordinate(request('b-worker'), {});
  assert.deepEqual(owned(b), {}, 'b lost partition 0');

  // Leaving releases everything and removes the member.
  const gone = await store.coordinate(request('a-worker', { leaving: true, acquire: [3] }), {});
  assert.deepEqual(owned(gone), {});
  assert.deepEqual(gone.members, ['b-worker']);
  b = await store.coordinate(request('b-worker', { acquire: [0, 1, 2, 3] }), {});
  assert.deepEqual(owned(b), { 0: 3, 1: 3, 2: 2, 3: 1 });
  assert.deepEqual(b.members, ['b-worker']);
});

pgTest('coordinate: validation, unknown topic, order violations and the held report', async ({ open }) => {
  const store = await open();
  await rejects(store.coordinate(request('m'), {}), ErrorCodes.TOPIC_NOT_FOUND, /topic "t" does not exist/);
  await store.ensureTopic('t', { partitions: 2, dedupWindowMs: 1_000 });
  await rejects(store.coordinate(request('m', { acquire: [2] }), {}), ErrorCodes.INVALID_OPTION, /partition 2 is outside 0-1/);
  await rejects(store.coordinate(request('m', { release: [-1] }), {}), ErrorCodes.INVALID_OPTION);
  await rejects(store.coordinate(request('m', { leaseMs: 0 }), {}), ErrorCodes.INVALID_OPTION);
  await rejects(store.coordinate(request(''), {}), ErrorCodes.INVALID_OPTION);

  await store.coordinate(request('m', { acquire: [0, 1] }), {});
  await store.reportMember({ topic: 't', group: 'g', member: 'm', inFlight: {}, orderViolations: 2, deferrals: 0 });
  const held: Record<number, HeldReport> = { 1: { count: 3, oldestPublishedAt: 123 } };
  await store.coordinate(request('m'), held);
  await store.reportMember({ topic: 't', group: 'g', member: 'm', inFlight: { 0: 5 }, orderViolations: 1, deferrals: 4 });
  await store.reportMember({ topic: 't', group: 'g', member: 'other', inFlight: { 1: 9 }, orderViolations: 0, deferrals: 0 });
  const [g] = await store.groupSnapshots('t');
  assert.equal(g?.orderViolations, 3);
  assert.equal(g?.deferrals, 4);
  assert.deepEqual(g?.leases, [
    { partition: 0, owner: 'm', inFlight: 5, held: { count: 0, oldestPublishedAt: 0 } },
    { partition: 1, owner: 'm', inFlight: 0, held: { count: 3, oldestPublishedAt: 123 } },
  ]);
});

pgTest('20 members racing for the partitions never give one partition two owners', async ({ open, clock }) => {
  const stores = await Promise.all([open(), open()]);
  const partitions = 8;
  await stores[0].ensureTopic('t', { partitions, dedupWindowMs: 1_000 });
  const all = Array.from({ length: partitions }, (_, p) => p);
  const fences = new Map<number, number>();
  for (let round = 0; round < 4; round++) {
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => stores[i % 2]!.coordinate(request(`m${String(i).padStart(2, '0')}`, { acquire: all }), {})),
    );
    const owners = new Map<number, string>();
    results.forEach((result, i) => {
      for (const [partition, fence] of result.owned) {
        assert.equal(owners.get(partition), undefined, `round ${round}: partition ${partition} owned by ${owners.get(partition)} and m${i}`);
        owners.set(partition, `m${i}`);
        assert.ok(fence > (fences.get(partition) ?? 0) || round === 0 || fence === fences.get(partition), 'fences never go back');
        fences.set(partition, fence);
      }
    });
    assert.equal(owners.size, partitions, 'every partition has an owner');
    const [snapshot] = await stores[0].groupSnapshots('t');
    assert.equal(snapshot?.members, 20);
    // Every lease expires before the next round, so the race starts over.
    clock.advance(LEASE);
  }
});

// ---- Dedup ---------------------------------------------------------------------------------

pgTest('dedup: reserve, in-progress, confirm, duplicate, stale takeover, release, expiry', async ({ open, clock, sql }) => {
  const store = await open();
  const window = 60_000;
  const stale = 5_000;
  assert.deepEqual(await store.reserveIds('t', [], window, stale), []);
  assert.deepEqual(
    await store.reserveIds(
      't',
      [
        { id: 'a', partition: 0, seq: 1 },
        { id: 'b', partition: 1, seq: 1 },
      ],
      window,
      stale,
    ),
    [{ status: 'reserved' }, { status: 'reserved' }],
  );
  assert.deepEqual(await store.reserveIds('t', [{ id: 'a', partition: 2, seq: 9 }], window, stale), [{ status: 'in-progress' }]);
  assert.deepEqual(await store.reserveIds('other', [{ id: 'a', partition: 0, seq: 1 }], window, stale), [{ status: 'reserved' }], 'per topic');

  await store.confirmIds('t', [{ id: 'a', partition: 0, seq: 1 }], window);
  assert.deepEqual(
    await store.reserveIds(
      't',
      [
        { id: 'c', partition: 3, seq: 4 },
        { id: 'a', partition: 2, seq: 9 },
      ],
      window,
      stale,
    ),
    [{ status: 'reserved' }, { status: 'duplicate', partition: 0, seq: 1 }],
    'input order kept',
  );

  // b's publish never confirmed: after staleAfterMs another publisher takes it over.
  clock.advance(stale - 1);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'b', partition: 5, seq: 7 }], window, stale), [{ status: 'in-progress' }]);
  clock.advance(1);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'b', partition: 5, seq: 7 }], window, stale), [{ status: 'reserved' }]);
  // The first publisher's late confirm and release hold the old seq: they change nothing.
  await store.confirmIds('t', [{ id: 'b', partition: 1, seq: 1 }], window);
  await store.releaseIds('t', [{ id: 'b', partition: 1, seq: 1 }]);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'b', partition: 0, seq: 0 }], window, stale), [{ status: 'in-progress' }]);
  // The new publisher's publish failed: it releases, and the id is free again.
  await store.releaseIds('t', [{ id: 'b', partition: 5, seq: 7 }]);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'b', partition: 6, seq: 8 }], window, stale), [{ status: 'reserved' }]);
  // Release never drops a confirmed record.
  await store.releaseIds('t', [{ id: 'a', partition: 0, seq: 1 }]);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'a', partition: 0, seq: 2 }], window, stale), [{ status: 'duplicate', partition: 0, seq: 1 }]);

  // The window ends: the id is new again, and housekeeping deletes what expired.
  clock.advance(window);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'a', partition: 4, seq: 5 }], window, stale), [{ status: 'reserved' }]);
  const before = await sql('SELECT count(*)::int AS n FROM $schema.dedup');
  await store.housekeeping();
  const after = await sql('SELECT id FROM $schema.dedup ORDER BY topic, id');
  assert.ok(Number(before[0]?.n) > after.length);
  assert.deepEqual(
    after.map((r) => r.id),
    ['a'],
    'only the row reserved at the current time survives',
  );
});

pgTest('20 concurrent reservations of one id: exactly one wins; after its confirm all see a duplicate', async ({ open }) => {
  const stores = await Promise.all([open(), open()]);
  const entry = (i: number) => [{ id: 'same', partition: i % 4, seq: 100 + i }];
  const outcomes = (await Promise.all(Array.from({ length: 20 }, (_, i) => stores[i % 2]!.reserveIds('t', entry(i), 60_000, 5_000)))).map((o) => o[0]!);
  const winners = outcomes.flatMap((o, i) => (o.status === 'reserved' ? [i] : []));
  assert.equal(winners.length, 1, JSON.stringify(outcomes));
  assert.equal(outcomes.filter((o) => o.status === 'in-progress').length, 19);

  const winner = winners[0]!;
  await stores[0].confirmIds('t', entry(winner), 60_000);
  const again = await Promise.all(Array.from({ length: 20 }, (_, i) => stores[i % 2]!.reserveIds('t', entry(i), 60_000, 5_000)));
  for (const [o] of again) assert.deepEqual(o, { status: 'duplicate', partition: winner % 4, seq: 100 + winner });
});

pgTest('concurrent overlapping batches in opposite orders all complete', async ({ open }) => {
  const stores = await Promise.all([open(), open()]);
  const ids = Array.from({ length: 30 }, (_, i) => `id${i}`);
  const batches = Array.from({ length: 10 }, (_, i) => {
    const order = i % 2 === 0 ? ids : [...ids].reverse();
    return stores[i % 2]!.reserveIds(
      't',
      order.map((id, n) => ({ id, partition: 0, seq: i * 100 + n })),
      60_000,
      5_000,
    );
  });
  const results = await Promise.all(batches);
  const reserved = results.flat().filter((o) => o.status === 'reserved').length;
  assert.equal(reserved, ids.length, 'each id reserved by exactly one batch');
});

pgTest('ids with quotes, commas, braces, backslashes and emoji survive the array parameters', async ({ open }) => {
  const store = await open();
  const ids = ['a,b', '{c}', '"d"', 'e\\f', 'NULL', '', ' sp ', 'é🎉'];
  const entries = ids.map((id, i) => ({ id, partition: 0, seq: i }));
  assert.deepEqual(
    await store.reserveIds('t', entries, 60_000, 5_000),
    ids.map(() => ({ status: 'reserved' })),
  );
  await store.confirmIds('t', entries, 60_000);
  assert.deepEqual(
    await store.reserveIds('t', entries, 60_000, 5_000),
    entries.map((e) => ({ status: 'duplicate', partition: 0, seq: e.seq })),
  );
  await store.recordFailures(
    't',
    'g',
    ids.map((id) => ({ id, attempts: 1, failedAt: 1, notBefore: 2 })),
    60_000,
  );
  assert.deepEqual([...(await store.getMessageStates('t', 'g', ids)).keys()].sort(), [...ids].sort());
  await store.clearMessageStates('t', 'g', ids);
  assert.equal((await store.getMessageStates('t', 'g', ids)).size, 0);
});

// ---- Effects and message states ------------------------------------------------------------

pgTest('effects: absent, stored (null too), per group, replaced, expired', async ({ open, clock }) => {
  const store = await open();
  assert.equal(await store.getEffect('t', 'g', 'm1', 'send'), undefined);
  await store.putEffect('t', 'g', 'm1', 'send', '{"ok":true}', 1_000);
  await store.putEffect('t', 'g', 'm1', 'log', null, 1_000);
  assert.equal(await store.getEffect('t', 'g', 'm1', 'send'), '{"ok":true}');
  assert.equal(await store.getEffect('t', 'g', 'm1', 'log'), null);
  assert.equal(await store.getEffect('t', 'other', 'm1', 'send'), undefined);
  await store.putEffect('t', 'g', 'm1', 'send', '2', 5_000);
  assert.equal(await store.getEffect('t', 'g', 'm1', 'send'), '2');
  clock.advance(1_000);
  assert.equal(await store.getEffect('t', 'g', 'm1', 'log'), undefined, 'expired');
  assert.equal(await store.getEffect('t', 'g', 'm1', 'send'), '2', 'its window was renewed');
});

pgTest('message states: failures recorded with the first failure kept, cleared, expired', async ({ open, clock, sql }) => {
  const store = await open();
  assert.equal((await store.getMessageStates('t', 'g', [])).size, 0);
  await store.recordFailures(
    't',
    'g',
    [
      { id: 'm1', attempts: 1, failedAt: 100, notBefore: 200 },
      { id: 'm2', attempts: 1, failedAt: 150, notBefore: 250 },
    ],
    10_000,
  );
  await store.recordFailures('t', 'g', [{ id: 'm1', attempts: 2, failedAt: 300, notBefore: 400 }], 10_000);
  const states = await store.getMessageStates('t', 'g', ['m1', 'm2', 'm3']);
  assert.deepEqual([...states.keys()].sort(), ['m1', 'm2']);
  assert.deepEqual(states.get('m1'), { id: 'm1', attempts: 2, firstFailedAt: 100, notBefore: 400, parked: false, skip: false });
  assert.equal((await store.getMessageStates('t', 'other', ['m1'])).size, 0);

  await store.clearMessageStates('t', 'g', ['m2']);
  assert.deepEqual([...(await store.getMessageStates('t', 'g', ['m1', 'm2'])).keys()], ['m1']);
  clock.advance(10_000);
  assert.equal((await store.getMessageStates('t', 'g', ['m1'])).size, 0, 'expired');
  await store.housekeeping();
  assert.deepEqual(await sql('SELECT id FROM $schema.message_states'), []);
});

// ---- Dead letters --------------------------------------------------------------------------

pgTest('dead letters: add, list, filter, page, match', async ({ open }) => {
  const store = await open();
  const ids = await store.addDeadLetters([
    letter({ id: 'm1', key: 'k1', error: { message: 'Rate limit 100% reached', code: 'E429', name: 'HttpError', stack: 'at x' } }),
    letter({ id: 'm2', key: null, group: 'h', error: { message: 'Timeout after 5s' }, headers: { trace: 'abc' } }),
    letter({ id: 'm3', key: 'k2', error: { message: 'rate limit 1000 reached' }, seq: 2 ** 40 }),
    letter({ id: 'm4', key: 'k1', topic: 'u', error: { message: 'under_score' } }),
  ]);
  assert.equal(ids.length, 4);
  assert.deepEqual(
    [...ids].sort((a, b) => a - b),
    ids,
    'ids in input order',
  );

  const all = await store.listDeadLetters({});
  assert.deepEqual(
    all.map((d) => d.id),
    ['m1', 'm2', 'm3', 'm4'],
  );
  assert.deepEqual(all[0], {
    dlqId: ids[0],
    topic: 't',
    group: 'g',
    partition: 0,
    seq: 1,
    id: 'm1',
    key: 'k1',
    payload: '{"n":1}',
    headers: {},
    publishedAt: 1_000,
    attempts: 3,
    firstFailedAt: 2_000,
    lastFailedAt: 3_000,
    error: { message: 'Rate limit 100% reached', code: 'E429', name: 'HttpError', stack: 'at x' },
    parked: false,
  });
  assert.deepEqual(all[1]?.headers, { trace: 'abc' });
  assert.equal(all[1]?.key, null);
  assert.equal(all[2]?.seq, 2 ** 40, 'a BIGINT comes back as a number');

  const idsOf = async (filter: Parameters<PostgresStore['listDeadLetters']>[0]) => (await store.listDeadLetters(filter)).map((d) => d.id);
  assert.deepEqual(await idsOf({ topic: 't' }), ['m1', 'm2', 'm3']);
  assert.deepEqual(await idsOf({ topic: 't', group: 'g' }), ['m1', 'm3']);
  assert.deepEqual(await idsOf({ key: 'k1' }), ['m1', 'm4']);
  assert.deepEqual(await idsOf({ dlqIds: [ids[1]!, ids[3]!] }), ['m2', 'm4']);
  assert.deepEqual(await idsOf({ dlqIds: [] }), []);
  // errorContains is a plain, case-insensitive substring: % and _ are no wildcards.
  assert.deepEqual(await idsOf({ errorContains: 'RATE LIMIT' }), ['m1', 'm3']);
  assert.deepEqual(await idsOf({ errorContains: '100%' }), ['m1']);
  assert.deepEqual(await idsOf({ errorContains: '%' }), ['m1']);
  assert.deepEqual(await idsOf({ errorContains: 'under_' }), ['m4']);
  assert.deepEqual(await idsOf({ errorContains: 'rate_limit' }), [], 'LIKE would match the space');
  assert.deepEqual(await idsOf({ errorContains: 'timeout', group: 'h' }), ['m2']);

  // Paging.
  assert.deepEqual(await idsOf({ limit: 2 }), ['m1', 'm2']);
  assert.deepEqual(await idsOf({ limit: 2, afterDlqId: ids[1]! }), ['m3', 'm4']);
  assert.deepEqual(await idsOf({ limit: 0 }), []);

  assert.deepEqual(await store.matchDeadLetterIds({ key: 'k1' }, 0, 10), [ids[0], ids[3]]);
  assert.deepEqual(await store.matchDeadLetterIds({ key: 'k1' }, ids[0]!, 10), [ids[3]]);
  assert.deepEqual(await store.matchDeadLetterIds({}, 0, 1), [ids[0]]);
});

pgTest('dead letters: a parked one parks its message; redrive and purge unpark or skip it and bump the control version', async ({ open }) => {
  const store = await open();
  await store.ensureTopic('t', { partitions: 2, dedupWindowMs: 60_000 });
  await store.recordFailures('t', 'g', [{ id: 'p1', attempts: 2, failedAt: 500, notBefore: 900 }], 60_000);
  const [p1, p2, plain] = await store.addDeadLetters([
    letter({ id: 'p1', parked: true, attempts: 3, firstFailedAt: 700 }),
    letter({ id: 'p2', parked: true, key: 'k2' }),
    letter({ id: 'plain' }),
  ]);
  const parked = await store.getMessageStates('t', 'g', ['p1', 'p2', 'plain']);
  assert.deepEqual(parked.get('p1'), { id: 'p1', attempts: 3, firstFailedAt: 500, notBefore: 0, parked: true, skip: false });
  assert.equal(parked.get('p2')?.parked, true);
  assert.equal(parked.has('plain'), false, 'a dead letter that is not parked leaves no state');
  const version = async () => (await store.coordinate(request('w'), {})).controlVersion;
  assert.equal(await version(), 0);

  // A non-parked dead letter: removed, nothing else changes.
  const removedPlain = await store.removeDeadLetters([plain!], 'redrive');
  assert.deepEqual(
    removedPlain.map((d) => d.id),
    ['plain'],
  );
  assert.equal(await version(), 0);

  const redriven = await store.removeDeadLetters([p1!, 999_999], 'redrive');
  assert.deepEqual(
    redriven.map((d) => [d.dlqId, d.parked]),
    [[p1, true]],
  );
  assert.equal(await version(), 1);
  assert.deepEqual((await store.getMessageStates('t', 'g', ['p1'])).get('p1'), {
    id: 'p1',
    attempts: 0,
    firstFailedAt: null,
    notBefore: 0,
    parked: false,
    skip: false,
  });

  const purged = await store.removeDeadLetters([p2!], 'purge');
  assert.equal(purged.length, 1);
  assert.equal(await version(), 2);
  assert.deepEqual((await store.getMessageStates('t', 'g', ['p2'])).get('p2')?.skip, true);
  assert.deepEqual((await store.getMessageStates('t', 'g', ['p2'])).get('p2')?.parked, false);

  // Already taken: nothing returned, no bump.
  assert.deepEqual(await store.removeDeadLetters([p1!, p2!], 'purge'), []);
  assert.equal(await version(), 2);
  assert.deepEqual(await store.listDeadLetters({}), []);
});

pgTest('concurrent removes of the same dead letters return each one once', async ({ open }) => {
  const [a, b] = await Promise.all([open(), open()]);
  await a.ensureTopic('t', { partitions: 1, dedupWindowMs: 60_000 });
  await a.ensureGroup('t', 'g');
  const ids = await a.addDeadLetters(Array.from({ length: 20 }, (_, i) => letter({ id: `m${i}`, key: `k${i % 3}`, parked: true })));
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) => (i % 2 === 0 ? a : b).removeDeadLetters(ids, i % 3 === 0 ? 'purge' : 'redrive')));
  const returned = results.flat().map((d) => d.dlqId);
  assert.deepEqual(
    returned.sort((x, y) => x - y),
    ids,
  );
  assert.equal(results.filter((r) => r.length > 0).length, 1, 'one call took them all');
  assert.equal((await a.coordinate(request('w'), {})).controlVersion, 1);
});

// ---- Snapshots -----------------------------------------------------------------------------

pgTest('groupSnapshots: members, live leases, dead letters and parked keys per group, sorted', async ({ open, clock }) => {
  const store = await open();
  assert.deepEqual(await store.groupSnapshots('t'), []);
  await store.ensureTopic('t', { partitions: 3, dedupWindowMs: 60_000 });
  await store.ensureGroup('t', 'b');
  await store.ensureGroup('t', 'B');
  await store.coordinate(request('m1', { group: 'b', acquire: [0] }), { 0: { count: 4, oldestPublishedAt: 50 } });
  await store.reportMember({ topic: 't', group: 'b', member: 'm1', inFlight: { 0: 2 }, orderViolations: 0, deferrals: 0 });
  clock.advance(LEASE / 2);
  await store.coordinate(request('m2', { group: 'b', acquire: [1] }), {});
  await store.reportMember({ topic: 't', group: 'b', member: 'm2', inFlight: { 1: 1 }, orderViolations: 0, deferrals: 0 });
  await store.addDeadLetters([
    letter({ group: 'b', id: 'x1', key: 'k', parked: true }),
    letter({ group: 'b', id: 'x2', key: 'k', parked: true }),
    letter({ group: 'b', id: 'x3', key: null, parked: true }),
    letter({ group: 'b', id: 'x4', key: null, parked: true }),
    letter({ group: 'b', id: 'x5', key: 'other', parked: false }),
    letter({ group: 'B', id: 'y1', key: 'k' }),
    letter({ topic: 'u', group: 'b', id: 'z1', key: 'k', parked: true }),
  ]);

  let snapshots = await store.groupSnapshots('t');
  assert.deepEqual(
    snapshots.map((s) => s.group),
    ['B', 'b'],
  );
  const [upper, lower] = snapshots;
  assert.deepEqual(upper, {
    group: 'B',
    controlVersion: 0,
    orderViolations: 0,
    deferrals: 0,
    members: 0,
    leases: [0, 1, 2].map((partition) => ({ partition, owner: null, inFlight: 0, held: { count: 0, oldestPublishedAt: 0 } })),
    deadLetters: 1,
    parkedKeys: 0,
    lastSeenAt: null,
    now: upper!.now,
  });
  assert.equal(lower?.members, 2);
  assert.equal(typeof lower?.lastSeenAt, 'number', 'its members sent heartbeats');
  assert.equal(lower?.deadLetters, 5);
  assert.equal(lower?.parkedKeys, 3, 'key k once, and each keyless parked letter on its own');
  assert.deepEqual(lower?.leases, [
    { partition: 0, owner: 'm1', inFlight: 2, held: { count: 4, oldestPublishedAt: 50 } },
    { partition: 1, owner: 'm2', inFlight: 1, held: { count: 0, oldestPublishedAt: 0 } },
    { partition: 2, owner: null, inFlight: 0, held: { count: 0, oldestPublishedAt: 0 } },
  ]);

  // m1 stops heartbeating: its lease shows no owner, and it no longer counts as a member.
  clock.advance(LEASE / 2);
  snapshots = await store.groupSnapshots('t');
  assert.equal(snapshots[1]?.members, 1);
  assert.deepEqual(snapshots[1]?.leases[0], { partition: 0, owner: null, inFlight: 0, held: { count: 0, oldestPublishedAt: 0 } });
  assert.equal(snapshots[1]?.leases[1]?.owner, 'm2');
});

// ---- Opening, clock, errors ----------------------------------------------------------------

pgTest('several stores opening the same new schema at once all work', async ({ open }) => {
  const stores = await Promise.all(Array.from({ length: 5 }, () => open()));
  await stores[0]!.ensureTopic('t', { partitions: 2, dedupWindowMs: 1_000 });
  for (const store of stores) assert.equal((await store.getTopic('t'))?.partitions, 2);
  const reopened = await open();
  assert.deepEqual(await reopened.listGroups('t'), []);
});

pgTest('without an injected clock the server clock is used', async ({ open }) => {
  const store = await open({ serverClock: true });
  const before = Date.now();
  const now = await store.now();
  assert.ok(Math.abs(now - before) < 60_000, `server clock ${now} far from local ${before}`);
  await store.ensureTopic('t', { partitions: 1, dedupWindowMs: 60_000 });
  const result = await store.coordinate(request('m', { acquire: [0] }), {});
  assert.deepEqual(owned(result), { 0: 1 });
  assert.deepEqual(await store.reserveIds('t', [{ id: 'a', partition: 0, seq: 1 }], 60_000, 5_000), [{ status: 'reserved' }]);
  await store.confirmIds('t', [{ id: 'a', partition: 0, seq: 1 }], 60_000);
  assert.deepEqual(await store.reserveIds('t', [{ id: 'a', partition: 0, seq: 2 }], 60_000, 5_000), [{ status: 'duplicate', partition: 0, seq: 1 }]);
  await store.putEffect('t', 'g', 'm', 'e', 'r', 60_000);
  assert.equal(await store.getEffect('t', 'g', 'm', 'e'), 'r');
  const [snapshot] = await store.groupSnapshots('t');
  assert.equal(snapshot?.leases[0]?.owner, 'm');
  await store.housekeeping();
  assert.equal(await store.getEffect('t', 'g', 'm', 'e'), 'r', 'live rows survive housekeeping');
});

pgTest('withLock: holders in two stores on one schema never overlap; another name does not wait', async ({ open }) => {
  const a = await open();
  const b = await open();
  const log: string[] = [];
  const hold = (store: typeof a, who: string) =>
    store.withLock('unclaimed:t', async () => {
      log.push(`${who} in`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      log.push(`${who} out`);
    });
  let other = false;
  await Promise.all([hold(a, 'a'), hold(b, 'b'), b.withLock('unclaimed:u', () => Promise.resolve((other = true)))]);
  assert.ok(other);
  assert.ok(
    (log[0] === 'a in' && log[1] === 'a out') || (log[0] === 'b in' && log[1] === 'b out'),
    `one holder at a time: ${log.join(', ')}`,
  );
  await assert.rejects(a.withLock('x', () => Promise.reject(new Error('boom'))), /boom/);
  assert.equal(await a.withLock('x', () => Promise.resolve(7)), 7, 'the lock was released after a failure');
});

pgTest('withLock waits for a holder that works longer than the statement timeout, instead of failing', async ({ open }) => {
  // Statements end within 300 ms here: one statement waiting for the lock would fail after it.
  const a = await open({ queryTimeoutMs: 300 });
  const b = await open({ queryTimeoutMs: 300 });
  const log: string[] = [];
  const holding = a.withLock('unclaimed:t', async () => {
    log.push('a in');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    log.push('a out');
  });
  await new Promise((resolve) => setTimeout(resolve, 50));
  const waiting = b.withLock('unclaimed:t', () => Promise.resolve(log.push('b in')));
  await Promise.all([holding, waiting]);
  assert.deepEqual(log, ['a in', 'a out', 'b in']);
});

pgTest('tryWithLock runs only when the lock is free, and frees it after', async ({ open }) => {
  const a = await open();
  const b = await open();
  let release!: () => void;
  const holding = a.withLock('unclaimed:t', () => new Promise<void>((resolve) => (release = resolve)));
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(await b.tryWithLock('unclaimed:t', () => Promise.resolve(1)), { ran: false });
  release();
  await holding;
  assert.deepEqual(await b.tryWithLock('unclaimed:t', () => Promise.resolve(2)), { ran: true, value: 2 });
  assert.deepEqual(await a.tryWithLock('unclaimed:t', () => Promise.resolve(3)), { ran: true, value: 3 }, 'released after the work');
});

pgTest('backfill: a new group is pending until finished; copied ids are recorded once and forgotten at the end', async ({ open }) => {
  const store = await open();
  await store.ensureTopic('t', { partitions: 2, dedupWindowMs: 60_000 });
  assert.equal((await store.ensureGroup('t', 'g')).backfillPending, true);
  assert.equal(await store.backfillPending('t', 'g'), true);
  await store.beginCopyBatch('t', 'g', 'batch-1', true);
  await store.recordCopied('t', 'g', ['a', 'b'], 'batch-1');
  await store.beginCopyBatch('t', 'g', 'batch-2', true);
  assert.equal(await store.unrecordedBatches('t', 'g'), 1, 'begun, not recorded');
  assert.deepEqual([...(await store.cleanBatches('t', 'g', ['batch-1', 'batch-2']))], ['batch-1'], 'only recorded batches are clean');
  await store.beginCopyBatch('t', 'g', 'batch-3', false);
  await store.recordCopied('t', 'g', ['b', 'c'], 'batch-3');
  assert.deepEqual([...(await store.copiedIds('t', 'g', ['a', 'c', 'd']))].sort(), ['a', 'c']);
  assert.deepEqual([...(await store.cleanBatches('t', 'g', ['batch-1', 'batch-2', 'batch-3']))], ['batch-1'], 'a batch made after a death is not clean');
  assert.deepEqual([...(await store.copiedIds('t', 'other', ['a']))], [], 'per group');
  await store.finishBackfill('t', 'g');
  assert.equal(await store.backfillPending('t', 'g'), false);
  assert.deepEqual(await store.ensureGroup('t', 'g'), { created: false, backfillPending: false });
  assert.deepEqual([...(await store.copiedIds('t', 'g', ['a', 'b', 'c']))], []);
});

pgTest('backfill claims: the first copy of an id to claim it wins, its redelivery still passes, a twin from another batch does not', async ({ open }) => {
  const store = await open();
  await store.ensureTopic('t', { partitions: 2, dedupWindowMs: 60_000 });
  await store.ensureGroup('t', 'g');
  assert.deepEqual([...(await store.claimCopies('t', 'g', [{ id: 'a', batch: 'x' }, { id: 'b', batch: 'x' }]))], []);
  assert.deepEqual([...(await store.claimCopies('t', 'g', [{ id: 'a', batch: 'x' }]))], [], 'the same copy delivered again');
  assert.deepEqual([...(await store.claimCopies('t', 'g', [{ id: 'a', batch: 'y' }, { id: 'c', batch: 'y' }]))], ['a'], 'the twin of a is refused, c is new');
  assert.deepEqual([...(await store.claimCopies('t', 'other', [{ id: 'a', batch: 'y' }]))], [], 'per group');
  // Claims outlive the backfill: twins may still wait in the queues.
  await store.finishBackfill('t', 'g');
  assert.deepEqual([...(await store.claimCopies('t', 'g', [{ id: 'a', batch: 'z' }]))], ['a']);
});

pgTest('reportHeld writes the held counts of the leases the member owns, and of no other', async ({ open }) => {
  const store = await open();
  await store.ensureTopic('t', { partitions: 2, dedupWindowMs: 60_000 });
  await store.ensureGroup('t', 'g');
  await store.coordinate(request('m', { acquire: [0] }), {});
  await store.reportHeld('t', 'g', 'm', { 0: { count: 7, oldestPublishedAt: 1234 }, 1: { count: 9, oldestPublishedAt: 99 } });
  const [snapshot] = await store.groupSnapshots('t');
  assert.deepEqual(snapshot?.leases[0]?.held, { count: 7, oldestPublishedAt: 1234 });
  assert.deepEqual(snapshot?.leases[1]?.held, { count: 0, oldestPublishedAt: 0 }, 'partition 1 is not m\'s');
});

pgTest('a closed store refuses calls; close is idempotent', async ({ open }) => {
  const store = await open();
  await store.close();
  await store.close();
  await rejects(store.getTopic('t'), ErrorCodes.CLOSED);
  await rejects(store.coordinate(request('m'), {}), ErrorCodes.CLOSED);
});

test('an invalid schema name is refused before connecting', async () => {
  await rejects(openPostgresStore(url, { schema: 'Bad-Name' }), ErrorCodes.INVALID_OPTION, /schema/);
  await rejects(openPostgresStore(url, { schema: 'x"; DROP' }), ErrorCodes.INVALID_OPTION);
  await rejects(dropPostgresSchema(url, 'public; --'), ErrorCodes.INVALID_OPTION);
});

test('an unreachable server is BROKER_UNAVAILABLE, retriable, and says so', async () => {
  await rejects(openPostgresStore('postgres://postgres:secret@127.0.0.1:1/test', { schema: 'bq_never' }), ErrorCodes.BROKER_UNAVAILABLE, /is PostgreSQL running\?/);
  await assert.rejects(openPostgresStore('postgres://postgres:secret@127.0.0.1:1/test', { schema: 'bq_never' }), (error: unknown) => {
    assert.ok(isBotqueueError(error));
    assert.equal(error.retriable, true);
    assert.doesNotMatch(error.message, /secret/, 'the password stays out of the message');
    return true;
  });
});
