/**
 * `botqueue doctor`: checks what botqueue needs, one OK/FAIL line each, and exits 1 when any
 * fails. It opens the broker like any command, so on SQLite a missing data file is created.
 * The driver and URL checks follow the URL's backend: better-sqlite3 for sqlite: (and memory:),
 * amqplib and pg plus a shared store for amqp:/amqps:.
 */
import { constants, accessSync, existsSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import { connect, DEFAULT_URL, describeUrl, type UrlDescription } from '../client.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { redactSecrets } from '../core/redact.js';
import { GLOBAL_FLAGS_HELP, loadSettings, type Command, type CommandContext, type Flags } from './context.js';
import { CliError, formatError, oneLine } from './errors.js';
import { plural } from './output.js';

const help = `Usage: botqueue doctor [--json]

Checks, one line each (OK, FAIL or SKIP), and exits 1 when any fails:
  node         Node.js is 20 or newer
  config       the config file loads and is valid (or there is none)
  driver       sqlite: and memory: better-sqlite3 loads and is version 12.x;
               amqp: and amqps: amqplib and pg load
  url          the broker URL parses and names a supported backend; amqp: also needs a
               shared store (?store=postgres://... or BOTQUEUE_STORE_URL)
  data-dir     sqlite: the data directory exists or can be created, and is writable
  connect      connect(url) and stats() answer (within 10 s)

Flags:
  --json    print {"ok": .., "checks": [{"name","status","detail","fix"}]} (see docs/cli.md)

${GLOBAL_FLAGS_HELP}`;

export const command: Command = {
  summary: 'check Node, the backend drivers, the broker URL and the data directory',
  help,
  flags: { json: { type: 'boolean' } },
  run,
};

const CONNECT_TIMEOUT_MS = 10_000;

interface Check {
  name: string;
  status: 'ok' | 'fail' | 'skip';
  detail: string;
  /** What to do, for a failed check. */
  fix: string | null;
}

const ok = (name: string, detail: string): Check => ({ name, status: 'ok', detail, fix: null });
const fail = (name: string, detail: string, fix: string): Check => ({ name, status: 'fail', detail, fix });
const skip = (name: string, detail: string): Check => ({ name, status: 'skip', detail, fix: null });

/** The URL check, and for a SQLite file the directory and file the data-dir check looks at. */
interface UrlCheck {
  check: Check;
  dataDir?: string;
  file?: string;
}

function message(error: unknown): string {
  if (error instanceof BotqueueError || error instanceof CliError) return oneLine(formatError(error).replace(/^botqueue: /, '').replace(/ — .*$/, ''));
  return oneLine(error instanceof Error ? error.message : String(error));
}

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  flags.expectPositionals(0, 0, '');
  const checks: Check[] = [];
  checks.push(checkNode());
  let url = ctx.globals.url ?? ctx.io.env.BOTQUEUE_URL ?? DEFAULT_URL;
  try {
    const settings = await loadSettings(ctx);
    url = settings.url;
    checks.push(ok('config', settings.configPath === undefined ? 'no config file; using defaults and environment variables' : settings.configPath));
  } catch (error) {
    checks.push(fail('config', message(error), error instanceof CliError ? error.hint : 'fix the config file'));
  }
  // The client reads the URL (each backend's own parser); the CLI never reaches into a backend.
  const described = await describeUrl(url, ctx.io.env);
  const amqp = described.backend === 'rabbitmq';
  const kafka = described.backend === 'kafka';
  checks.push(amqp ? checkAmqpDrivers() : kafka ? checkKafkaDrivers() : checkDriver());
  const urlCheck: UrlCheck = amqp ? checkAmqpUrl(described) : kafka ? checkKafkaUrl(described) : checkUrl(described, ctx.io.cwd);
  checks.push(urlCheck.check);
  const dataDir = urlCheck.dataDir === undefined ? skip('data-dir', 'not a file-based backend') : checkDataDir(urlCheck.dataDir, urlCheck.file!);
  checks.push(dataDir);
  // Opening a file whose directory cannot be made fails anyway (and Node's recursive mkdir
  // never returns under some paths, e.g. /proc): one FAIL for one cause.
  if (urlCheck.check.status === 'fail') checks.push(skip('connect', 'the URL is not usable'));
  else if (dataDir.status === 'fail') checks.push(skip('connect', 'the data directory is not usable'));
  else checks.push(await checkConnect(url));
  // A check's detail may quote an error, and an error may quote a URL or a password.
  for (const check of checks) check.detail = redactSecrets(check.detail, ...ctx.secrets);

  const failed = checks.filter((c) => c.status === 'fail');
  if (flags.boolean('json')) ctx.out.json({ ok: failed.length === 0, checks });
  else {
    for (const c of checks) {
      const status = c.status === 'ok' ? 'OK  ' : c.status === 'fail' ? 'FAIL' : 'SKIP';
      ctx.out.line(`${status}  ${c.name.padEnd(9)} ${c.detail}${c.fix === null ? '' : ` — ${c.fix}`}`);
    }
  }
  if (failed.length > 0) {
    throw new CliError(`${plural(failed.length, 'check')} failed (${failed.map((c) => c.name).join(', ')})`, 'fix what the FAIL lines say, then run botqueue doctor again');
  }
  if (!flags.boolean('json')) ctx.out.line('all checks passed');
  return 0;
}

function checkNode(): Check {
  const major = Number(process.versions.node.split('.')[0]);
  return major >= 20 ? ok('node', `v${process.versions.node} (20 or newer needed)`) : fail('node', `v${process.versions.node} is too old`, 'install Node.js 20 or newer');
}

function checkDriver(): Check {
  const require = createRequire(import.meta.url);
  let version: string;
  try {
    version = (require('better-sqlite3/package.json') as { version: string }).version;
  } catch (error) {
    return fail('driver', `better-sqlite3 is not installed (${message(error)})`, 'run npm install in the project');
  }
  if (!version.startsWith('12.')) {
    return fail('driver', `better-sqlite3 ${version} is installed; botqueue needs 12.x (13 needs Node 22 and crashes on 20)`, 'npm install better-sqlite3@12');
  }
  try {
    const Database = require('better-sqlite3') as typeof BetterSqlite3;
    const db = new Database(':memory:');
    const sqlite = db.prepare<[], string>('SELECT sqlite_version()').pluck().get();
    db.close();
    return ok('driver', `better-sqlite3 ${version} loads (SQLite ${sqlite ?? '?'})`);
  } catch (error) {
    return fail('driver', `better-sqlite3 ${version} does not load: ${message(error)}`, 'rebuild it for this Node: npm rebuild better-sqlite3');
  }
}

/**
 * The version of an installed package, read from its package.json found by walking up from its
 * resolved entry point (amqplib does not export ./package.json, so require() cannot load it).
 */
function packageVersion(require: NodeJS.Require, name: string): string {
  let dir = dirname(require.resolve(name));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const manifest = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (manifest.name === name && typeof manifest.version === 'string') return manifest.version;
    }
    const parent = dirname(dir);
    if (parent === dir) return '?';
    dir = parent;
  }
}

/** The RabbitMQ backend's drivers: amqplib (AMQP 0-9-1) and pg (the shared store), both optional dependencies. */
function checkAmqpDrivers(): Check {
  const require = createRequire(import.meta.url);
  const loaded: string[] = [];
  const missing: string[] = [];
  for (const name of ['amqplib', 'pg']) {
    try {
      require(name);
      loaded.push(`${name} ${packageVersion(require, name)}`);
    } catch (error) {
      missing.push(`${name} (${message(error)})`);
    }
  }
  if (missing.length > 0) {
    return fail('driver', `the RabbitMQ backend needs amqplib and pg; ${missing.join(' and ')} ${missing.length === 1 ? 'does' : 'do'} not load`, 'run npm install amqplib pg in the project (they are optional dependencies)');
  }
  return ok('driver', `${loaded.join(' and ')} load`);
}

/** The Kafka backend's drivers: kafkajs (the Kafka protocol) and pg (the shared store), both optional dependencies. */
function checkKafkaDrivers(): Check {
  const require = createRequire(import.meta.url);
  const loaded: string[] = [];
  const missing: string[] = [];
  for (const name of ['kafkajs', 'pg']) {
    try {
      require(name);
      loaded.push(`${name} ${packageVersion(require, name)}`);
    } catch (error) {
      missing.push(`${name} (${message(error)})`);
    }
  }
  if (missing.length > 0) {
    return fail('driver', `the Kafka backend needs kafkajs and pg; ${missing.join(' and ')} ${missing.length === 1 ? 'does' : 'do'} not load`, 'run npm install kafkajs@2.2.4 pg in the project (they are optional dependencies)');
  }
  return ok('driver', `${loaded.join(' and ')} load`);
}

function checkKafkaUrl(url: UrlDescription): UrlCheck {
  const { error, store } = url;
  if (error === undefined && store !== undefined) {
    return { check: ok('url', `${url.url} (Kafka, namespace ${url.namespace ?? '?'}, store ${store.url} from ${store.from === 'url' ? '?store=' : 'BOTQUEUE_STORE_URL'})`) };
  }
  if (error?.code === ErrorCodes.STORE_REQUIRED) {
    return { check: fail('url', `${url.url}: no shared store; the Kafka backend keeps deduplication, leases and dead letters in PostgreSQL (${ErrorCodes.STORE_REQUIRED})`, 'set BOTQUEUE_STORE_URL=postgres://user@host:5432/db, or add ?store=postgres://... to the URL') };
  }
  return { check: fail('url', message(error), 'write it as kafka://host:9092[,host:9092...]?namespace=<ns>&store=postgres://user@host:5432/db') };
}

function checkAmqpUrl(url: UrlDescription): UrlCheck {
  const shown = url.url;
  const { error, store } = url;
  if (error === undefined && store !== undefined) {
    const from = `${store.url} (from ${store.from === 'url' ? '?store=' : 'BOTQUEUE_STORE_URL'})`;
    return { check: ok('url', `${shown} (RabbitMQ, namespace ${url.namespace ?? '?'}, store ${from})`) };
  }
  if (error?.code === ErrorCodes.STORE_REQUIRED) {
    return {
      check: fail(
        'url',
        `${shown}: no shared store; the RabbitMQ backend keeps deduplication, leases and dead letters in PostgreSQL (${ErrorCodes.STORE_REQUIRED})`,
        'set BOTQUEUE_STORE_URL=postgres://user@host:5432/db, or add ?store=postgres://... to the URL',
      ),
    };
  }
  return { check: fail('url', message(error), 'write it as amqp://user:pass@host:5672[/vhost]?namespace=<ns>&store=postgres://user@host:5432/db') };
}

function checkUrl(url: UrlDescription, cwd: string): UrlCheck {
  const shown = url.url;
  if (url.backend === 'memory') {
    if (url.error !== undefined) return { check: fail('url', message(url.error), 'write it as memory: or memory:<name> (no parameters)') };
    return { check: ok('url', `${shown} (in-process memory: nothing survives the process)`) };
  }
  if (url.backend !== 'sqlite') {
    return { check: fail('url', `${shown}: unsupported scheme${url.scheme === undefined ? '' : ` ${url.scheme}`}`, 'use sqlite:<path> (the default, sqlite:./data/botqueue.db), memory: or amqp://user:pass@host:5672?store=postgres://..., in --url or BOTQUEUE_URL') };
  }
  if (url.error !== undefined || url.path === undefined) {
    return { check: fail('url', message(url.error), 'write it as sqlite:<path>[?synchronous=FULL|NORMAL&busyTimeoutMs=N]') };
  }
  if (url.path === ':memory:') return { check: ok('url', `${shown} (in-memory SQLite: nothing survives the process)`) };
  const file = resolve(cwd, url.path);
  return { check: ok('url', `${shown} → ${file}`), dataDir: dirname(file), file };
}

/** The directory exists (or its nearest existing parent does) and a file can be created in it. */
function checkDataDir(dir: string, file: string): Check {
  let existing = dir;
  while (!existsSync(existing)) {
    const parent = dirname(existing);
    if (parent === existing) break;
    existing = parent;
  }
  const fix = 'point --url or BOTQUEUE_URL at a directory this user can write, or fix its permissions';
  try {
    if (!statSync(existing).isDirectory()) return fail('data-dir', `${dir} cannot be created: ${existing} is not a directory`, fix);
  } catch (error) {
    return fail('data-dir', `${existing}: ${message(error)}`, fix);
  }
  const probe = join(existing, `.botqueue-doctor-${process.pid}`);
  try {
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (error) {
    return fail('data-dir', existing === dir ? `${dir} is not writable (${message(error)})` : `${dir} cannot be created: ${existing} is not writable (${message(error)})`, fix);
  }
  if (existsSync(file)) {
    try {
      accessSync(file, constants.R_OK | constants.W_OK);
    } catch (error) {
      return fail('data-dir', `${file} is not readable and writable (${message(error)})`, fix);
    }
  }
  return ok('data-dir', existing === dir ? `${dir} is writable` : `${dir} does not exist yet; it will be created in ${existing}, which is writable`);
}

async function checkConnect(url: string): Promise<Check> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS / 1000} s`)), CONNECT_TIMEOUT_MS);
    timer.unref();
  });
  try {
    const topics = await Promise.race([
      (async () => {
        const bq = await connect(url);
        try {
          return (await bq.stats()).length;
        } finally {
          await bq.close();
        }
      })(),
      timeout,
    ]);
    return ok('connect', `connected and read stats (${plural(topics, 'topic')})`);
  } catch (error) {
    return fail('connect', message(error), 'check the URL and that the broker is up and reachable');
  } finally {
    clearTimeout(timer);
  }
}
