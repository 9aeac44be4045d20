/**
 * What the broker-kill (d) and overload (g) scenarios share: reliability/worker.ts started as a
 * real process, waiting for a condition with a bound, and the ids in a topic's dead-letter queue.
 * (run.ts keeps its own copies: it is the entry point, and importing it from here would be a cycle.)
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Botqueue } from '../src/index.js';
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
