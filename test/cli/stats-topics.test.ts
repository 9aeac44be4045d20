import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { workspace } from './helpers.js';

const ws = workspace('stats');
after(() => ws.cleanup());

describe('botqueue topics', () => {
  test('create makes a topic with its partitions and dedup window; again it changes nothing', async () => {
    const created = (await ws.json(['topics', 'create', 'orders', '--partitions', '4', '--dedup-window-ms', '60000', '--json'])) as {
      created: boolean;
      topic: Record<string, unknown>;
    };
    assert.equal(created.created, true);
    assert.deepEqual({ ...created.topic, createdAt: 0 }, { name: 'orders', partitions: 4, dedupWindowMs: 60_000, createdAt: 0 });
    assert.equal(typeof created.topic.createdAt, 'number');

    const again = await ws.run(['topics', 'create', 'orders', '--partitions', '4']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, 'topic orders already exists: 4 partitions, dedup window 1m; nothing changed\n');

    const other = await ws.run(['topics', 'create', 'orders', '--partitions', '8']);
    assert.equal(other.code, 1);
    assert.equal(other.errorLines.length, 1);
    assert.match(other.errorLines[0]!, /^botqueue: .*4 partitions.*\(BOTQUEUE_TOPIC_MISMATCH\) — /);
  });

  test('list shows every topic with partitions, retained messages and groups', async () => {
    const bq = await ws.client();
    try {
      await bq.broker.ensureGroup('orders', 'billing');
      await bq.publishBatch('other', [{ key: 'a', payload: 1 }]);
    } finally {
      await bq.close();
    }
    const doc = (await ws.json(['topics', 'list', '--json'])) as { topics: Record<string, unknown>[] };
    assert.deepEqual(
      doc.topics.map((t) => ({ ...t, createdAt: typeof t.createdAt })),
      [
        { name: 'orders', partitions: 4, dedupWindowMs: 60_000, createdAt: 'number', retained: 0, groups: ['billing'] },
        { name: 'other', partitions: 16, dedupWindowMs: 86_400_000, createdAt: 'number', retained: 1, groups: [] },
      ],
    );
    const table = await ws.run(['topics', 'list']);
    assert.equal(table.code, 0, table.stderr);
    assert.deepEqual(
      table.stdout.trimEnd().split('\n').map((line) => line.split(/\s{2,}/)),
      [
        ['TOPIC', 'PARTITIONS', 'DEDUP WINDOW', 'RETAINED', 'GROUPS'],
        ['orders', '4', '1m', '0', 'billing'],
        ['other', '16', '1d', '1', '(none)'],
      ],
    );
  });
});

describe('botqueue stats', () => {
  test('--json prints the stats of every topic, group and partition', async () => {
    const published = await ws.run(['publish', 'orders', '--key', 'chat:1', '--payload', '1']);
    assert.equal(published.code, 0, published.stderr);
    await ws.run(['publish', 'orders', '--key', 'chat:1', '--payload', '2']);
    await ws.run(['publish', 'orders', '--key', 'chat:2', '--payload', '3']);
    const doc = (await ws.json(['stats', 'orders', '--json'])) as { topics: Record<string, unknown>[] };
    assert.deepEqual(Object.keys(doc), ['topics']);
    assert.equal(doc.topics.length, 1);
    const topic = doc.topics[0]!;
    assert.deepEqual(Object.keys(topic), ['topic', 'partitions', 'retained', 'groups']);
    assert.deepEqual([topic.topic, topic.partitions, topic.retained], ['orders', 4, 3]);
    const groups = topic.groups as Record<string, unknown>[];
    assert.equal(groups.length, 1);
    const group = groups[0]!;
    assert.deepEqual(Object.keys(group), ['group', 'backlog', 'inFlight', 'oldestAgeMs', 'deadLetters', 'parkedKeys', 'members', 'orderViolations', 'deferrals', 'lastSeenAt', 'idle', 'partitions']);
    assert.deepEqual(
      [group.group, group.backlog, group.inFlight, group.deadLetters, group.parkedKeys, group.members, group.orderViolations, group.lastSeenAt, group.idle],
      ['billing', 3, 0, 0, 0, 0, 0, null, true],
    );
    assert.ok((group.oldestAgeMs as number) >= 0);
    const partitions = group.partitions as Record<string, unknown>[];
    assert.equal(partitions.length, 4);
    assert.deepEqual(Object.keys(partitions[0]!), ['partition', 'backlog', 'inFlight', 'oldestAgeMs', 'owner']);
    assert.equal(
      partitions.reduce((sum, p) => sum + (p.backlog as number), 0),
      3,
    );

    const all = (await ws.json(['stats', '--json'])) as { topics: { topic: string }[] };
    assert.deepEqual(
      all.topics.map((t) => t.topic),
      ['orders', 'other'],
    );
  });

  test('the table has a row per topic and group, and --partitions a row per partition', async () => {
    const result = await ws.run(['stats']);
    assert.equal(result.code, 0, result.stderr);
    const rows = result.stdout.trimEnd().split('\n');
    assert.match(rows[0]!, /^TOPIC\s+GROUP\s+BACKLOG\s+IN FLIGHT\s+OLDEST\s+DLQ\s+PARKED KEYS\s+MEMBERS\s+LAST SEEN\s+ORDER VIOLATIONS$/);
    assert.match(rows[1]!, /^orders\s+billing\s+3\s+0\s+\S+\s+0\s+0\s+0 \(idle\)\s+never\s+0$/);
    assert.match(rows[2]!, /^other\s+\(no group\)/);
    assert.equal(rows.length, 3);

    const detailed = await ws.run(['stats', 'orders', '--partitions']);
    assert.equal(detailed.code, 0, detailed.stderr);
    const lines = detailed.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /ORDER VIOLATIONS\s+OWNER$/);
    assert.equal(lines.length, 1 + 1 + 4);
    assert.match(lines[2]!, /^\s+partition 0\s+\d+\s+0\s+/);
  });

  test('a topic that does not exist is an error with one line', async () => {
    const result = await ws.run(['stats', 'nope']);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.deepEqual(result.errorLines, ['botqueue: topic "nope" does not exist — see the topics with botqueue topics list']);
  });
});
