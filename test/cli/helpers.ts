/**
 * Runs the real CLI as a child process (`node --import tsx src/cli/run.ts ...`), in a temporary
 * working directory, against a temporary SQLite file given in BOTQUEUE_URL.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Botqueue } from '../../src/client.js';
import type { Envelope } from '../../src/core/envelope.js';
import type { Handler } from '../../src/worker/worker.js';

export const root = fileURLToPath(new URL('../..', import.meta.url));
const entry = join(root, 'src/cli/run.ts');
/** Absolute, because the child runs in a temporary directory where `tsx` would not resolve. */
const tsx = import.meta.resolve('tsx');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Non-empty lines of stderr. */
  errorLines: string[];
}

export interface Workspace {
  dir: string;
  url: string;
  /** The environment the CLI runs with (BOTQUEUE_URL set, no other BOTQUEUE_*). */
  env: NodeJS.ProcessEnv;
  run(args: string[], options?: { input?: string; env?: NodeJS.ProcessEnv; cwd?: string }): Promise<CliResult>;
  /** Parses stdout as JSON, failing the test with the output when it is not. */
  json(args: string[], options?: { input?: string }): Promise<unknown>;
  client(): Promise<Botqueue>;
  cleanup(): void;
}

/** The environment without any BOTQUEUE_* of the developer's shell. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('BOTQUEUE_')) env[name] = value;
  return env;
}

/** Starts the CLI without waiting for it (for `start`); the caller ends it. */
export function spawnCli(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv }): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['--import', tsx, entry, ...args], { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
}

export function runCli(args: string[], options: { cwd: string; env: NodeJS.ProcessEnv; input?: string }): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', tsx, entry, ...args], { cwd: options.cwd, env: options.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, errorLines: stderr.split('\n').filter((line) => line.trim() !== '') }));
    child.stdin.on('error', () => undefined); // the CLI may exit before reading all of stdin
    child.stdin.end(options.input ?? '');
  });
}

export function workspace(name: string): Workspace {
  const dir = mkdtempSync(join(tmpdir(), `botqueue-cli-${name}-`));
  const url = `sqlite:${join(dir, 'bq.db')}`;
  const env = { ...cleanEnv(), BOTQUEUE_URL: url };
  const ws: Workspace = {
    dir,
    url,
    env,
    run: (args, options = {}) => runCli(args, { cwd: options.cwd ?? dir, env: { ...env, ...options.env }, input: options.input }),
    json: async (args, options = {}) => {
      const result = await ws.run(args, options);
      if (result.code !== 0) throw new Error(`botqueue ${args.join(' ')} exited ${result.code}: ${result.stderr}`);
      try {
        return JSON.parse(result.stdout) as unknown;
      } catch {
        throw new Error(`botqueue ${args.join(' ')} did not print JSON:\n${result.stdout}`);
      }
    },
    client: () => connect(url),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
  return ws;
}

/**
 * Runs a worker until `done(received)` is true (or the timeout passes), then closes it;
 * resolves to the messages it handled, in the order the handler saw them.
 */
export async function consume(
  bq: Botqueue,
  topic: string,
  done: (received: Envelope[]) => boolean,
  options: { group?: string; handler?: Handler; timeoutMs?: number } = {},
): Promise<Envelope[]> {
  const received: Envelope[] = [];
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const worker = bq.worker(
    topic,
    async (message, ctx) => {
      received.push(message);
      if (options.handler !== undefined) await options.handler(message, ctx);
      if (done(received)) finish();
    },
    { group: options.group ?? 'check' },
  );
  const timer = setTimeout(finish, options.timeoutMs ?? 10_000);
  await finished;
  clearTimeout(timer);
  await worker.close();
  return received;
}
