/**
 * kill -9 of the sender process mid-run: no reply is lost, and per chat at most the one reply
 * that was in flight is sent again (the window between the platform's answer and the record of
 * ctx.once('send'); docs/outbound.md). A real SQLite file shared by the test and two sender
 * processes, a fake Telegram Bot API on loopback that answers after 30 ms (so sends are in
 * flight when the kill lands).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { connect } from '../../src/index.js';
import { startFakePlatforms } from '../support/fake-platforms.js';

const fixture = fileURLToPath(new URL('./fixtures/sender-process.ts', import.meta.url));

function startSenderProcess(file: string, apiRoot: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, file, apiRoot], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) resolve(child);
    });
    child.once('exit', (code) => reject(new Error(`sender process exited with ${code} before it was ready`)));
  });
}

test('kill -9 of the sender mid-run loses no reply and repeats at most the one in flight per chat', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bq-outbound-crash-'));
  const file = join(dir, 'bq.db');
  const fake = await startFakePlatforms({ delayMs: 30 });
  const bq = await connect(`sqlite:${file}`);
  const children: ChildProcess[] = [];
  try {
    const CHATS = 50;
    const PER_CHAT = 10;
    for (let i = 0; i < PER_CHAT; i++) await Promise.all(Array.from({ length: CHATS }, (_, c) => bq.send('telegram', String(3000 + c), `${c}#${i}`)));
    children.push(await startSenderProcess(file, fake.roots.telegram));
    await fake.waitFor((r) => r.length >= 150, 30_000, '150 sends before the kill');
    children[0]!.kill('SIGKILL');
    await new Promise((r) => children[0]!.once('exit', r));
    const atKill = fake.requests.length;
    children.push(await startSenderProcess(file, fake.roots.telegram));
    const unique = (): number => new Set(fake.requests.map((r) => r.body.text)).size;
    await fake.waitFor(() => unique() === CHATS * PER_CHAT, 60_000, 'every reply after the restart');
    await new Promise((r) => setTimeout(r, 300)); // anything sent twice late would show now

    let repeated = 0;
    for (let c = 0; c < CHATS; c++) {
      const seen = fake.requests.filter((r) => r.chat === String(3000 + c)).map((r) => Number(String(r.body.text).split('#')[1]));
      // In order, each once, except one reply that may come twice in a row (the one in flight at the kill).
      const deduped = seen.filter((n, i) => i === 0 || n !== seen[i - 1]);
      assert.deepEqual(deduped, [...Array(PER_CHAT).keys()], `chat ${c}: ${seen.join(',')}`);
      assert.ok(seen.length - deduped.length <= 1, `chat ${c} repeated at most one reply: ${seen.join(',')}`);
      repeated += seen.length - deduped.length;
    }
    console.log(`# kill -9 after ${atKill} of ${CHATS * PER_CHAT} sends: every reply arrived; ${repeated} repeated (at most one per chat, those in flight)`);
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await bq.close();
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
