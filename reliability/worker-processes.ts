/**
 * What the scenarios share: reliability/worker.ts started as a real process, stopping them,
 * waiting for a condition with a bound, and the ids in a topic's dead-letter queue.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Botqueue } from '../src/index.js';
import type { LedgerEntry } from './checker.js';
import type { WorkerConfig } from './worker.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..');
const WORKER = join(here, 'worker.ts');

export interface WorkerProc {
  proc: ChildProcessWithoutNullStreams;
  /** What the worker printed: `ready`, `assigned|released|lease-lost <partition>`, `error <message>`. */
  lines: string[];
  exited: Promise<void>;
}

export function startWorker(config: WorkerConfig): WorkerProc {
  const proc = spawn(process.execPath, ['--import', 'tsx', WORKER, JSON.stringify(config)], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => lines.push(line));
  proc.stderr.on('data', () => undefined);
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, lines, exited };
}

/** SIGTERM (a clean close), then SIGKILL whatever is left after `graceMs`. */
export async function stopWorkers(workers: readonly WorkerProc[], graceMs: number): Promise<void> {
  for (const w of workers) w.proc.kill('SIGTERM');
  // An unref'd timer: a race already won must not hold the process open for the rest of the grace.
  await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(graceMs, undefined, { ref: false })]);
  for (const w of workers) w.proc.kill('SIGKILL');
  await Promise.all(workers.map((w) => w.exited));
}

/** True once `condition` holds; false (said on stderr) after `timeoutMs`. */
export async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(50);
  }
  process.stderr.write(`reliability: gave up waiting for ${what} after ${timeoutMs} ms\n`);
  return false;
}

export async function dlqIds(bq: Botqueue, topic: string): Promise<string[]> {
  const ids: string[] = [];
  let after = 0;
  for (let page = 0; page < 1_000; page++) {
    const letters = await bq.deadLetters.list({ topic, limit: 1_000, afterDlqId: after });
    if (letters.length === 0) break;
    for (const l of letters) ids.push(l.id);
    after = letters[letters.length - 1]!.dlqId;
  }
  return ids;
}

/**
 * Publishes the ledger at `rate` msg/s overall, in batches of 20 over 8 chains (a key always in
 * the same chain, so each key's publishes stay in order). An entry becomes 'ok' with its ackedAt
 * when its batch is acknowledged; a failed batch stays 'unknown' (not owed; its key's later
 * messages may still be, which the checker allows).
 */
export function publishPaced(bq: Botqueue, topic: string, ledger: LedgerEntry[], keys: number, rate: number, payloadOf: (entry: LedgerEntry) => unknown): Promise<void> {
  const chains = 8;
  const batch = 20;
  const publishStart = Date.now();
  return Promise.all(
    Array.from({ length: chains }, async (_, c) => {
      const mine = ledger.filter((_e, i) => (i % keys) % chains === c);
      for (let from = 0; from < mine.length; from += batch) {
        const slice = mine.slice(from, from + batch);
        // Pace to the rate overall: chain c is due to have sent `from` by now.
        const dueAt = publishStart + ((from * chains) / rate) * 1_000;
        if (dueAt > Date.now()) await sleep(dueAt - Date.now());
        try {
          await bq.publishBatch(topic, slice.map((e) => ({ key: e.key, id: e.id, payload: payloadOf(e) })));
          const now = Date.now();
          for (const e of slice) Object.assign(e, { outcome: 'ok', ackedAt: now });
        } catch {
          // Left 'unknown'.
        }
      }
    }),
  ).then(() => undefined);
}
