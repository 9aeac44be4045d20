import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { main } from '../../src/cli/main.js';
import { consume, workspace } from './helpers.js';

const ws = workspace('publish');
after(() => ws.cleanup());

interface ReceiptsDoc {
  topic: string;
  receipts: { line: number | null; id: string; topic: string; partition: number; seq: number; duplicate: boolean }[];
  messages: number;
  stored: number;
  duplicates: number;
  error?: { message: string; line: number | null; code: string | null };
}

async function retained(topic: string): Promise<number> {
  const bq = await ws.client();
  try {
    const [stats] = await bq.stats(topic);
    return stats?.retained ?? 0;
  } finally {
    await bq.close();
  }
}

describe('botqueue publish', () => {
  test('one message from flags is stored with its key, id, headers and payload', async () => {
    const args = ['publish', 'updates', '--key', 'chat:42', '--id', 'tg:1', '--payload', '{"text":"hi"}', '--header', 'platform=telegram', '--header', 'trace=a=b'];
    const doc = (await ws.json([...args, '--json'])) as ReceiptsDoc;
    assert.equal(doc.topic, 'updates');
    assert.deepEqual(Object.keys(doc).sort(), ['duplicates', 'messages', 'receipts', 'stored', 'topic']);
    assert.equal(doc.receipts.length, 1);
    assert.deepEqual({ ...doc.receipts[0], partition: 0, seq: 0 }, { line: null, id: 'tg:1', topic: 'updates', partition: 0, seq: 0, duplicate: false });
    assert.deepEqual([doc.messages, doc.stored, doc.duplicates], [1, 1, 0]);

    // The same id again is a duplicate: the human line says so and nothing new is stored.
    const again = await ws.run(args);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^duplicate: tg:1 was already published to updates/);

    const bq = await ws.client();
    try {
      assert.equal((await bq.stats('updates'))[0]!.retained, 1);
      const [message] = await consume(bq, 'updates', (got) => got.length >= 1);
      assert.ok(message);
      assert.equal(message.id, 'tg:1');
      assert.equal(message.key, 'chat:42');
      assert.deepEqual(message.payload, { text: 'hi' });
      assert.deepEqual(message.headers, { platform: 'telegram', trace: 'a=b' });
    } finally {
      await bq.close();
    }
  });

  test('NDJSON on stdin is published in order, in batches, with a receipt per line', async () => {
    const lines: string[] = [];
    for (let n = 0; n < 1200; n++) lines.push(JSON.stringify({ key: `k${n % 7}`, id: `bulk-${n}`, payload: { n }, ...(n % 100 === 0 ? { headers: { h: String(n) } } : {}) }));
    lines.splice(600, 0, '', '   '); // blank lines are skipped but counted
    const input = `${lines.join('\n')}\n`;
    const doc = (await ws.json(['publish', 'bulk', '--json'], { input })) as ReceiptsDoc;
    assert.deepEqual([doc.messages, doc.stored, doc.duplicates], [1200, 1200, 0]);
    assert.equal(doc.receipts.length, 1200);
    assert.equal(doc.receipts[0]!.line, 1);
    assert.equal(doc.receipts[1199]!.line, 1202);
    assert.equal(doc.receipts[1199]!.id, 'bulk-1199');
    assert.equal(doc.error, undefined);

    // A re-run is all duplicates (the human summary says so).
    const again = await ws.run(['publish', 'bulk'], { input });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /published 1200 messages to bulk: 0 stored, 1200 duplicates \(3 batches/);

    const bq = await ws.client();
    try {
      assert.equal((await bq.stats('bulk'))[0]!.retained, 1200);
      const got = await consume(bq, 'bulk', (received) => received.length >= 1200);
      assert.equal(got.length, 1200);
      const last = new Map<string, number>();
      for (const message of got) {
        const n = (message.payload as { n: number }).n;
        assert.ok((last.get(message.key!) ?? -1) < n, `key ${message.key} out of order at ${n}`);
        last.set(message.key!, n);
      }
      assert.deepEqual(got.find((m) => m.id === 'bulk-300')!.headers, { h: '300' });
    } finally {
      await bq.close();
    }
  });

  test('a line that is not JSON stops the run there: the lines before it are stored, nothing after', async () => {
    const lines = Array.from({ length: 700 }, (_, n) => JSON.stringify({ key: 'k', id: `bad-${n}`, payload: n }));
    lines[649] = '{"key":"k","id":"bad-649","payload":'; // line 650
    const result = await ws.run(['publish', 'badjson', '--batch-size', '100'], { input: lines.join('\n') });
    assert.equal(result.code, 1);
    assert.equal(result.errorLines.length, 1, result.stderr);
    assert.match(result.errorLines[0]!, /^botqueue: line 650: not valid JSON .* — lines before 650 are stored, nothing from line 650 on; .*tail -n \+650/);
    assert.equal(await retained('badjson'), 649);
  });

  test('a line the library refuses (empty key) stops the run at that line, also in --json', async () => {
    const input = ['{"key":"a","id":"r1","payload":1}', '{"key":"a","id":"r2","payload":2}', '{"key":"","id":"r3","payload":3}', '{"key":"a","id":"r4","payload":4}'].join('\n');
    const result = await ws.run(['publish', 'refused', '--json'], { input });
    assert.equal(result.code, 1);
    assert.equal(result.errorLines.length, 1, result.stderr);
    assert.match(result.errorLines[0]!, /line 3: message key must be a non-empty string/);
    const doc = JSON.parse(result.stdout) as ReceiptsDoc;
    assert.deepEqual(
      doc.receipts.map((r) => r.line),
      [1, 2],
    );
    assert.equal(doc.error?.line, 3);
    assert.equal(doc.stored, 2);
    assert.equal(await retained('refused'), 2);
  });

  test('an invalid --payload exits non-zero with one line and stores nothing', async () => {
    const result = await ws.run(['publish', 'nothing', '--payload', '{text: hi}']);
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.equal(result.errorLines.length, 1, result.stderr);
    assert.match(result.errorLines[0]!, /^botqueue: --payload is not valid JSON .* — run botqueue publish --help/);
    assert.equal(await retained('nothing'), 0);
  });

  test('per-message flags without --payload are refused rather than silently ignored', async () => {
    const result = await ws.run(['publish', 'nothing', '--key', 'k'], { input: '{"payload":1}\n' });
    assert.equal(result.code, 2);
    assert.equal(result.errorLines.length, 1);
    assert.match(result.errorLines[0]!, /--key goes with --payload/);
    assert.equal(await retained('nothing'), 0);
  });

  test('a bulk publish draws a progress bar when stderr is a terminal', async () => {
    // In-process, with a stderr that says it is a terminal (a child's stderr is a pipe).
    let stdout = '';
    let stderr = '';
    const lines = Array.from({ length: 50 }, (_, n) => `${JSON.stringify({ key: 'p', payload: n })}\n`);
    const code = await main(['publish', 'progress', '--batch-size', '10'], {
      stdout: { write: (chunk: string) => ((stdout += chunk), true) },
      stderr: { isTTY: true, write: (chunk: string) => ((stderr += chunk), true) },
      stdin: Readable.from(lines),
      env: { BOTQUEUE_URL: ws.url },
      cwd: ws.dir,
    });
    assert.equal(code, 0, stderr);
    assert.match(stdout, /^published 50 messages to progress: 50 stored, 0 duplicates \(5 batches, /);
    assert.match(stderr, /publishing 50 messages/);
    assert.equal(await retained('progress'), 50);
  });
});
