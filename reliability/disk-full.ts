/**
 * c. Disk full: `botqueue start` runs with its SQLite file on a small tmpfs mounted in a private
 * mount namespace this scenario creates (unshare --mount; the machine's mounts are untouched and
 * the tmpfs disappears with the process). Publishers fill it: every answer must be 202 (stored)
 * or 503 (not stored), never 2xx for a message that is not stored; then the tmpfs is grown
 * (nsenter ... mount -o remount) and publishing must succeed again.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DiskFullReport {
  acknowledged: number;
  refused: Record<string, number>;
  retained: number;
  /** Stored count minus acknowledged count: 0 when nothing refused was stored and nothing acknowledged lost. */
  mismatch: number;
  recovered: boolean;
  skipped?: string;
}

const START = join(import.meta.dirname, '..', 'test', 'service', 'fixtures', 'start.ts');

export async function runDiskFull(): Promise<DiskFullReport> {
  try {
    execFileSync('unshare', ['--mount', 'true']);
  } catch (error) {
    return { acknowledged: 0, refused: {}, retained: 0, mismatch: 0, recovered: false, skipped: `unshare --mount is not allowed here (${String(error).slice(0, 80)})` };
  }
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-reliability-c-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  writeFileSync(join(dir, 'botqueue.config.json'), JSON.stringify({ shutdownTimeoutMs: 3_000, topics: { full: { partitions: 4 } } }));
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('BOTQUEUE_')) env[k] = v;
  Object.assign(env, { BOTQUEUE_URL: `sqlite:${join(data, 'bq.db')}`, BOTQUEUE_PORT: '0', BOTQUEUE_LOG_LEVEL: 'error' });
  const proc = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', 'mount -t tmpfs -o size=3m tmpfs "$1" && exec "$2" --import "$4" "$3"', 'sh', data, process.execPath, START, import.meta.resolve('tsx')], {
    cwd: dir,
    env,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  createInterface({ input: proc.stdout }).on('line', (l) => lines.push(l));
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
  const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
  try {
    let url = '';
    for (let i = 0; i < 600 && url === ''; i++) {
      // The start banner goes to stderr (stdout carries the JSON log lines).
      const match = [...lines, ...stderr.split('\n')].map((l) => /^\s+http\s+(http:\/\/\S+)/.exec(l)).find((m) => m !== null);
      if (match) url = match[1]!;
      else await sleep(50);
    }
    if (url === '') throw new Error(`disk-full: the service did not start:\n${lines.join('\n')}\n${stderr}`);
    const refused: Record<string, number> = {};
    let acknowledged = 0;
    let n = 0;
    const publish = async (): Promise<number> => {
      const batch = Array.from({ length: 20 }, () => ({ key: `k${n % 50}`, id: `c${n++}`, payload: { pad: 'x'.repeat(2_000) } }));
      try {
        const response = await fetch(`${url}/v1/topics/full/messages`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(batch) });
        await response.arrayBuffer();
        if (response.status === 202) acknowledged += batch.length;
        else refused[response.status] = (refused[response.status] ?? 0) + 1;
        return response.status;
      } catch {
        refused.network = (refused.network ?? 0) + 1;
        return 0;
      }
    };
    // Fill: until 20 refusals in a row (bounded: 3 MiB holds well under 2,000 batches of 40 KiB).
    let refusedInARow = 0;
    for (let i = 0; i < 2_000 && refusedInARow < 20; i++) refusedInARow = (await publish()) === 202 ? 0 : refusedInARow + 1;
    const full = refusedInARow >= 20;
    // Space returns.
    execFileSync('nsenter', ['-t', String(proc.pid), '-m', 'mount', '-o', 'remount,size=64m', data]);
    let recovered = false;
    for (let i = 0; i < 50 && !recovered; i++) {
      recovered = (await publish()) === 202;
      if (!recovered) await sleep(200);
    }
    for (let i = 0; i < 10; i++) await publish();
    const stats = (await (await fetch(`${url}/v1/stats?topic=full`)).json()) as { topics: Array<{ retained: number }> };
    const retained = stats.topics[0]?.retained ?? -1;
    return { acknowledged, refused, retained, mismatch: retained - acknowledged, recovered: recovered && full };
  } finally {
    proc.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    proc.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}
