/**
 * e. A worker cut off from its broker. One worker process runs in a network namespace this
 * scenario creates, joined to the host by a veth pair (10.200.N.1 on the host, .2 inside); it
 * reaches RabbitMQ and PostgreSQL (which listen on 127.0.0.1 only) through two TCP forwarders
 * this process runs on 10.200.N.1. The other workers run outside, on 127.0.0.1. Mid-run the host
 * end of the veth is set down (the real fault: packets stop, no socket is told) for longer than
 * the lease and RabbitMQ's heartbeat timeout, then set up again.
 *
 * Checked: nothing lost, no order violation, no duplicate effect outside ctx.once's window (the
 * cut-off worker counts as killed and paused for it), the partitions moved to the others while
 * the link was down, the cut-off worker was told its leases were lost (its late settlements are
 * refused by their fence), and after the link came back it joined again, took partitions and
 * handled messages. Everything it creates (namespace, veth, forwarders, queues, schema) goes in
 * `finally`, and on SIGINT.
 */
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, type Botqueue } from '../src/index.js';
import { RabbitmqBroker } from '../src/brokers/rabbitmq/index.js';
import { Names } from '../src/brokers/rabbitmq/names.js';
import { dropPostgresSchema } from '../src/stores/postgres/index.js';
import { missingServices, RABBITMQ_URL, STORE_URL } from '../test/support/services.js';
import { check, type CheckResult, type LedgerEntry } from './checker.js';
import { EffectStore } from './effects.js';
import type { WorkerConfig } from './worker.js';
import { publishPaced } from './worker-processes.js';

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, '..');
const WORKER = join(here, 'worker.ts');

export interface NetworkCutScenario {
  messages: number;
  keys: number;
  /** Publishes per second, overall. */
  rate: number;
  leaseMs: number;
  /** The AMQP heartbeat of every connection (RabbitMQ closes a silent one after about two). */
  heartbeatSeconds: number;
  workersOutside: number;
  /** From the first publish to the cut, and how long the link stays down. */
  cutAtMs: number;
  cutForMs: number;
  /**
   * When exactly, from `cutAtMs` on (within 3 s, else at once), decided by what the worker inside
   * sends PostgreSQL (the cut is made before the forwarder can pass the answer back):
   * - `time`: at `cutAtMs` sharp, wherever the worker is;
   * - `holding-lock`: right after the statement that locks its group's row in a coordinate
   *   transaction: the server takes the lock, the answer never arrives, and the transaction stays
   *   open with its locks (the worst moment);
   * - `after-commit`: right after a COMMIT: no transaction of the worker stays open.
   */
  cutWhen: 'time' | 'holding-lock' | 'after-commit';
}

export interface NetworkCutReport {
  /** Why it did not run (no network namespaces, no servers); the caller decides skip or fail. */
  skipped?: string;
  durationMs: number;
  publishMs: number;
  rate: number;
  /** The host end of the veth read back as down while cut (`ip link show`). */
  linkWasDown: boolean;
  /** How long the link was down, ms. */
  cutMs: number;
  /** What the cut followed: see NetworkCutScenario.cutWhen (`time` when the trigger was not seen in 3 s). */
  cutAfter: 'time' | 'holding-lock' | 'after-commit';
  /** Partitions the outside workers took while the link was down. */
  takenOverDuringCut: number;
  /** `lease-lost` and `released` lines of the cut-off worker after the cut. */
  cutWorkerLeaseLost: number;
  cutWorkerReleased: number;
  /** Partitions the cut-off worker took again after the link came back, and the first one's delay. */
  cutWorkerAssignedAfter: number;
  reconnectMs: number | null;
  /** Side effects the cut-off worker ran after the link came back. */
  cutWorkerEffectsAfter: number;
  /** Why messages ended in the dead-letter queue (none is poison here: any is a failure), by error. */
  deadLetterErrors: Record<string, number>;
  /** What each worker said (worker 0 is the cut-off one), ms from the cut, for the JSON report. */
  timeline: string[];
  result: CheckResult;
}

interface Proc {
  proc: ChildProcessWithoutNullStreams;
  lines: Array<{ at: number; line: string }>;
  exited: Promise<void>;
}

function startWorker(command: string[], config: WorkerConfig): Proc {
  const [file, ...args] = [...command, process.execPath, '--import', 'tsx', WORKER, JSON.stringify(config)];
  const proc = spawn(file, args, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: Proc['lines'] = [];
  createInterface({ input: proc.stdout }).on('line', (line) => lines.push({ at: Date.now(), line }));
  proc.stderr.on('data', () => undefined);
  const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
  return { proc, lines, exited };
}

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

/** Undefined when this process may create a network namespace and a veth pair, else why not. */
export function networkNamespacesUnavailable(): string | undefined {
  const name = `bqprobe${process.pid}`;
  try {
    ip('netns', 'add', name);
  } catch (error) {
    return `cannot create a network namespace (ip netns add: ${String((error as { stderr?: unknown }).stderr ?? error).trim().slice(0, 120)}); needs root with CAP_SYS_ADMIN and CAP_NET_ADMIN`;
  }
  try {
    ip('link', 'add', `bqp${process.pid % 100_000}h`, 'type', 'veth', 'peer', 'name', `bqp${process.pid % 100_000}n`, 'netns', name);
    ip('link', 'del', `bqp${process.pid % 100_000}h`);
    return undefined;
  } catch (error) {
    return `cannot create a veth pair (ip link add ... type veth: ${String((error as { stderr?: unknown }).stderr ?? error).trim().slice(0, 120)})`;
  } finally {
    try {
      ip('netns', 'del', name);
    } catch {
      // Already gone.
    }
  }
}

/**
 * A plain TCP forwarder: each connection to `listen` gets its own connection to `target`; either
 * side closing closes both. `watch` sees each chunk the client sent, right after it was passed on.
 */
class Forwarder {
  private constructor(
    private readonly server: Server,
    private readonly sockets: Set<Socket>,
  ) {}

  static async start(host: string, port: number, target: { host: string; port: number }, watch?: (chunk: Buffer) => void): Promise<Forwarder> {
    const sockets = new Set<Socket>();
    const server = createServer((down) => {
      const up = netConnect(target.port, target.host);
      for (const s of [down, up]) {
        sockets.add(s);
        s.setNoDelay(true);
        s.on('error', () => undefined);
        s.on('close', () => {
          sockets.delete(s);
          down.destroy();
          up.destroy();
        });
      }
      down.on('data', (chunk: Buffer) => {
        if (!up.write(chunk)) down.pause();
        watch?.(chunk);
      });
      up.on('drain', () => down.resume());
      up.pipe(down);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return new Forwarder(server, sockets);
  }

  close(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }
}

/** The namespace, the veth pair and the forwarders; `remove()` is idempotent and synchronous (usable from a signal handler). */
class CutOffNetwork {
  readonly netns = `botqueue-e-${process.pid}`;
  readonly hostIf = `bqe${process.pid % 100_000}h`;
  private readonly nsIf = `bqe${process.pid % 100_000}n`;
  readonly hostIp: string;
  readonly nsIp: string;
  private forwarders: Forwarder[] = [];
  private created = false;

  constructor() {
    // A /24 no interface of the host uses yet (other runs on this machine may hold one).
    const used = ip('-o', '-4', 'addr', 'show');
    let n = 20 + (process.pid % 200);
    while (used.includes(`10.200.${n}.`)) n = 20 + ((n - 19) % 230);
    this.hostIp = `10.200.${n}.1`;
    this.nsIp = `10.200.${n}.2`;
  }

  /** `watches[i]` sees what the worker inside sends to `targets[i]`. */
  async create(targets: Array<{ host: string; port: number }>, watches: Array<((chunk: Buffer) => void) | undefined> = []): Promise<void> {
    this.created = true;
    ip('netns', 'add', this.netns);
    ip('link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', this.nsIf, 'netns', this.netns);
    ip('addr', 'add', `${this.hostIp}/24`, 'dev', this.hostIf);
    ip('link', 'set', this.hostIf, 'up');
    ip('-n', this.netns, 'addr', 'add', `${this.nsIp}/24`, 'dev', this.nsIf);
    ip('-n', this.netns, 'link', 'set', this.nsIf, 'up');
    ip('-n', this.netns, 'link', 'set', 'lo', 'up');
    for (const [i, target] of targets.entries()) this.forwarders.push(await Forwarder.start(this.hostIp, target.port, target, watches[i]));
  }

  /** The prefix that runs a command inside the namespace. */
  get exec(): string[] {
    return ['ip', 'netns', 'exec', this.netns];
  }

  setLink(up: boolean): void {
    ip('link', 'set', this.hostIf, up ? 'up' : 'down');
  }

  linkIsDown(): boolean {
    return /state DOWN/.test(ip('link', 'show', this.hostIf));
  }

  remove(): void {
    for (const f of this.forwarders) f.close();
    this.forwarders = [];
    if (!this.created) return;
    this.created = false;
    for (const args of [['link', 'del', this.hostIf], ['netns', 'del', this.netns]]) {
      try {
        ip(...args);
      } catch {
        // Already gone (deleting the namespace deletes its end of the pair, and the pair with it).
      }
    }
  }
}

function withHost(url: string, host: string): string {
  const parsed = new URL(url);
  parsed.hostname = host;
  return parsed.toString();
}

function target(url: string, defaultPort: number): { host: string; port: number } {
  const parsed = new URL(url);
  return { host: parsed.hostname, port: parsed.port === '' ? defaultPort : Number(parsed.port) };
}

async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(50);
  }
  return false;
}

function skippedReport(reason: string): NetworkCutReport {
  return {
    skipped: reason,
    durationMs: 0,
    publishMs: 0,
    rate: 0,
    linkWasDown: false,
    cutMs: 0,
    cutAfter: 'time',
    takenOverDuringCut: 0,
    cutWorkerLeaseLost: 0,
    cutWorkerReleased: 0,
    cutWorkerAssignedAfter: 0,
    reconnectMs: null,
    cutWorkerEffectsAfter: 0,
    timeline: [],
    deadLetterErrors: {},
    result: check({ ledger: [], attempts: [], effects: [], deadLetters: [], backlogAtEnd: 0 }),
  };
}

export async function runNetworkCut(s: NetworkCutScenario, seed: number): Promise<NetworkCutReport> {
  const unavailable = networkNamespacesUnavailable();
  if (unavailable !== undefined) return skippedReport(unavailable);
  const missing = await missingServices();
  if (missing !== undefined) return skippedReport(`needs ${missing}`);

  const started = Date.now();
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-reliability-e-'));
  const effectsFile = join(dir, 'effects.db');
  const namespace = `rele${process.pid}_${Date.now() % 100_000}`;
  const query = `namespace=${namespace}&heartbeat=${s.heartbeatSeconds}`;
  const url = `${RABBITMQ_URL}?${query}&store=${encodeURIComponent(STORE_URL)}`;
  const topic = 'rel';
  const network = new CutOffNetwork();
  const workers: Proc[] = [];
  let bq: Botqueue | undefined;
  // Interrupted: the machine's side (processes, namespace, veth, forwarders) at once, then the
  // queues and the schema, for at most 5 s.
  const onSignal = (): void => {
    for (const w of workers) w.proc.kill('SIGKILL');
    network.remove();
    rmSync(dir, { recursive: true, force: true });
    const drop = async (): Promise<void> => {
      if (bq?.broker instanceof RabbitmqBroker) await bq.broker.deleteAllTopicObjects().catch(() => undefined);
      await dropPostgresSchema(STORE_URL, new Names(namespace).schema).catch(() => undefined);
    };
    void Promise.race([drop(), sleep(5_000)]).finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // The trigger of cutWhen: armed at cutAtMs, fired synchronously, before the forwarder can
    // pass PostgreSQL's answer back, by the statement it waits for.
    let armed = false;
    let cutAt = 0;
    let cutAfter: NetworkCutReport['cutAfter'] = 'time';
    const cut = (): void => {
      if (cutAt !== 0) return;
      armed = false;
      network.setLink(false);
      cutAt = Date.now();
    };
    const watchStore = (chunk: Buffer): void => {
      if (!armed) return;
      const fire = s.cutWhen === 'holding-lock' ? chunk.includes('control_version FROM') && chunk.includes('FOR UPDATE') : s.cutWhen === 'after-commit' && chunk.includes('COMMIT');
      if (fire) {
        cutAfter = s.cutWhen;
        cut();
      }
    };
    await network.create([target(RABBITMQ_URL, 5672), target(STORE_URL, 5432)], [undefined, watchStore]);
    const insideUrl = `${withHost(RABBITMQ_URL, network.hostIp)}?${query}&store=${encodeURIComponent(withHost(STORE_URL, network.hostIp))}`;
    bq = await connect(url);
    await bq.createTopic(topic, { partitions: 16 });
    new EffectStore(effectsFile).close();
    const options = { group: 'rel', concurrency: 16, leaseMs: s.leaseMs, maxAttempts: 5, backoffBaseMs: 20, backoffCapMs: 200, maxDeferrals: 10_000 };
    const config = (workerUrl: string): WorkerConfig => ({ url: workerUrl, topic, effects: effectsFile, downFile: join(dir, 'never'), handlerMaxMs: 4, options });
    const inside = startWorker(network.exec, config(insideUrl));
    workers.push(inside);
    for (let i = 0; i < s.workersOutside; i++) workers.push(startWorker([], config(url)));
    const ready = await waitFor(() => workers.every((w) => w.lines.some((l) => l.line === 'ready')), 60_000);
    if (!ready) throw new Error(`network-cut: the workers did not start: ${workers.map((w) => w.lines.map((l) => l.line).join(' | ')).join(' || ')}`);
    // Publish only once the group is balanced, so that the cut-off worker owns partitions to lose.
    await waitFor(() => inside.lines.some((l) => l.line.startsWith('assigned ')), 30_000);

    const ledger: LedgerEntry[] = Array.from({ length: s.messages }, (_, i) => ({ id: `e-${seed}-${i}`, key: `k${i % s.keys}`, seq: Math.floor(i / s.keys), outcome: 'unknown' as const }));
    const publishStart = Date.now();
    const publisher = publishPaced(bq, topic, ledger, s.keys, s.rate, (e) => ({ seq: e.seq }));

    // The cut.
    await sleep(Math.max(0, publishStart + s.cutAtMs - Date.now()));
    const insideOwned = (): number => inside.lines.reduce((n, { line }) => n + (line.startsWith('assigned ') ? 1 : line.startsWith('released ') || line.startsWith('lease-lost ') ? -1 : 0), 0);
    if (insideOwned() === 0) process.stderr.write('network-cut: the worker to cut off owns no partition at the cut\n');
    if (s.cutWhen !== 'time') {
      armed = true;
      await waitFor(() => cutAt !== 0, 3_000);
    }
    cut();
    const linkWasDown = network.linkIsDown();
    await sleep(s.cutForMs);
    network.setLink(true);
    const restoredAt = Date.now();
    const takenOverDuringCut = workers
      .slice(1)
      .flatMap((w) => w.lines)
      .filter((l) => l.at >= cutAt && l.at < restoredAt && l.line.startsWith('assigned ')).length;

    await publisher;
    const publishMs = Date.now() - publishStart;
    let backlog = -1;
    // Drained: no backlog, and every acknowledged message has its effect or is a dead letter
    // (RabbitMQ's backlog counts ready messages and the owners' last reports, so it can read 0
    // while a member that just came back still holds deliveries).
    const owed = ledger.filter((e) => e.outcome === 'ok');
    const probe = new EffectStore(effectsFile);
    try {
      await waitFor(async () => {
        const [stats] = await bq!.stats(topic);
        backlog = stats?.groups[0]?.backlog ?? -1;
        if (backlog !== 0) return false;
        const letters = await bq!.deadLetters.list({ topic, limit: 10_000 });
        const done = new Set([...probe.readEffects().map((e) => e.id), ...letters.map((l) => l.id)]);
        return owed.every((e) => done.has(e.id));
      }, 90_000);
    } finally {
      probe.close();
    }
    // The cut-off worker must have come back: give it the time a reconnect and a rebalance take.
    await waitFor(() => inside.lines.some((l) => l.at >= restoredAt && l.line.startsWith('assigned ')), 30_000);
    const after = inside.lines.filter((l) => l.at >= cutAt);
    const assignedAfter = inside.lines.filter((l) => l.at >= restoredAt && l.line.startsWith('assigned '));
    const insidePid = inside.proc.pid!;
    for (const w of workers) w.proc.kill('SIGTERM');
    await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(15_000)]);
    const store = new EffectStore(effectsFile);
    const effects = store.readEffects();
    const cutOff = new Set([insidePid]);
    const letters = await bq.deadLetters.list({ topic, limit: 10_000 });
    const deadLetters = letters.map((l) => l.id);
    const deadLetterErrors: Record<string, number> = {};
    for (const l of letters) {
      const what = `${l.error.code ?? '-'} after ${l.attempts} attempts: ${l.error.message.replace(/\d+/g, 'N').slice(0, 100)}`;
      deadLetterErrors[what] = (deadLetterErrors[what] ?? 0) + 1;
    }
    const result = check({ ledger, attempts: store.readAttempts(), effects, deadLetters, backlogAtEnd: Math.max(0, backlog), killedPids: cutOff, pausedPids: cutOff, maxAttempts: 5 });
    store.close();
    const acked = ledger.filter((e) => e.outcome === 'ok').length;
    return {
      durationMs: Date.now() - started,
      publishMs,
      rate: Math.round((acked / publishMs) * 1_000),
      linkWasDown,
      cutMs: restoredAt - cutAt,
      cutAfter,
      takenOverDuringCut,
      cutWorkerLeaseLost: after.filter((l) => l.line.startsWith('lease-lost ')).length,
      cutWorkerReleased: after.filter((l) => l.line.startsWith('released ')).length,
      cutWorkerAssignedAfter: assignedAfter.length,
      reconnectMs: assignedAfter.length === 0 ? null : assignedAfter[0]!.at - restoredAt,
      cutWorkerEffectsAfter: effects.filter((e) => e.pid === insidePid && e.at >= restoredAt).length,
      deadLetterErrors,
      timeline: workers
        .flatMap((w, i) => w.lines.map((l) => ({ ...l, i })))
        .sort((a, b) => a.at - b.at)
        .map((l) => `${l.at - cutAt} w${l.i} ${l.line.slice(0, 200)}`)
        .slice(0, 400),
      result,
    };
  } finally {
    for (const w of workers) w.proc.kill('SIGKILL');
    await Promise.race([Promise.all(workers.map((w) => w.exited)), sleep(10_000)]);
    network.remove();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (bq !== undefined) {
      if (bq.broker instanceof RabbitmqBroker) await bq.broker.deleteAllTopicObjects().catch(() => undefined);
      await bq.close().catch(() => undefined);
    }
    await dropPostgresSchema(STORE_URL, new Names(namespace).schema).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The targets beyond the checker's: the fault happened, the partitions moved, the worker heard it lost them, and it came back. */
export function networkCutTargetsMissed(report: NetworkCutReport): string[] {
  if (report.skipped !== undefined) return [`e: skipped: ${report.skipped}`];
  const missed: string[] = [];
  if (!report.linkWasDown) missed.push('e: the veth link never read back as down');
  if (report.takenOverDuringCut === 0) missed.push('e: no partition moved to the other workers while the link was down');
  if (report.cutWorkerLeaseLost === 0) missed.push('e: the cut-off worker never reported a lease lost');
  if (report.cutWorkerAssignedAfter === 0) missed.push('e: the cut-off worker took no partition after the link came back');
  if (report.cutWorkerEffectsAfter === 0) missed.push('e: the cut-off worker handled no message after the link came back');
  return missed;
}
