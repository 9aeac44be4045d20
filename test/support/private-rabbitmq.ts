/**
 * A private, throw-away RabbitMQ node for tests that must stop, kill or restart the broker.
 *
 * The machine's shared broker (rabbit@localhost on 5672) is used by other suites and must never be
 * touched, so this node gets its own node name, AMQP port, distribution port, data, log, config and
 * plugin files under a temp dir. Only epmd is shared: several nodes may register with one epmd.
 *
 * How it is launched, and why (found by experiment on Debian's rabbitmq-server 3.10.8):
 * - Debian's /usr/sbin/rabbitmq-server is a wrapper that, run as root, re-runs the real script as
 *   the `rabbitmq` user via `su` and sends its output to /var/log/rabbitmq. The real scripts in
 *   /usr/lib/rabbitmq/bin run as the current user, so we use those: files stay ours and the process
 *   we spawn is the node's parent.
 * - rabbitmq-server runs in the foreground (no -detached) in its own process group: the script
 *   stays as the beam's parent, so we see the node exit (early boot failures fail fast) and can
 *   kill the whole group if something is left behind.
 * - RABBITMQ_CONF_ENV_FILE points at our own (empty) file so the script does not source the shared
 *   node's /etc/rabbitmq/rabbitmq-env.conf (NODENAME=rabbit@localhost, ERL_FLAGS; RABBITMQ_NODENAME
 *   does win over its NODENAME, but nothing of the shared setup should leak in). Likewise every
 *   file path defaulting into /etc/rabbitmq is set: RABBITMQ_CONFIG_FILES, for one, otherwise
 *   defaults to /etc/rabbitmq/conf.d/*.conf.
 * - The environment is built from scratch rather than inherited: rabbit_env reads every
 *   RABBITMQ_X variable and, when unset, the bare X too (NODENAME, LOGS, NODE_PORT...), so stray
 *   variables in a CI environment would leak into the node.
 * - HOME points at a temp dir holding a copy of the machine's Erlang cookie: as root, HOME=/root has
 *   no cookie and Erlang would create a different one there, and then the machine's `rabbitmqctl`
 *   (which on Debian runs as the rabbitmq user with /var/lib/rabbitmq/.erlang.cookie) could not
 *   reach the node.
 *
 * Failures (boot errors, timeouts) throw with the node's first [error] lines and log tails. Set
 * BOTQUEUE_RABBIT_DEBUG=1 to log boot times and keep the temp dir (data and logs) after destroy().
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type AddressInfo } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';

export interface PrivateRabbit {
  /** amqp://guest:<password, default guest>@127.0.0.1:<amqpPort> */
  url: string;
  amqpPort: number;
  /** e.g. bqtest-1234-a1b2c3@localhost; `rabbitmqctl -n <nodename> status` works from a root shell. */
  nodename: string;
  /** The temp dir holding data (mnesia/), logs (log/) and config; removed by destroy(). */
  dir: string;
  /** Graceful stop (`rabbitmqctl stop`); resolves once the VM has exited and the AMQP port is closed. */
  stop(): Promise<void>;
  /** Starts the node on the same data dir; resolves once it accepts an AMQP connection. No-op if running. */
  start(): Promise<void>;
  /** stop() then start(): durable data (quorum queues, persistent messages) survives. */
  restart(): Promise<void>;
  /** SIGKILLs the Erlang VM (a crash, no clean shutdown); resolves once it is gone. */
  kill(): Promise<void>;
  /** Stops (or, failing that, kills) the node and removes its temp dir. The object is unusable after. */
  destroy(): Promise<void>;
}

export interface PrivateRabbitOptions {
  /** How long start() waits for the node to accept AMQP. A first boot takes ~6 s here; CI runners can be slower. */
  startTimeoutMs?: number;
  /** How long stop() waits for a graceful shutdown before it SIGKILLs the node and fails. */
  stopTimeoutMs?: number;
  /**
   * The password of the node's guest user (default guest): a test that looks for a password in
   * botqueue's output needs one that differs from the user name. Letters and digits only, as it
   * is written into rabbitmq.conf unquoted.
   */
  password?: string;
}

interface Scripts {
  server: string;
  ctl: string;
}

/**
 * The real rabbitmq-server / rabbitmqctl scripts, or undefined when RabbitMQ is not installed.
 * BOTQUEUE_RABBITMQ_SCRIPTS_DIR overrides the search (a dir holding both scripts).
 */
export function findRabbitmqScripts(): Scripts | undefined {
  const dirs: string[] = [];
  const override = process.env.BOTQUEUE_RABBITMQ_SCRIPTS_DIR;
  if (override) dirs.push(override);
  // Debian/Ubuntu and RPM packages: the real scripts; /usr/sbin only holds su wrappers (see above).
  dirs.push('/usr/lib/rabbitmq/bin');
  // Generic unix tarball, Homebrew and the like: the scripts on PATH are the real ones.
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, 'rabbitmq-server');
    if (dir && isExecutable(candidate)) dirs.push(dirname(realpathSync(candidate)));
  }
  for (const dir of dirs) {
    const server = join(dir, 'rabbitmq-server');
    const ctl = join(dir, 'rabbitmqctl');
    if (isExecutable(server) && isExecutable(ctl)) return { server, ctl };
  }
  return undefined;
}

export async function startPrivateRabbit(options: PrivateRabbitOptions = {}): Promise<PrivateRabbit> {
  const scripts = findRabbitmqScripts();
  if (!scripts) throw new Error('rabbitmq-server is not installed (looked in /usr/lib/rabbitmq/bin and on PATH)');
  // Ports are picked before the node exists and are only ours once it binds them; if another
  // process grabs one in between, the boot fails and the error shows it in the log tail.
  const [amqpPort, distPort] = await freePorts(2);
  const password = options.password ?? 'guest';
  if (!/^[A-Za-z0-9]+$/.test(password)) throw new Error('startPrivateRabbit: the password must be letters and digits only');
  const node = new Node(scripts, amqpPort!, distPort!, options.startTimeoutMs ?? 60_000, options.stopTimeoutMs ?? 30_000, password);
  try {
    await node.start();
  } catch (error) {
    // The error already carries the log tails; leave nothing running or on disk behind.
    await node.destroy().catch(() => undefined);
    throw error;
  }
  return node;
}

/** Nodes not yet destroyed, so a test process that exits early does not leave brokers running. */
const live = new Set<Node>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous: SIGKILL is, and a half-removed temp dir is harmless.
  process.on('exit', () => {
    for (const node of live) {
      node.killNow();
      removeDir(node.dir);
    }
  });
}

class Node implements PrivateRabbit {
  readonly url: string;
  readonly amqpPort: number;
  readonly nodename: string;
  readonly dir: string;
  private readonly env: NodeJS.ProcessEnv;
  private readonly consoleLog: string;
  private readonly nodeLog: string;
  private readonly pidFile: string;
  private child: ChildProcess | undefined;
  /** Resolves when `child` exits; set together with it. */
  private exited: Promise<string> | undefined;
  private beamPid: number | undefined;
  private destroyed = false;
  /** Log sizes when the current boot began: failure messages quote only this boot's lines. */
  private logMarks = { console: 0, node: 0 };

  constructor(
    private readonly scripts: Scripts,
    amqpPort: number,
    distPort: number,
    private readonly startTimeoutMs: number,
    private readonly stopTimeoutMs: number,
    password: string,
  ) {
    this.amqpPort = amqpPort;
    this.nodename = `bqtest-${process.pid}-${randomBytes(3).toString('hex')}@localhost`;
    this.url = `amqp://guest:${password}@127.0.0.1:${amqpPort}`;
    this.dir = mkdtempSync(join(tmpdir(), 'botqueue-rabbit-'));
    const home = join(this.dir, 'home');
    const logBase = join(this.dir, 'log');
    for (const sub of [home, logBase, join(this.dir, 'mnesia'), join(this.dir, 'conf.d')]) mkdirSync(sub);
    writeFileSync(join(home, '.erlang.cookie'), machineCookie(), { mode: 0o400 });
    writeFileSync(join(this.dir, 'rabbitmq-env.conf'), '# intentionally empty: keeps /etc/rabbitmq/rabbitmq-env.conf out\n');
    writeFileSync(join(this.dir, 'enabled_plugins'), '[].\n'); // no management plugin, so no 15672 listener
    writeFileSync(
      join(this.dir, 'rabbitmq.conf'),
      [
        `listeners.tcp.1 = 127.0.0.1:${amqpPort}`,
        // Read at the first boot only, when the node creates its default user.
        `default_pass = ${password}`,
        // A nearly full /tmp on a CI runner must not raise the disk alarm and block publishers.
        'disk_free_limit.absolute = 10MB',
        '',
      ].join('\n'),
    );
    this.consoleLog = join(logBase, 'console.log');
    this.nodeLog = join(logBase, 'node.log');
    this.pidFile = join(this.dir, 'rabbit.pid');
    this.env = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      LANG: process.env.LANG ?? 'C.UTF-8',
      HOME: home,
      ERL_CRASH_DUMP: join(logBase, 'erl_crash.dump'),
      // As in the machine's rabbitmq-env.conf: epmd and distribution on loopback only.
      ERL_EPMD_ADDRESS: '127.0.0.1',
      ERL_FLAGS: '-kernel inet_dist_use_interface {127,0,0,1}',
      RABBITMQ_NODENAME: this.nodename,
      RABBITMQ_DIST_PORT: String(distPort),
      RABBITMQ_CONF_ENV_FILE: join(this.dir, 'rabbitmq-env.conf'),
      RABBITMQ_CONFIG_FILE: join(this.dir, 'rabbitmq.conf'),
      RABBITMQ_CONFIG_FILES: join(this.dir, 'conf.d', '*.conf'),
      RABBITMQ_ADVANCED_CONFIG_FILE: join(this.dir, 'advanced.config'), // absent on purpose
      RABBITMQ_ENABLED_PLUGINS_FILE: join(this.dir, 'enabled_plugins'),
      RABBITMQ_MNESIA_BASE: join(this.dir, 'mnesia'),
      RABBITMQ_LOG_BASE: logBase,
      RABBITMQ_LOGS: this.nodeLog,
      RABBITMQ_PID_FILE: this.pidFile,
    };
    live.add(this);
    installExitHook();
  }

  async start(): Promise<void> {
    if (this.destroyed) throw new Error(`${this.nodename} was destroyed`);
    if (this.child) return;
    const started = Date.now();
    const deadline = started + this.startTimeoutMs;
    // A pid file left by kill() names a dead VM whose pid may since have been reused: never signal it.
    rmSync(this.pidFile, { force: true });
    this.logMarks = { console: sizeOf(this.consoleLog), node: sizeOf(this.nodeLog) };
    const out = openSync(this.consoleLog, 'a');
    const child = spawn(this.scripts.server, [], { cwd: this.dir, env: this.env, detached: true, stdio: ['ignore', out, out] });
    closeSync(out);
    this.child = child;
    this.beamPid = undefined;
    this.exited = new Promise((resolve) => {
      child.once('error', (error) => resolve(`could not run ${this.scripts.server}: ${error.message}`));
      child.once('exit', (code, signal) => resolve(signal ? `killed by ${signal}` : `exited with code ${code}`));
    });
    const exited = this.exited;
    void exited.then(() => {
      if (this.child === child) this.child = undefined;
    });
    let lastError: string;
    for (;;) {
      const outcome = await within(exited.then((how) => ({ how })), 250);
      if (outcome) throw new Error(`private RabbitMQ ${this.nodename} ${outcome.how} before accepting AMQP${this.logTails()}`);
      const probe = await amqpProbe(this.url);
      if (probe === true) break;
      lastError = probe;
      if (Date.now() > deadline) {
        this.killNow();
        await exited;
        throw new Error(
          `private RabbitMQ ${this.nodename} did not accept AMQP on 127.0.0.1:${this.amqpPort} within ${this.startTimeoutMs} ms (last error: ${lastError}); killed it${this.logTails()}`,
        );
      }
    }
    this.beamPid = readPid(this.pidFile);
    if (process.env.BOTQUEUE_RABBIT_DEBUG) console.error(`[private-rabbitmq] ${this.nodename} up on ${this.amqpPort} in ${Date.now() - started} ms`);
  }

  async stop(): Promise<void> {
    const child = this.child;
    const exited = this.exited;
    if (!child || !exited) return;
    const deadline = Date.now() + this.stopTimeoutMs;
    // Half the budget at most, so a hung rabbitmqctl still leaves time for the SIGTERM fallback.
    const ctl = await this.rabbitmqctl(['stop'], this.stopTimeoutMs / 2);
    if (ctl !== true) {
      // Distribution trouble (cookie, epmd): fall back to SIGTERM, which the script turns into a clean stop.
      signalGroup(child, 'SIGTERM');
    }
    const how = await within(exited, deadline - Date.now());
    if (how === undefined) {
      this.killNow();
      await exited;
      throw new Error(
        `private RabbitMQ ${this.nodename} did not stop within ${this.stopTimeoutMs} ms (rabbitmqctl stop: ${ctl === true ? 'ok' : ctl}); killed it${this.logTails()}`,
      );
    }
    await this.waitUntilGone(deadline);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async kill(): Promise<void> {
    const exited = this.exited;
    if (!this.child || !exited) return;
    this.killNow();
    await exited;
    await this.waitUntilGone(Date.now() + this.stopTimeoutMs);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    try {
      await this.stop();
    } catch {
      // stop() already killed the node when it failed; destroy's job is only to leave nothing behind.
    } finally {
      this.killNow();
      this.destroyed = true;
      live.delete(this);
      removeDir(this.dir);
    }
  }

  /** SIGKILL the VM and the script's process group, synchronously (also used from the exit hook). */
  killNow(): void {
    // Only while our script is running: the pids are then known to belong to this node.
    if (!this.child) return;
    const pid = this.beamPid ?? readPid(this.pidFile);
    if (pid !== undefined) trySignal(pid, 'SIGKILL');
    signalGroup(this.child, 'SIGKILL');
  }

  /** Resolves once the VM process is gone and the AMQP port refuses connections. */
  private async waitUntilGone(deadline: number): Promise<void> {
    // The script exits once the VM does, but after a group kill the VM may outlive it briefly.
    const pid = this.beamPid;
    while ((pid !== undefined && isAlive(pid)) || (await portAccepts(this.amqpPort))) {
      if (Date.now() > deadline) {
        throw new Error(`private RabbitMQ ${this.nodename}: the VM (pid ${pid}) or port ${this.amqpPort} is still alive after stopping${this.logTails()}`);
      }
      await sleep(50);
    }
  }

  /** Runs rabbitmqctl -n <node> with the node's environment; true on success, else a description. */
  private rabbitmqctl(args: string[], timeoutMs: number): Promise<true | string> {
    return new Promise((resolve) => {
      execFile(this.scripts.ctl, ['-n', this.nodename, ...args], { cwd: this.dir, env: this.env, timeout: timeoutMs }, (error, stdout, stderr) => {
        resolve(error ? `${error.message.trim()} ${stdout.trim()} ${stderr.trim()}`.trim() : true);
      });
    });
  }

  /** What a failure message needs from this boot's logs: the first [error] lines (the cause; later ones are consequences) and the tails. */
  private logTails(): string {
    const nodeLog = readText(this.nodeLog, this.logMarks.node);
    const errors = nodeLog
      .split('\n')
      .filter((line) => line.includes('[error]'))
      .slice(0, 8)
      .map((line) => line.slice(0, 300));
    return [
      errors.length > 0 ? `\n--- first [error] lines of ${this.nodeLog} ---\n${errors.join('\n')}` : '',
      `\n--- tail of ${this.consoleLog} (script stdout/stderr) ---\n${tail(readText(this.consoleLog, this.logMarks.console))}`,
      `\n--- tail of ${this.nodeLog} ---\n${tail(nodeLog)}`,
    ].join('');
  }
}

/** Removes a node's temp dir, unless BOTQUEUE_RABBIT_DEBUG asks to keep its logs and data for a post-mortem. */
function removeDir(dir: string): void {
  if (process.env.BOTQUEUE_RABBIT_DEBUG) console.error(`[private-rabbitmq] kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}

/** The cookie the machine's rabbitmqctl uses, so `rabbitmqctl -n <private node>` works by hand too. */
function machineCookie(): string {
  // Readable only by root and the rabbitmq user: exactly the users for whom Debian's rabbitmqctl
  // wrapper runs as `rabbitmq` and so uses this file rather than ~/.erlang.cookie.
  for (const file of ['/var/lib/rabbitmq/.erlang.cookie', join(homedir(), '.erlang.cookie')]) {
    try {
      const cookie = readFileSync(file, 'utf8').trim();
      if (cookie) return cookie;
    } catch {
      // not there or not readable: try the next one
    }
  }
  // No machine cookie: our own rabbitmqctl calls still work, they read the same HOME.
  return randomBytes(20).toString('hex').toUpperCase();
}

/** Distinct free loopback ports: all are held open at once so the OS cannot hand out one twice. */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  await Promise.all(
    servers.map(
      (server) =>
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', resolve);
        }),
    ),
  );
  const ports = servers.map((server) => (server.address() as AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  return ports;
}

/** true if an AMQP connection opens (then closes it), else why not. */
async function amqpProbe(url: string): Promise<true | string> {
  const amqp = await import('amqplib');
  try {
    const connection = await amqp.connect(url, { timeout: 2_000 });
    connection.on('error', () => undefined);
    await connection.close().catch(() => undefined);
    return true;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.setTimeout(1_000);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(true); // a port that neither accepts nor refuses is not closed yet
    });
    socket.once('error', () => resolve(false));
  });
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 1 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Alive and not a zombie: after a group kill the orphaned VM is reparented to PID 1, which may never reap it. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return existsSync(`/proc/${pid}`) || process.platform !== 'linux';
  }
}

function trySignal(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Signals the script's process group, but only while our child is unreaped, so the group id cannot have been reused. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  trySignal(-child.pid, signal);
}

/** The file's text from byte `from` on ('' if missing). */
function readText(file: string, from = 0): string {
  try {
    return readFileSync(file).subarray(from).toString('utf8');
  } catch {
    return '';
  }
}

function tail(text: string, lines = 30): string {
  const trimmed = text.trimEnd();
  return trimmed ? trimmed.split('\n').slice(-lines).join('\n') : '(empty or missing)';
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `promise`'s value, or undefined after `ms`; the timer is cleared so it cannot hold the process open. */
async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const expired = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(0, ms));
    });
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
