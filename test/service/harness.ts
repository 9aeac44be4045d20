/**
 * Runs the real service (`runStart` from source, in a child process, in a temporary working
 * directory with its own config and SQLite file) and talks to it over real HTTP.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { waitFor } from '../conformance/harness.js';

export { sleep, waitFor, orderViolations } from '../conformance/harness.js';

const here = dirname(fileURLToPath(import.meta.url));
export const ROOT = join(here, '..', '..');
export const START = join(here, 'fixtures', 'start.ts');
export const TEST_HANDLERS = join(here, 'fixtures', 'handlers.ts');
export const ECHO_BOT = join(ROOT, 'examples', 'echo-bot', 'handlers.ts');
/** tsx by absolute URL: the children run in temporary directories without node_modules. */
export const TSX = import.meta.resolve('tsx');
export const TOKEN = 'test-admin-token-0123456789abcdef';

const services = new Set<ServiceProcess>();
const dirs: string[] = [];

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-service-'));
  dirs.push(dir);
  return dir;
}

/** Kills what is still running and removes the temporary directories; call it in `after`. */
export async function cleanup(): Promise<void> {
  await Promise.all([...services].map((s) => s.kill()));
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export function writeJsonConfig(dir: string, config: object): void {
  rmSync(join(dir, 'botqueue.config.ts'), { force: true });
  writeFileSync(join(dir, 'botqueue.config.json'), JSON.stringify(config, null, 2));
}

/**
 * The environment of a service: none of the caller's BOTQUEUE_* settings, a free port, quiet
 * logs (TEST_SERVICE_LOG_LEVEL=debug shows them all in a failing test's output).
 */
export function serviceEnv(dir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('BOTQUEUE_') && !name.startsWith('TEST_')) env[name] = value;
  return { ...env, BOTQUEUE_URL: `sqlite:${join(dir, 'bq.db')}`, BOTQUEUE_PORT: '0', BOTQUEUE_LOG_LEVEL: process.env.TEST_SERVICE_LOG_LEVEL ?? 'warn', ...extra };
}

/** One `botqueue start` process and what it printed. */
export class ServiceProcess {
  readonly lines: string[] = [];
  /** What the process wrote to stdout (JSON log lines only). */
  readonly stdoutLines: string[] = [];
  readonly proc: ChildProcessWithoutNullStreams;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';
  private alive = true;
  url = '';

  constructor(
    readonly dir: string,
    env: NodeJS.ProcessEnv,
    workers?: number,
  ) {
    const args = ['--import', TSX, START];
    if (workers !== undefined) args.push(String(workers));
    this.proc = spawn(process.execPath, args, { cwd: dir, env, stdio: ['pipe', 'pipe', 'pipe'] });
    // stdout: JSON log lines only; stderr: the banner and other human lines. Both land in `lines`.
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      this.lines.push(line);
      this.stdoutLines.push(line);
    });
    createInterface({ input: this.proc.stderr }).on('line', (line) => {
      this.lines.push(line);
      this.stderr = `${this.stderr}${line}\n`.slice(-8_000);
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.alive = false;
        services.delete(this);
        resolve({ code, signal });
      });
    });
    services.add(this);
  }

  get running(): boolean {
    return this.alive;
  }

  /** Plain-text lines (the JSON log lines left out). */
  get output(): string[] {
    return this.lines.filter((l) => !l.startsWith('{'));
  }

  /** Waits for a printed line matching `pattern`; fails at once, with the output, if the process exits first. */
  async waitLine(pattern: RegExp, timeoutMs = 20_000): Promise<RegExpExecArray> {
    let match: RegExpExecArray | null = null;
    await waitFor(
      `a line matching ${pattern}`,
      () => {
        for (const line of this.lines) {
          match = pattern.exec(line);
          if (match !== null) return true;
        }
        if (!this.alive) throw new Error(`the service exited before printing ${pattern}\n${this.describe()}`);
        return false;
      },
      timeoutMs,
    );
    return match!;
  }

  /** Waits until the service printed its HTTP URL. */
  async started(): Promise<this> {
    const match = await this.waitLine(/^\s+http\s+(http:\/\/\S+)/);
    this.url = match[1]!;
    await this.waitLine(/^\s+stop\s/);
    return this;
  }

  /** Sends the signal and waits for the exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.alive) this.proc.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      this.exited,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new Error(`the service did not exit within ${timeoutMs} ms of ${signal}\n${this.describe()}`)), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return result;
  }

  async kill(): Promise<void> {
    if (!this.alive) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  describe(): string {
    return `--- stdout (last lines)\n${this.lines.slice(-40).join('\n')}\n--- stderr\n${this.stderr}`;
  }

  fetch(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.url}${path}`, init);
  }

  /** POSTs `body` (an object, serialised; or a string, sent as is) to the publish route. */
  publish(topic: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch(`/v1/topics/${encodeURIComponent(topic)}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
  }
}

export async function startService(dir: string, env: NodeJS.ProcessEnv, workers?: number): Promise<ServiceProcess> {
  const service = new ServiceProcess(dir, env, workers);
  return service.started();
}

export interface Handled {
  key: string;
  n: number;
  id: string;
  pid: number;
}

/** The lines the test handler appended: `<key> <n> <id> <pid>`. */
export function readHandled(file: string): Handled[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [key, n, id, pid] = line.split(' ');
      return { key: key!, n: Number(n), id: id!, pid: Number(pid) };
    });
}

/** Per key, the n values must strictly increase: in order, each once. */
export function strictOrderProblems(events: Handled[]): string[] {
  const last = new Map<string, number>();
  const problems: string[] = [];
  for (const { key, n } of events) {
    const before = last.get(key);
    if (before !== undefined && n <= before) problems.push(`${key}: ${n} after ${before}`);
    last.set(key, n);
  }
  return problems;
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface Span extends Handled {
  edge: 'start' | 'end';
}

/** The lines of TEST_HANDLER_SPAN_LOG: `start|end <key> <n> <id> <pid>`, in the order they happened. */
export function readSpans(file: string): Span[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => {
      const [edge, key, n, id, pid] = line.split(' ');
      return { edge: edge as 'start' | 'end', key: key!, n: Number(n), id: id!, pid: Number(pid) };
    });
}

/**
 * Per key, a handler may start only when no other handler of that key is running. A span left
 * open by a process in `killed` (SIGKILLed mid-handler) ends with that process.
 */
export function overlapProblems(spans: Span[], killed: ReadonlySet<number> = new Set()): string[] {
  const open = new Map<string, Span>();
  const problems: string[] = [];
  for (const span of spans) {
    const running = open.get(span.key);
    if (span.edge === 'start') {
      if (running !== undefined && !killed.has(running.pid)) problems.push(`${span.key}: ${span.id} started while ${running.id} was running`);
      open.set(span.key, span);
    } else if (running?.id === span.id) open.delete(span.key);
  }
  return problems;
}

/**
 * At least once, strictly ordered: a message may be handled again (after a crash), but the first
 * handling of each message follows the first handling of every earlier message of its key.
 */
export function firstHandlingOrderProblems(events: Handled[]): string[] {
  const seen = new Set<string>();
  return strictOrderProblems(events.filter((e) => !seen.has(e.id) && seen.add(e.id) !== undefined));
}
