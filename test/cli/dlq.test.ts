import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { PermanentError } from '../../src/core/errors.js';
import { consume, workspace } from './helpers.js';

const ws = workspace('dlq');
after(() => ws.cleanup());

interface DeadLetterJson {
  dlqId: number;
  topic: string;
  group: string;
  key: string | null;
  id: string;
  payload: unknown;
  headers: Record<string, string>;
  attempts: number;
  parked: boolean;
  error: { message: string; name: string | null; code: string | null; stack: string | null };
}

async function deadLetterIds(): Promise<string[]> {
  const bq = await ws.client();
  try {
    return (await bq.deadLetters.list({ limit: 1000 })).map((d) => d.id).sort();
  } finally {
    await bq.close();
  }
}

describe('botqueue dlq', () => {
  before(async () => {
    // Published through the CLI; a worker of this process dead-letters the poison ones.
    const input = [
      { key: 'chat:1', id: 'm1', payload: { text: 'ok' } },
      { key: 'chat:1', id: 'm2', payload: { text: 'bad', poison: 'poison pill' }, headers: { trace: 'abc' } },
      { key: 'chat:2', id: 'm3', payload: { poison: 'poison pill' } },
      { key: 'chat:3', id: 'm4', payload: { poison: 'other failure' } },
      { key: 'chat:1', id: 'm5', payload: { text: 'after' } },
    ]
      .map((m) => JSON.stringify(m))
      .join('\n');
    const published = await ws.run(['publish', 'chat', '--batch-size', '2'], { input });
    assert.equal(published.code, 0, published.stderr);

    const bq = await ws.client();
    let dead = 0;
    let completed = 0;
    const worker = bq.worker(
      'chat',
      (message) => {
        const poison = (message.payload as { poison?: string }).poison;
        if (poison !== undefined) throw new PermanentError(poison);
        return Promise.resolve();
      },
      { group: 'bot' },
    );
    await new Promise<void>((resolve, reject) => {
      const check = (): void => {
        if (dead === 3 && completed === 2) resolve();
      };
      worker.on('dead-lettered', () => {
        dead++;
        check();
      });
      worker.on('completed', () => {
        completed++;
        check();
      });
      setTimeout(() => reject(new Error(`timed out: ${dead} dead-lettered, ${completed} completed`)), 10_000).unref();
    });
    await worker.close();
    await bq.close();
  });

  test('summary groups dead letters by topic, group and error', async () => {
    const doc = (await ws.json(['dlq', 'summary', '--json'])) as { total: number; entries: Record<string, unknown>[] };
    assert.equal(doc.total, 3);
    assert.equal(doc.entries.length, 2);
    const [first, second] = doc.entries;
    assert.deepEqual(Object.keys(first!).sort(), ['count', 'error', 'firstFailedAt', 'group', 'keys', 'lastFailedAt', 'parked', 'sampleDlqId', 'topic']);
    assert.deepEqual([first!.topic, first!.group, first!.error, first!.count, first!.keys, first!.parked], ['chat', 'bot', 'poison pill', 2, 2, 0]);
    assert.deepEqual([second!.error, second!.count], ['other failure', 1]);
    assert.ok((first!.firstFailedAt as number) <= (first!.lastFailedAt as number));

    const human = await ws.run(['dlq', 'summary', '--topic', 'chat']);
    assert.equal(human.code, 0, human.stderr);
    const lines = human.stdout.split('\n');
    assert.match(lines[0]!, /^COUNT\s+TOPIC\s+GROUP/);
    assert.match(lines[1]!, /^\s*2\s+chat\s+bot\s+2\s+0 .*poison pill$/);
    assert.match(human.stdout, /3 dead letters \(topic=chat\)/);
  });

  test('list shows a table and a JSON page with the payload parsed', async () => {
    const doc = (await ws.json(['dlq', 'list', '--json'])) as { deadLetters: DeadLetterJson[]; next: number | null };
    assert.equal(doc.next, null);
    // Oldest first: in the order they were dead-lettered (keys run in parallel, so any order of ids).
    assert.deepEqual(
      doc.deadLetters.map((d) => d.id).sort(),
      ['m2', 'm3', 'm4'],
    );
    assert.deepEqual(
      doc.deadLetters.map((d) => d.dlqId),
      doc.deadLetters.map((d) => d.dlqId).sort((a, b) => a - b),
    );
    const m2 = doc.deadLetters.find((d) => d.id === 'm2')!;
    assert.deepEqual(m2.payload, { text: 'bad', poison: 'poison pill' });
    assert.deepEqual(m2.headers, { trace: 'abc' });
    assert.equal(m2.error.code, 'BOTQUEUE_PERMANENT_FAILURE');

    const page = (await ws.json(['dlq', 'list', '--limit', '2', '--json'])) as { deadLetters: DeadLetterJson[]; next: number | null };
    assert.equal(page.deadLetters.length, 2);
    assert.equal(page.next, page.deadLetters[1]!.dlqId);
    const rest = (await ws.json(['dlq', 'list', '--after', String(page.next), '--json'])) as { deadLetters: DeadLetterJson[] };
    assert.deepEqual(
      rest.deadLetters.map((d) => d.id),
      [doc.deadLetters[2]!.id],
    );

    const table = await ws.run(['dlq', 'list', '--error', 'POISON']);
    assert.equal(table.code, 0, table.stderr);
    const rows = table.stdout.trim().split('\n');
    assert.equal(rows.length, 3); // header + m2 + m3 (the match is case-insensitive)
    assert.match(rows[0]!, /^DLQ ID\s+TOPIC\s+GROUP\s+KEY/);
    assert.match(rows.find((row) => / m2 /.test(row)) ?? '', /^\s*\d+\s+chat\s+bot\s+chat:1\s+m2\s+1\s+.*poison pill$/);
  });

  test('show prints everything of one dead letter', async () => {
    const [m2] = ((await ws.json(['dlq', 'list', '--key', 'chat:1', '--json'])) as { deadLetters: DeadLetterJson[] }).deadLetters;
    const result = await ws.run(['dlq', 'show', String(m2!.dlqId)]);
    assert.equal(result.code, 0, result.stderr);
    const out = result.stdout;
    assert.match(out, new RegExp(`^dead letter ${m2!.dlqId}\\n`));
    assert.match(out, /key:\s+chat:1/);
    assert.match(out, /message id:\s+m2/);
    assert.match(out, /headers:\n {2}trace: abc\n/);
    assert.match(out, /payload:\n {2}\{\n {4}"text": "bad",\n {4}"poison": "poison pill"\n {2}\}/); // pretty-printed
    assert.match(out, /error:\n {2}PermanentError \[BOTQUEUE_PERMANENT_FAILURE\]: poison pill\n {4}at /); // with its stack

    const json = (await ws.json(['dlq', 'show', String(m2!.dlqId), '--json'])) as { deadLetter: DeadLetterJson };
    assert.equal(json.deadLetter.id, 'm2');
    assert.match(json.deadLetter.error.stack ?? '', /PermanentError: poison pill/);

    const missing = await ws.run(['dlq', 'show', '999999']);
    assert.equal(missing.code, 1);
    assert.equal(missing.errorLines.length, 1);
    assert.match(missing.errorLines[0]!, /^botqueue: no dead letter with id 999999 — /);
  });

  test('redrive and purge refuse to run with no filter unless --all is given', async () => {
    for (const action of ['redrive', 'purge']) {
      const result = await ws.run(['dlq', action]);
      assert.equal(result.code, 2);
      assert.equal(result.errorLines.length, 1);
      assert.match(result.errorLines[0]!, new RegExp(`^botqueue: refusing to ${action} every dead letter without --all — add a filter`));
    }
    assert.deepEqual(await deadLetterIds(), ['m2', 'm3', 'm4']);
  });

  test('--dry-run counts what would be affected and changes nothing', async () => {
    const redrive = (await ws.json(['dlq', 'redrive', '--topic', 'chat', '--key', 'chat:1', '--dry-run', '--json'])) as Record<string, unknown>;
    assert.deepEqual(redrive, { action: 'redrive', dryRun: true, filter: { topic: 'chat', key: 'chat:1' }, matched: 1, parked: 0, redriven: 0 });
    const purge = await ws.run(['dlq', 'purge', '--all', '--dry-run']);
    assert.equal(purge.code, 0, purge.stderr);
    assert.match(purge.stdout, /^dry run: would purge 3 dead letters \(every dead letter\), 0 of them parked; nothing changed/);
    assert.deepEqual(await deadLetterIds(), ['m2', 'm3', 'm4']);
  });

  test('redrive sends the dead letter back to its topic and key, and a worker handles it again', async () => {
    const result = await ws.run(['dlq', 'redrive', '--topic', 'chat', '--key', 'chat:1']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'redriven 1 dead letter (topic=chat key=chat:1)\n');
    assert.deepEqual(await deadLetterIds(), ['m3', 'm4']);

    const bq = await ws.client();
    try {
      const got = await consume(bq, 'chat', (received) => received.some((m) => m.id === 'm2'), { group: 'bot' });
      const m2 = got.find((m) => m.id === 'm2');
      assert.ok(m2, 'the redriven message was not delivered again');
      assert.equal(m2.key, 'chat:1');
      assert.deepEqual(m2.payload, { text: 'bad', poison: 'poison pill' });
      assert.deepEqual(m2.headers, { trace: 'abc' });
      assert.deepEqual(
        got.map((m) => m.id),
        ['m2'],
      ); // only the redriven message: m1 and m5 were handled before
    } finally {
      await bq.close();
    }
  });

  test('purge deletes what matches, and --all the rest', async () => {
    const one = (await ws.json(['dlq', 'purge', '--error', 'other', '--json'])) as Record<string, unknown>;
    assert.deepEqual(one, { action: 'purge', dryRun: false, filter: { errorContains: 'other' }, matched: 1, parked: 0, purged: 1 });
    assert.deepEqual(await deadLetterIds(), ['m3']);
    const rest = await ws.run(['dlq', 'purge', '--all']);
    assert.equal(rest.code, 0, rest.stderr);
    assert.equal(rest.stdout, 'purged 1 dead letter (every dead letter)\n');
    assert.deepEqual(await deadLetterIds(), []);
    const summary = (await ws.json(['dlq', 'summary', '--json'])) as { total: number };
    assert.equal(summary.total, 0);
  });

  test('a flag of another subcommand and an unknown subcommand are refused', async () => {
    const wrong = await ws.run(['dlq', 'list', '--all']);
    assert.equal(wrong.code, 2);
    assert.match(wrong.errorLines[0]!, /option --all does not apply to dlq list/);
    const unknown = await ws.run(['dlq', 'drop']);
    assert.equal(unknown.code, 2);
    assert.equal(unknown.errorLines.length, 1);
    assert.match(unknown.errorLines[0]!, /unknown dlq subcommand "drop"/);
  });
});

describe('botqueue dlq redrive and purge in chunks', () => {
  const bulk = workspace('dlq-bulk');
  after(() => bulk.cleanup());
  const TOTAL = 1_100; // more than two chunks of 500

  before(async () => {
    const bq = await bulk.client();
    await bq.publishBatch(
      'many',
      Array.from({ length: TOTAL }, (_, n) => ({ key: `k${n % 50}`, id: `x${n}`, payload: { n } })),
    );
    let dead = 0;
    const worker = bq.worker('many', () => Promise.reject(new PermanentError('always fails')), { group: 'g', concurrency: 64 });
    await new Promise<void>((resolve, reject) => {
      worker.on('dead-lettered', () => {
        if (++dead === TOTAL) resolve();
      });
      setTimeout(() => reject(new Error(`timed out with ${dead} dead-lettered`)), 20_000).unref();
    });
    await worker.close();
    await bq.close();
  });

  test('--limit redrives the oldest n across chunks, with no progress bar off a terminal', async () => {
    const redrive = await bulk.run(['dlq', 'redrive', '--topic', 'many', '--limit', '300', '--json']);
    assert.equal(redrive.code, 0, redrive.stderr);
    assert.equal(redrive.stderr, ''); // stderr is a pipe here: no progress bar
    assert.deepEqual(JSON.parse(redrive.stdout), { action: 'redrive', dryRun: false, filter: { topic: 'many' }, matched: 300, parked: 0, redriven: 300 });
    const bq = await bulk.client();
    try {
      const left = await bq.deadLetters.list({ limit: 10_000 });
      assert.equal(left.length, TOTAL - 300);
      assert.equal((await bq.stats('many'))[0]!.groups[0]!.backlog, 300); // pending again for group g
    } finally {
      await bq.close();
    }
  });

  test('a long redrive draws a progress bar when stderr is a terminal', async () => {
    // In-process, with a stderr that says it is a terminal (a child's stderr is a pipe).
    let stdout = '';
    let stderr = '';
    const code = await main(['dlq', 'redrive', '--topic', 'many', '--limit', '600'], {
      stdout: { write: (chunk: string) => ((stdout += chunk), true) },
      stderr: { isTTY: true, write: (chunk: string) => ((stderr += chunk), true) },
      stdin: Readable.from([]),
      env: { BOTQUEUE_URL: bulk.url },
      cwd: bulk.dir,
    });
    assert.equal(code, 0, stderr);
    assert.equal(stdout, 'redriven 600 dead letters (topic=many)\n');
    assert.match(stderr, /redriving \|.*\| 100% \| 600\/600 dead letters/);
  });

  test('purge takes the rest', async () => {
    const purge = await bulk.run(['dlq', 'purge', '--group', 'g']);
    assert.equal(purge.code, 0, purge.stderr);
    assert.equal(purge.stdout, `purged ${TOTAL - 900} dead letters (group=g)\n`);
    const summary = (await bulk.json(['dlq', 'summary', '--json'])) as { total: number };
    assert.equal(summary.total, 0);
  });
});
