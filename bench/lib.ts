/**
 * Small helpers shared by the benchmarks: settings from flags/env, temp files, statistics and
 * the text table. Nothing here measures anything.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Settings {
  /** Repetitions of each measurement; the median is reported. */
  runs: number;
  /** Multiplies message counts and durations (0.2 for a quick look or a profile). */
  scale: number;
  /** Worker concurrency of the end-to-end and latency scenarios. */
  concurrency: number;
  /** Partitions of the benchmark topic. */
  partitions: number;
  /** Scenario ids to run (empty = all). */
  only: Set<string>;
  /** Directory for the temp files (default os.tmpdir()). */
  dir: string;
  /** Skip the untimed warm-up pass. */
  noWarmup: boolean;
}

/** `--name=value` from argv, else `BENCH_NAME` from the environment. */
function setting(name: string): string | undefined {
  const flag = `--${name}=`;
  const arg = process.argv.slice(2).find((a) => a.startsWith(flag));
  if (arg !== undefined) return arg.slice(flag.length);
  if (process.argv.includes(`--${name}`)) return '1';
  return process.env[`BENCH_${name.toUpperCase().replace(/-/g, '_')}`];
}

function numberSetting(name: string, fallback: number, min: number): number {
  const raw = setting(name);
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min) throw new Error(`bench: --${name} must be a number >= ${min}, got ${JSON.stringify(raw)}`);
  return value;
}

export function readSettings(): Settings {
  const only = (setting('only') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
  return {
    runs: Math.round(numberSetting('runs', 3, 1)),
    scale: numberSetting('scale', 1, 0.01),
    concurrency: Math.round(numberSetting('concurrency', 32, 1)),
    partitions: Math.round(numberSetting('partitions', 16, 1)),
    only: new Set(only),
    dir: setting('dir') ?? tmpdir(),
    noWarmup: setting('no-warmup') !== undefined,
  };
}

/** A fresh directory holding one database file; `dispose` deletes it with its -wal and -shm. */
export interface TempDb {
  path: string;
  dispose: () => void;
}

export function tempDb(dir: string, label: string): TempDb {
  const folder = mkdtempSync(join(dir, `botqueue-bench-${label}-`));
  return {
    path: join(folder, 'bench.db'),
    dispose: () => rmSync(folder, { recursive: true, force: true }),
  };
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Nearest-rank percentile of an already sorted array (p in 0..100). */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with 'timeout' if `promise` has not settled after `ms`. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | 'timeout'> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((resolve) => {
    timer = setTimeout(() => resolve('timeout'), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A promise with its resolve function outside. */
export function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Progress goes to stderr, so stdout holds only the table and the JSON line. */
export function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

export function fmtInt(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return Math.round(value).toLocaleString('en-US');
}

export function fmtMs(value: number): string {
  if (!Number.isFinite(value)) return 'n/a';
  return value >= 100 ? `${value.toFixed(0)} ms` : value >= 10 ? `${value.toFixed(1)} ms` : `${value.toFixed(2)} ms`;
}

export function fmtRatio(value: number): string {
  return Number.isFinite(value) ? value.toFixed(2) : 'n/a';
}

/** Left-aligned text columns, widths from the content. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

/**
 * The CPU (user + system, µs) RabbitMQ's Erlang VM has used so far, read from /proc: on a
 * 2-core machine the broker's CPU per message bounds the end-to-end rate as much as the
 * client's. The shared node is the oldest RabbitMQ beam.smp (a private node of a test starts
 * later); undefined where /proc or the process is absent.
 */
export function brokerCpuMicros(): number | undefined {
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return undefined;
  }
  let oldest: { startedAt: number; ticks: number } | undefined;
  for (const pid of entries) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, 'utf8').trim() !== 'beam.smp') continue;
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('\0rabbit\0boot\0')) continue;
      // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15, starttime 22.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const startedAt = Number(fields[19]);
      if (oldest === undefined || startedAt < oldest.startedAt) oldest = { startedAt, ticks: Number(fields[11]) + Number(fields[12]) };
    } catch {
      // The process ended while being read: look at the next one.
    }
  }
  return oldest === undefined ? undefined : (oldest.ticks * 1_000_000) / CLOCK_TICKS_PER_SECOND;
}

/** USER_HZ: 100 on every Linux this runs on (getconf CLK_TCK). */
const CLOCK_TICKS_PER_SECOND = 100;
