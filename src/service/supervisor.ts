/**
 * `botqueue start --workers N`: N worker processes (child_process.fork of ./worker-process),
 * each running every configured handler on the shared broker (the SQLite file), balanced by
 * the worker groups. A process that dies is restarted after a backoff (1 s, doubling up to
 * 30 s; back to 1 s once a process ran for a minute). On stop every process gets SIGTERM, and
 * SIGKILL if it outlives the deadline (its messages are redelivered after their lease).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { BotqueueConfig } from './config.js';
import type { Logger } from './logger.js';
import type { MetricsSnapshot } from '../observability/exposition.js';
import type { MetricsRequest, StartMessage, WorkerProcessMessage } from './worker-process.js';

/** How long a scrape waits for a worker process's metrics; a process that does not answer is left out. */
export const METRICS_TIMEOUT_MS = 2_000;

export const RESTART_DELAY_MS = 1_000;
export const MAX_RESTART_DELAY_MS = 30_000;
/** A process that ran this long before dying restarts after RESTART_DELAY_MS again. */
const STABLE_AFTER_MS = 60_000;

export interface SupervisorOptions {
  count: number;
  config: BotqueueConfig;
  logger: Logger;
  /** Human-readable lines (restarts). */
  out: (line: string) => void;
  cwd: string;
  env: NodeJS.ProcessEnv;
  restartDelayMs?: number;
}

interface Slot {
  index: number;
  child: ChildProcess | undefined;
  alive: boolean;
  startedAt: number;
  delayMs: number;
  timer: NodeJS.Timeout | undefined;
  exited: Promise<void>;
}

type StartOutcome = { ok: true } | { ok: false; reason: string };

export class Supervisor {
  private readonly slots: Slot[] = [];
  private stopping = false;
  /** True once start() succeeded: from then on a process that dies is restarted. */
  private running = false;
  private readonly restartDelayMs: number;
  private nextRequestId = 1;

  constructor(private readonly options: SupervisorOptions) {
    this.restartDelayMs = options.restartDelayMs ?? RESTART_DELAY_MS;
  }

  /** Pids of the live worker processes. */
  get pids(): number[] {
    return this.slots.filter((s) => s.alive && s.child?.pid !== undefined).map((s) => s.child!.pid!);
  }

  /**
   * Every live worker process's metrics (asked over IPC). A process that does not answer within
   * METRICS_TIMEOUT_MS (busy, or dying) is left out of this scrape rather than failing it.
   */
  async collectMetrics(timeoutMs = METRICS_TIMEOUT_MS): Promise<MetricsSnapshot[]> {
    const asks = this.slots
      .filter((slot) => slot.alive && slot.child?.connected === true)
      .map(
        (slot) =>
          new Promise<MetricsSnapshot | undefined>((resolve) => {
            const child = slot.child!;
            const requestId = this.nextRequestId++;
            const timer = setTimeout(() => done(undefined), timeoutMs);
            const onMessage = (message: WorkerProcessMessage): void => {
              if (message.type === 'metrics' && message.requestId === requestId) done(message.metrics);
            };
            const done = (snapshot: MetricsSnapshot | undefined): void => {
              clearTimeout(timer);
              child.off('message', onMessage);
              child.off('exit', onExit);
              resolve(snapshot);
            };
            const onExit = (): void => done(undefined);
            child.on('message', onMessage);
            child.once('exit', onExit);
            const request: MetricsRequest = { type: 'metrics', requestId };
            try {
              child.send(request, (error) => (error == null ? undefined : done(undefined)));
            } catch {
              done(undefined);
            }
          }),
      );
    return (await Promise.all(asks)).filter((s): s is MetricsSnapshot => s !== undefined);
  }

  /** Starts every process; resolves when all are ready, rejects if one cannot start (stop() then stops the others). */
  async start(): Promise<void> {
    for (let index = 1; index <= this.options.count; index++) {
      this.slots.push({ index, child: undefined, alive: false, startedAt: 0, delayMs: this.restartDelayMs, timer: undefined, exited: Promise.resolve() });
    }
    const outcomes = await Promise.all(this.slots.map((slot) => this.spawn(slot)));
    const failed = outcomes.findIndex((o) => !o.ok);
    if (failed !== -1) {
      const outcome = outcomes[failed] as { ok: false; reason: string };
      throw new Error(`worker process ${failed + 1} could not start: ${outcome.reason}`);
    }
    this.running = true;
  }

  /** SIGTERM to every process, SIGKILL to those still alive after `deadlineMs`. */
  async stop(deadlineMs: number): Promise<{ killed: number }> {
    this.stopping = true;
    for (const slot of this.slots) {
      if (slot.timer !== undefined) clearTimeout(slot.timer);
      if (slot.alive) slot.child?.kill('SIGTERM');
    }
    const all = Promise.all(this.slots.map((s) => s.exited));
    let timer: NodeJS.Timeout | undefined;
    const expired = await Promise.race([all.then(() => false), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), deadlineMs)))]);
    clearTimeout(timer);
    let killed = 0;
    if (expired) {
      for (const slot of this.slots) {
        if (!slot.alive) continue;
        killed++;
        this.options.logger.warn({ 'botqueue.worker': slot.index, 'process.pid': slot.child?.pid }, 'worker process outlived the shutdown deadline; killing it');
        slot.child?.kill('SIGKILL');
      }
      await all;
    }
    return { killed };
  }

  private spawn(slot: Slot): Promise<StartOutcome> {
    const { config, cwd, env, logger } = this.options;
    const child = fork(workerEntry(), [], {
      cwd,
      env,
      execArgv: workerExecArgv(),
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'json',
    });
    slot.child = child;
    slot.alive = true;
    slot.startedAt = Date.now();
    let ready = false;
    let settle: (outcome: StartOutcome) => void = () => undefined;
    const started = new Promise<StartOutcome>((resolve) => (settle = resolve));
    let fatal: string | undefined;

    child.on('message', (message: WorkerProcessMessage) => {
      if (message.type === 'ready') {
        ready = true;
        settle({ ok: true });
      } else if (message.type === 'fatal') {
        fatal = message.message;
        settle({ ok: false, reason: message.message });
      }
    });
    child.on('error', (error) => {
      logger.error({ error, 'botqueue.worker': slot.index }, 'worker process error');
      settle({ ok: false, reason: error.message });
    });
    slot.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        slot.alive = false;
        const how = signal === null ? `code ${code}` : `signal ${signal}`;
        settle({ ok: false, reason: fatal ?? `it exited with ${how} before it was ready` });
        resolve();
        // A process that fails its first start makes start() fail instead: a config or code error, not a crash to ride out.
        if (this.stopping || (!ready && !this.running)) return;
        this.scheduleRestart(slot, `worker process ${slot.index} (pid ${child.pid}) ${fatal === undefined ? `exited with ${how}` : `could not start: ${fatal}`}`);
      });
    });
    const message: StartMessage = { type: 'start', index: slot.index, config };
    child.send(message);
    return started;
  }

  private scheduleRestart(slot: Slot, what: string): void {
    if (Date.now() - slot.startedAt >= STABLE_AFTER_MS) slot.delayMs = this.restartDelayMs;
    const delay = slot.delayMs;
    slot.delayMs = Math.min(slot.delayMs * 2, MAX_RESTART_DELAY_MS);
    this.options.out(`${what}; restarting it in ${formatDelay(delay)}`);
    this.options.logger.warn({ 'botqueue.worker': slot.index, 'botqueue.restart_in_ms': delay }, `${what}; restarting it`);
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      if (this.stopping) return;
      void this.spawn(slot).then((outcome) => {
        if (outcome.ok && !this.stopping) this.options.out(`worker process ${slot.index} restarted (pid ${slot.child?.pid})`);
      });
    }, delay);
  }
}

function formatDelay(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}

/** The worker entry next to this file: the .ts source under tsx, the .js file when built. */
function workerEntry(): string {
  const fromSource = import.meta.url.endsWith('.ts');
  return fileURLToPath(new URL(fromSource ? './worker-process.ts' : './worker-process.js', import.meta.url));
}

/** Flags of the parent a worker process must not get: they would run other code or clash. */
const DROPPED_FLAGS = /^(-e|--eval|-p|--print|-i|--interactive|-c|--check|--input-type|--test.*|--watch.*|--inspect.*|--debug.*)(=|$)/;
const FLAGS_WITH_VALUE = new Set(['-e', '--eval', '-p', '--print', '--input-type']);

/**
 * The parent's Node flags (memory limits, --import of an instrumentation...), minus those that
 * run code or open a debugger port, plus tsx so that the entry (from source) and TypeScript
 * handler modules load; tsx is resolved from here, not from the working directory.
 */
export function workerExecArgv(parent: readonly string[] = process.execArgv): string[] {
  const args: string[] = [];
  for (let i = 0; i < parent.length; i++) {
    const arg = parent[i]!;
    if (DROPPED_FLAGS.test(arg)) {
      // Its value, when given as the next argument (execArgv holds flags only, never the script).
      const next = parent[i + 1];
      if (!arg.includes('=') && next !== undefined && (FLAGS_WITH_VALUE.has(arg) || !next.startsWith('-'))) i++;
      continue;
    }
    args.push(arg);
  }
  const hasTsx = args.some((arg, i) => (arg === '--import' || arg === '--loader') && /tsx/.test(args[i + 1] ?? '')) || args.some((arg) => /^--(import|loader)=.*tsx/.test(arg));
  if (!hasTsx) args.push('--import', import.meta.resolve('tsx'));
  return args;
}
