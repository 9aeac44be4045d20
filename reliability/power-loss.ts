/**
 * p. Power loss on SQLite (the other half of b): a publisher process runs with the power-loss
 * shim preloaded (test/support/powerloss-shim.c), which keeps for each file of the database's
 * directory a shadow holding only what was fsync'ed. The publisher prints each acknowledged id;
 * it is SIGKILLed mid-publish and the shadows are copied over the files (the disk as a power
 * loss leaves it: every write since the file's last sync gone). Then the file is opened:
 * `integrity_check` must answer ok and, with botqueue's default settings (synchronous=FULL),
 * every acknowledged id must be there.
 *
 * The same runs with `synchronous=OFF` (forced on the publisher's connection; botqueue never
 * allows it) must lose acknowledged ids: that shows the harness sees a loss when there is one.
 * `?synchronous=NORMAL` (the opt-in) syncs the WAL only at checkpoints, so it may lose the
 * commits after the last one: its count is measured and reported, not a target.
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, fsyncSync, mkdirSync, mkdtempSync, openSync, closeSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { connect } from '../src/index.js';
import type { PowerLossPublisherConfig } from './power-loss-publisher.js';
import { seededRandom } from '../test/support/worker-fleet.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..');
const PUBLISHER = join(here, 'power-loss-publisher.ts');
const SHIM_SOURCE = join(ROOT, 'test', 'support', 'powerloss-shim.c');
export const SHIM = join(ROOT, 'node_modules', '.cache', 'botqueue', 'powerloss-shim.so');

/** default: botqueue's own settings (FULL); NORMAL: the URL's opt-in; OFF: forced, known to lose. */
export type PowerLossMode = 'default' | 'NORMAL' | 'OFF';

export interface PowerLossModeReport {
  mode: PowerLossMode;
  /** `PRAGMA journal_mode` and `synchronous` as the publisher read them back, e.g. "wal FULL". */
  settings: string;
  cuts: number;
  acknowledged: number;
  /** Acknowledged ids missing after the power came back. */
  lost: number;
  lostIds: string[];
  /** Cuts after which some acknowledged id was missing. */
  cutsLosing: number;
  /** integrity_check answers other than ok, one per cut that had one. */
  integrityErrors: string[];
  /** Stored though never acknowledged (in flight at the cut: allowed). */
  storedUnacknowledged: number;
  /** What the shim saw (writes to and syncs of the modelled files): proof it ran. */
  shimWrites: number;
  shimSyncs: number;
}

export interface PowerLossReport {
  modes: PowerLossModeReport[];
  skipped?: string;
}

/** Builds the shim when missing or older than its source; returns why it cannot, or undefined. */
export function buildPowerLossShim(): string | undefined {
  if (existsSync(SHIM) && statSync(SHIM).mtimeMs >= statSync(SHIM_SOURCE).mtimeMs) return undefined;
  mkdirSync(dirname(SHIM), { recursive: true });
  const built = spawnSync('gcc', ['-O2', '-shared', '-fPIC', '-o', SHIM, SHIM_SOURCE, '-ldl', '-lpthread'], { encoding: 'utf8' });
  if (built.error !== undefined) return `gcc is not available to build the power-loss shim (${built.error.message})`;
  if (built.status !== 0) return `gcc failed building the power-loss shim: ${built.stderr.slice(0, 500)}`;
  return undefined;
}


/** The publisher under the shim until `cutAfterMs` past its first ack; then SIGKILL. Returns its acks and what it said. */
async function publishUntilCut(config: PowerLossPublisherConfig, data: string, shadow: string, cutAfterMs: number): Promise<{ acks: string[]; settings: string }> {
  const env = { ...process.env, LD_PRELOAD: SHIM, BOTQUEUE_POWERLOSS_DIR: data, BOTQUEUE_POWERLOSS_SHADOW: shadow };
  const proc = spawn(process.execPath, ['--import', 'tsx', PUBLISHER, JSON.stringify(config)], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
  const acks: string[] = [];
  let settings = '';
  createInterface({ input: proc.stdout }).on('line', (line) => {
    if (line.startsWith('ack ')) acks.push(line.slice(4));
    else if (line.startsWith('settings ')) settings = line.slice(9);
  });
  let stderr = '';
  proc.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2_000)));
  // 'close', not 'exit': every ack line written before the kill has been read by then.
  const closed = new Promise<void>((resolve) => proc.on('close', () => resolve()));
  try {
    const deadline = Date.now() + 30_000;
    while (acks.length === 0 && proc.exitCode === null && Date.now() < deadline) await sleep(20);
    if (acks.length === 0) throw new Error(`power-loss: the publisher acknowledged nothing (exit ${proc.exitCode}): ${stderr}`);
    await sleep(cutAfterMs);
  } finally {
    proc.kill('SIGKILL');
    await closed;
  }
  return { acks, settings };
}

/** The power comes back: each modelled file becomes its shadow (its last synced content); the -shm index is gone. */
function restoreSyncedImage(data: string, shadow: string): { writes: number; syncs: number } {
  let writes = 0;
  let syncs = 0;
  for (const name of readdirSync(shadow)) {
    if (name === 'shim-stats') {
      const match = /writes (\d+) syncs (\d+)/.exec(readFileSync(join(shadow, name), 'utf8'));
      writes = Number(match?.[1] ?? 0);
      syncs = Number(match?.[2] ?? 0);
      continue;
    }
    copyFileSync(join(shadow, name), join(data, name));
  }
  rmSync(join(data, 'bq.db-shm'), { force: true });
  return { writes, syncs };
}

async function runMode(mode: PowerLossMode, cuts: number, random: () => number): Promise<PowerLossModeReport> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), `botqueue-reliability-p-${mode}-`)));
  const data = join(dir, 'data');
  const shadow = join(dir, 'shadow');
  mkdirSync(data);
  const file = join(data, 'bq.db');
  const report: PowerLossModeReport = { mode, settings: '', cuts: 0, acknowledged: 0, lost: 0, lostIds: [], cutsLosing: 0, integrityErrors: [], storedUnacknowledged: 0, shimWrites: 0, shimSyncs: 0 };
  try {
    // The starting image: the topic created by a clean close (checkpointed, no WAL), then synced.
    const bq = await connect(`sqlite:${file}`);
    await bq.createTopic('power', { partitions: 8 });
    await bq.close();
    const fd = openSync(file, 'r+');
    fsyncSync(fd);
    closeSync(fd);
    const url = mode === 'NORMAL' ? `sqlite:${file}?synchronous=NORMAL` : `sqlite:${file}`;
    for (let cut = 0; cut < cuts; cut++) {
      // Fresh shadows: the image the previous round left (opened, checked and closed cleanly) is the synced one.
      rmSync(shadow, { recursive: true, force: true });
      mkdirSync(shadow);
      const prefix = `${mode}${cut}-`;
      const config: PowerLossPublisherConfig = { url, topic: 'power', keys: 50, chains: 8, idPrefix: prefix, ...(mode === 'OFF' ? { forceSynchronous: 'OFF' as const } : {}) };
      const { acks, settings } = await publishUntilCut(config, data, shadow, 200 + Math.floor(random() * 1_300));
      report.settings = settings;
      const shim = restoreSyncedImage(data, shadow);
      report.shimWrites += shim.writes;
      report.shimSyncs += shim.syncs;
      report.cuts++;
      const db = new Database(file);
      let stored: Set<string>;
      try {
        const integrity = db.pragma('integrity_check', { simple: true }) as string;
        if (integrity !== 'ok') report.integrityErrors.push(`cut ${cut}: ${integrity}`);
        stored = new Set(db.prepare('SELECT id FROM messages WHERE id LIKE ?').pluck().all(`${prefix}%`) as string[]);
      } finally {
        db.close();
      }
      const acked = new Set(acks);
      const lost = acks.filter((id) => !stored.has(id));
      report.acknowledged += acks.length;
      report.lost += lost.length;
      if (lost.length > 0) report.cutsLosing++;
      report.lostIds.push(...lost.slice(0, Math.max(0, 10 - report.lostIds.length)));
      for (const id of stored) if (!acked.has(id)) report.storedUnacknowledged++;
    }
    return report;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs `cuts` power cuts for each mode; skipped (with the reason) when the shim cannot be built. */
export async function runPowerLoss(cuts: number, seed: number, modes: readonly PowerLossMode[] = ['default', 'NORMAL', 'OFF']): Promise<PowerLossReport> {
  const problem = buildPowerLossShim();
  if (problem !== undefined) return { modes: [], skipped: problem };
  const random = seededRandom(seed ^ 0x0ff);
  const reports: PowerLossModeReport[] = [];
  for (const mode of modes) reports.push(await runMode(mode, cuts, random));
  return { modes: reports };
}

/** The targets: default settings are FULL and lose nothing, OFF loses (the harness can see a loss), every image is intact, and the shim saw the writes. */
export function powerLossTargetsMissed(report: PowerLossReport): string[] {
  if (report.skipped !== undefined) return [`p: skipped: ${report.skipped}`];
  const missed: string[] = [];
  for (const m of report.modes) {
    if (m.integrityErrors.length > 0) missed.push(`p ${m.mode}: integrity_check ${m.integrityErrors.join('; ')}`);
    if (m.acknowledged === 0) missed.push(`p ${m.mode}: nothing acknowledged before the cuts`);
    if (m.shimWrites === 0) missed.push(`p ${m.mode}: the shim saw no write (was it preloaded?)`);
  }
  const byMode = new Map(report.modes.map((m) => [m.mode, m]));
  const full = byMode.get('default');
  if (full !== undefined) {
    if (full.lost !== 0) missed.push(`p default: ${full.lost} acknowledged publishes lost on power loss (e.g. ${full.lostIds.slice(0, 3).join(', ')})`);
    if (full.settings !== 'wal FULL') missed.push(`p default: settings in force "${full.settings}", not "wal FULL"`);
    if (full.shimSyncs === 0) missed.push('p default: no fsync seen');
  }
  const off = byMode.get('OFF');
  if (off !== undefined && off.lost === 0) missed.push('p OFF: no acknowledged publish lost with synchronous=OFF: the harness does not see a power loss');
  return missed;
}
