/**
 * The delivery contract across processes, on the SQLite backend (one file shared by several
 * processes): kill -9 of workers and publishers, balancing of a group across processes, every
 * group getting every message, and bounded worker memory under a backlog of a million messages.
 * Children are the scripts in ./fixtures, run with tsx; they report on stdout, one line each.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { connect, type Botqueue, type GroupStats } from '../../src/index.js';
import type { PublisherFixtureConfig } from './fixtures/publisher.js';
import type { WorkerFixtureConfig } from './fixtures/worker.js';
import { orderViolations, waitFor } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const WORKER = join(here, 'fixtures', 'worker.ts');
const PUBLISHER = join(here, 'fixtures', 'publisher.ts');

// ------------------------------------------------------------------------- child processes

/** A fixture process and the lines it has written to stdout so far. */
class Child {
  readonly lines: string[] = [];
  readonly proc: ChildProcessWithoutNullStreams;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private stderr = '';
  private exitedNow = false;

  constructor(
    readonly name: string,
    script: string,
    config: object,
  ) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(config)], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
    createInterface({ input: this.proc.stdout }).on('line', (line) => this.lines.push(line));
    this.proc.stderr.on('data', (chunk: Buffer) => {
      this.stderr = (this.stderr + chunk.toString()).slice(-4_000);
    });
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exitedNow = true;
        resolve({ code, signal });
      });
    });
    children.add(this);
  }

  get pid(): number {
    return this.proc.pid!;
  }

  get alive(): boolean {
    return !this.exitedNow;
  }

  /** Lines starting with `word `, without the word. */
  values(word: string): string[] {
    const prefix = `${word} `;
    return this.lines.filter((l) => l.startsWith(prefix)).map((l) => l.slice(prefix.length));
  }

  /** Waits for a line starting with `word `; fails at once, with its stderr, if the child dies first. */
  async waitLine(word: string, timeoutMs = 30_000): Promise<string> {
    let found: string | undefined;
    await waitFor(`${this.name}: a "${word}" line`, () => {
      found = this.values(word)[0];
      if (found === undefined && !this.alive) throw new Error(`${this.name} exited before writing "${word}"\n${this.describe()}`);
      return found !== undefined;
    }, timeoutMs);
    return found!;
  }

  kill(signal: NodeJS.Signals): void {
    if (this.alive) this.proc.kill(signal);
  }

  /** Sends SIGTERM and waits for the graceful close; returns the `closed` line. */
  async stop(timeoutMs = 15_000): Promise<string> {
    this.kill('SIGTERM');
    const closed = await this.waitLine('closed', timeoutMs);
    await this.exited;
    return closed;
  }

  describe(): string {
    return `--- ${this.name} (pid ${this.proc.pid}) stdout tail:\n${this.lines.slice(-10).join('\n')}\n--- stderr tail:\n${this.stderr}`;
  }
}

const children = new Set<Child>();
const clients: Botqueue[] = [];
const dirs: string[] = [];

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all([...children].map((c) => c.exited));
  await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function freshDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-processes-'));
  dirs.push(dir);
  return dir;
}

async function open(url: string): Promise<Botqueue> {
  const bq = await connect(url);
  clients.push(bq);
  return bq;
}

function startWorker(name: string, config: WorkerFixtureConfig): Child {
  return new Child(name, WORKER, config);
}

function startPublisher(name: string, config: PublisherFixtureConfig): Child {
  return new Child(name, PUBLISHER, config);
}

/** Reports the `error` events the workers wrote (none is expected; they are not contract violations by themselves). */
function reportErrors(t: { diagnostic(message: string): void }, list: readonly Child[]): void {
  for (const child of list) for (const error of child.values('error')) t.diagnostic(`${child.name} (pid ${child.pid}) worker error: ${error}`);
}

/** Kills every child of a test that is still running (a failed test must not leave them behind). */
async function killAll(list: readonly Child[]): Promise<void> {
  for (const child of list) child.kill('SIGKILL');
  await Promise.all(list.map((c) => c.exited));
}

/** Fails with the children's output when `condition` does not hold in time, or when one of `watched` dies. */
async function waitWhileAlive(what: string, watched: readonly Child[], condition: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 25): Promise<void> {
  await waitFor(what, async () => {
    const dead = watched.find((c) => !c.alive);
    if (dead !== undefined) throw new Error(`${dead.name} exited while waiting for: ${what}\n${dead.describe()}`);
    return condition();
  }, timeoutMs, everyMs).catch((error: unknown) => {
    if (error instanceof Error && error.message.startsWith('timed out')) {
      throw new Error(`${error.message}\n${watched.map((c) => c.describe()).join('\n')}`);
    }
    throw error;
  });
}

// ------------------------------------------------------------------------- the shared log

interface LogLine {
  key: string;
  n: number;
  pid: number;
}

function readLog(file: string): LogLine[] {
  if (!existsSync(file)) return [];
  const out: LogLine[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line === '') continue;
    const [key, n, pid] = line.split(' ');
    assert.ok(key !== undefined && n !== undefined && pid !== undefined, `malformed log line ${JSON.stringify(line)}`);
    out.push({ key, n: Number(n), pid: Number(pid) });
  }
  return out;
}

function countLines(file: string): number {
  if (!existsSync(file)) return 0;
  const text = readFileSync(file, 'utf8');
  let count = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) count++;
  return count;
}

async function groupStats(bq: Botqueue, topic: string, group: string): Promise<GroupStats> {
  const [stats] = await bq.stats(topic);
  const found = stats?.groups.find((g) => g.group === group);
  assert.ok(found !== undefined, `group "${group}" of topic "${topic}" has no stats`);
  return found;
}

/** Owned partitions per owner (member), from the broker's point of view (live leases only). */
function owners(stats: GroupStats): Map<string, number[]> {
  const byOwner = new Map<string, number[]>();
  for (const p of stats.partitions) {
    if (p.owner === null) continue;
    byOwner.set(p.owner, [...(byOwner.get(p.owner) ?? []), p.partition]);
  }
  return byOwner;
}

function shareCounts(byOwner: Map<string, number[]>): number[] {
  return [...byOwner.values()].map((ps) => ps.length).sort((a, b) => b - a);
}

// ------------------------------------------------------------------------- the tests

/**
 * The contract across real processes, for every backend that several processes can share:
 * `urlFor(dir)` gives a URL to fresh storage for a test (its temp dir is `dir`).
 */
export function describeProcessConformance(name: string, urlFor: (dir: string) => string): void {
  describe(`conformance across processes: ${name}`, { concurrency: 1 }, () => {
    test('SIGKILL of a worker mid-handler loses nothing and keeps per-key order', async (t) => {
      const dir = freshDir();
      const url = urlFor(dir);
      const log = join(dir, 'handled.log');
      const keys = 40;
      const perKey = 50;
      const concurrency = 8;
      const bq = await open(url);
      await bq.createTopic('orders', { partitions: 8 });
      await bq.broker.ensureGroup('orders', 'g');
      const batch = [];
      for (let n = 0; n < perKey; n++) for (let k = 0; k < keys; k++) batch.push({ key: `k${k}`, id: `${k}-${n}`, payload: { n } });
      await bq.publishBatch('orders', batch);

      const startLog = join(dir, 'started.log');
      const config: WorkerFixtureConfig = { url, topic: 'orders', log, startLog, sleepMs: 10, options: { group: 'g', leaseMs: 1_000, concurrency, shutdownTimeoutMs: 10_000 } };
      const workers = [0, 1, 2].map((i) => startWorker(`worker-${i}`, config));
      const all = [...workers];
      const ownedCount = (w: Child): number => (w.values('owned').at(-1) ?? '').split(',').filter((s) => s !== '').length;
      try {
        await Promise.all(workers.map((w) => w.waitLine('ready')));
        // Kill only once the group has settled (3/3/2) and every process is handling messages.
        await waitWhileAlive('the 8 partitions shared by the 3 processes', workers, () =>
          workers.every((w) => ownedCount(w) > 0) && workers.reduce((sum, w) => sum + ownedCount(w), 0) === 8, 20_000, 5);
        const balancedAt = countLines(log);
        await waitWhileAlive('every process handling messages', workers, () => {
          const pids = new Set(readLog(log).slice(balancedAt).map((l) => l.pid));
          return workers.every((w) => pids.has(w.pid)) && countLines(log) >= balancedAt + 150;
        }, 30_000, 5);

        // The victim is caught with handlers running: started (start log) but not finished (log).
        const running = (w: Child): number => {
          const done = new Set(readLog(log).filter((l) => l.pid === w.pid).map((l) => `${l.key} ${l.n}`));
          return readLog(startLog).filter((l) => l.pid === w.pid && !done.has(`${l.key} ${l.n}`)).length;
        };
        let found: Child | undefined;
        await waitWhileAlive('a worker with 3 handlers running', workers, () => {
          found = workers.find((w) => running(w) >= 3);
          return found !== undefined;
        }, 20_000, 1);
        const victim = found;
        assert.ok(victim !== undefined);
        victim.kill('SIGKILL');
        const killedAt = Date.now();
        const { signal } = await victim.exited;
        assert.equal(signal, 'SIGKILL');
        const linesAtKill = countLines(log);
        const replacement = startWorker('replacement', config);
        all.push(replacement);
        const survivors = [...workers.filter((w) => w !== victim), replacement];

        const expected = keys * perKey;
        await waitWhileAlive('every message handled and the backlog empty', survivors, async () => {
          const seen = new Set(readLog(log).map((l) => `${l.key} ${l.n}`));
          return seen.size === expected && (await groupStats(bq, 'orders', 'g')).backlog === 0;
        }, 60_000, 50);
        const drainedMs = Date.now() - killedAt;
        // The survivors may drain the backlog before the replacement has even started: it must
        // be up (its SIGTERM handler installed) before it is asked to close.
        await replacement.waitLine('ready');
        const closed = await Promise.all(survivors.map((w) => w.stop()));
        for (const line of closed) assert.equal(line, '0 false', `a worker saw order violations or timed out closing: closed ${line}`);

        const entries = readLog(log);
        // Nothing lost.
        const missing: string[] = [];
        const seen = new Set(entries.map((l) => `${l.key} ${l.n}`));
        for (let k = 0; k < keys; k++) for (let n = 0; n < perKey; n++) if (!seen.has(`k${k} ${n}`)) missing.push(`k${k} ${n}`);
        assert.deepEqual(missing, [], 'messages never handled');
        // Handlers the victim started and never finished: each is finished later by another process.
        const victimDone = new Set(entries.filter((l) => l.pid === victim.pid).map((l) => `${l.key} ${l.n}`));
        const interrupted = readLog(startLog).filter((l) => l.pid === victim.pid && !victimDone.has(`${l.key} ${l.n}`)).map((l) => `${l.key} ${l.n}`);
        for (const message of interrupted) {
          assert.ok(entries.some((l) => `${l.key} ${l.n}` === message && l.pid !== victim.pid), `${message}, interrupted by the kill, was never handled by another process`);
        }
        // Per-key order: for each key, n goes 0, 1, 2, … in log order; a message handled twice
        // appears twice in a row, first by the killed process (it finished the handler but its
        // settle never committed), then by the new owner.
        assert.deepEqual(orderViolations(entries), [], 'a key went backwards');
        const duplicates: string[] = [];
        for (let k = 0; k < keys; k++) {
          const mine = entries.filter((l) => l.key === `k${k}`);
          assert.equal(mine[0]?.n, 0, `k${k} did not start at 0`);
          for (let i = 1; i < mine.length; i++) {
            const [before, now] = [mine[i - 1]!, mine[i]!];
            if (now.n === before.n) {
              duplicates.push(`k${k} ${now.n}`);
              assert.equal(before.pid, victim.pid, `k${k} ${now.n} was handled twice, first by pid ${before.pid}, which was not killed`);
              assert.notEqual(now.pid, victim.pid, `k${k} ${now.n} was handled twice by the killed process`);
            } else {
              assert.equal(now.n, before.n + 1, `k${k}: ${now.n} handled right after ${before.n}`);
            }
          }
        }
        assert.equal(entries.length, expected + duplicates.length);
        // In flight in the killed process: handlers running (interrupted: at most `concurrency`)
        // or finished with their settlement not yet committed (they repeat). A key has at most one
        // message in flight, so together they are at most one per key.
        const inFlight = interrupted.length + duplicates.length;
        assert.ok(inFlight > 0, 'the killed worker had nothing in flight: the kill was not mid-handler');
        assert.ok(interrupted.length <= concurrency, `${interrupted.length} interrupted handlers: more than the killed worker's concurrency ${concurrency}`);
        assert.ok(inFlight <= keys, `${duplicates.length} duplicates and ${interrupted.length} interrupted handlers: more than one per key (${keys} keys)`);
        const victimLines = entries.filter((l) => l.pid === victim.pid).length;
        assert.ok(linesAtKill < expected, 'the kill came before the end');
        const stats = await groupStats(bq, 'orders', 'g');
        assert.equal(stats.orderViolations, 0, 'the workers reported order violations');
        assert.equal(stats.deadLetters, 0);
        t.diagnostic(`killed pid ${victim.pid} (owning ${victim.values('owned').at(-1)}) after ${linesAtKill}/${expected} lines, ${victimLines} of them its own; drained ${drainedMs} ms after the kill`);
        t.diagnostic(`interrupted handlers: ${interrupted.length} (${interrupted.join(', ')}); duplicates: ${duplicates.length} (${duplicates.join(', ') || 'none'})`);
      } finally {
        reportErrors(t, all);
        await killAll(all);
      }
    });

    test('a group is balanced across processes and rebalances within a lease after a SIGKILL', async (t) => {
      const dir = freshDir();
      const url = urlFor(dir);
      const log = join(dir, 'handled.log');
      const leaseMs = 1_000;
      const bq = await open(url);
      await bq.createTopic('balanced', { partitions: 16 });
      const config: WorkerFixtureConfig = { url, topic: 'balanced', log, options: { group: 'g', leaseMs, concurrency: 8, shutdownTimeoutMs: 10_000 } };
      const workers = [0, 1, 2].map((i) => startWorker(`worker-${i}`, config));
      try {
        const members = await Promise.all(workers.map((w) => w.waitLine('ready')));
        const byMember = new Map(members.map((m, i) => [m, workers[i]!]));
        let byOwner = new Map<string, number[]>();
        await waitWhileAlive('16 partitions owned by 3 processes, 6/5/5', workers, async () => {
          byOwner = owners(await groupStats(bq, 'balanced', 'g'));
          return shareCounts(byOwner).join('/') === '6/5/5';
        }, 15_000);
        assert.deepEqual([...byOwner.keys()].sort(), [...members].sort(), 'the owners are the three worker processes');
        const firstShares = shareCounts(byOwner).join('/');

        const victim = workers[0]!;
        const killedAt = Date.now();
        victim.kill('SIGKILL');
        const survivors = workers.slice(1);
        const survivorMembers = members.slice(1);
        await waitWhileAlive('16 partitions owned by the 2 survivors, 8/8', survivors, async () => {
          byOwner = owners(await groupStats(bq, 'balanced', 'g'));
          return shareCounts(byOwner).join('/') === '8/8' && [...byOwner.keys()].every((m) => survivorMembers.includes(m));
        }, 10 * leaseMs, 20);
        const rebalancedMs = Date.now() - killedAt;
        assert.ok(rebalancedMs < 3 * leaseMs, `rebalancing took ${rebalancedMs} ms, more than 3 leases (${3 * leaseMs} ms)`);
        // The survivors agree with the broker.
        await waitWhileAlive('each survivor reports its 8 partitions', survivors, () =>
          survivors.every((w) => (w.values('owned').at(-1) ?? '').split(',').filter((s) => s !== '').length === 8), 5_000);

        const count = 200;
        await bq.publishBatch('balanced', Array.from({ length: count }, (_, i) => ({ key: `k${i % 25}`, id: `after-${i}`, payload: { n: Math.floor(i / 25) } })));
        await waitWhileAlive('the messages published after the kill handled', survivors, async () =>
          countLines(log) >= count && (await groupStats(bq, 'balanced', 'g')).backlog === 0, 20_000);
        const entries = readLog(log);
        assert.equal(new Set(entries.map((l) => `${l.key} ${l.n}`)).size, count, 'every message handled');
        assert.equal(entries.length, count, 'no message handled twice');
        assert.deepEqual(orderViolations(entries), []);
        const handlers = new Set(entries.map((l) => l.pid));
        assert.deepEqual([...handlers].sort(), survivors.map((w) => w.pid).sort(), 'both survivors, and only they, handled messages');
        t.diagnostic(`shares before: ${firstShares}; after the kill: 8/8 in ${rebalancedMs} ms (leaseMs ${leaseMs}); member of the killed pid ${victim.pid}: ${[...byMember.entries()].find(([, w]) => w === victim)?.[0]}`);
      } finally {
        reportErrors(t, workers);
        await killAll(workers);
      }
    });

    test('every group receives every message, published by a third process', async (t) => {
      const dir = freshDir();
      const url = urlFor(dir);
      const bq = await open(url);
      await bq.createTopic('fanout', { partitions: 8 });
      const groups = ['alpha', 'beta'];
      const logs = groups.map((g) => join(dir, `${g}.log`));
      const workers = groups.map((group, i) => startWorker(group, { url, topic: 'fanout', log: logs[i]!, options: { group, leaseMs: 2_000, concurrency: 8 } }));
      const all = [...workers];
      try {
        // Each worker subscribes its own group (created by its ensureGroup, not by the test).
        await Promise.all(workers.map((w) => w.waitLine('ready')));
        const count = 500;
        const keys = 20;
        const started = Date.now();
        const publisher = startPublisher('publisher', { url, topic: 'fanout', count, keys, chains: 10, idPrefix: 'f' });
        all.push(publisher);
        const { code } = await publisher.exited;
        assert.equal(code, 0, `the publisher failed\n${publisher.describe()}`);
        assert.deepEqual(publisher.values('done'), [String(count)]);
        await waitWhileAlive('both groups handled all 500', workers, async () => {
          if (!logs.every((l) => countLines(l) >= count)) return false;
          return (await Promise.all(groups.map(async (g) => (await groupStats(bq, 'fanout', g)).backlog))).every((b) => b === 0);
        }, 30_000);
        const elapsed = Date.now() - started;
        for (const [i, group] of groups.entries()) {
          const entries = readLog(logs[i]!);
          const handled = new Set(entries.map((l) => `${l.key} ${l.n}`));
          assert.equal(handled.size, count, `${group} handled ${handled.size} distinct messages, not ${count}`);
          for (let m = 0; m < count; m++) assert.ok(handled.has(`k${m % keys} ${Math.floor(m / keys)}`), `${group} never got message ${m}`);
          assert.equal(entries.length, count, `${group} handled a message twice`);
          assert.ok(entries.every((l) => l.pid === workers[i]!.pid), `${group}'s log holds lines of another process`);
          // Each key was published in order by one publisher chain: each group handled it in that order.
          assert.deepEqual(orderViolations(entries), [], `${group} broke per-key order`);
        }
        t.diagnostic(`published by pid ${publisher.pid}; both groups done ${elapsed} ms after the publisher started`);
      } finally {
        reportErrors(t, workers);
        await killAll(all);
      }
    });

    test('every publish acknowledged before a SIGKILL of the publisher is stored', async (t) => {
      const dir = freshDir();
      const url = urlFor(dir);
      const bq = await open(url);
      await bq.createTopic('durable', { partitions: 4 });
      const chains = 4;
      const publisher = startPublisher('publisher', { url, topic: 'durable', count: 10_000_000, keys: 100, chains, idPrefix: 'd', printAcks: true });
      try {
        const killAfter = 200 + Math.floor(Math.random() * 300);
        await waitWhileAlive(`${killAfter} acknowledged publishes`, [publisher], () => publisher.values('ack').length >= killAfter, 30_000, 2);
        publisher.kill('SIGKILL');
        const { signal } = await publisher.exited;
        assert.equal(signal, 'SIGKILL', 'the publisher was killed mid-run, not finished');
      } finally {
        await killAll([publisher]);
      }
      const acked = publisher.values('ack');
      assert.equal(new Set(acked).size, acked.length);

      // A worker in this process, on the file the killed process wrote, collects what is stored.
      const [before] = await bq.stats('durable');
      const retained = before?.retained ?? -1;
      const stored = new Set<string>();
      const worker = bq.worker('durable', (m) => void stored.add(m.id), { group: 'check', leaseMs: 2_000, concurrency: 32 });
      try {
        await worker.ready;
        await waitFor('every stored message handled', async () => stored.size >= retained && (await groupStats(bq, 'durable', 'check')).backlog === 0, 30_000);
        const lost = acked.filter((id) => !stored.has(id));
        assert.deepEqual(lost, [], 'acknowledged publishes missing after the kill');
        const unacknowledged = [...stored].filter((id) => !acked.includes(id));
        // Each chain had at most one publish in flight when it died: only those may be stored unacknowledged.
        assert.ok(unacknowledged.length <= chains, `${unacknowledged.length} stored messages were never acknowledged: ${unacknowledged.join(', ')}`);
        assert.equal(retained, stored.size);
        t.diagnostic(`acknowledged ${acked.length}, stored ${stored.size} (${unacknowledged.length} stored but not yet acknowledged when killed)`);
      } finally {
        await worker.close();
      }
    });

    test('the same ids raced from several processes at once are stored once', async (t) => {
      const dir = freshDir();
      const url = urlFor(dir);
      const bq = await open(url);
      await bq.createTopic('raced', { partitions: 4 });
      const count = 2_000;
      // Four processes publish the same 2,000 ids, each with 4 chains, at once: ids are raced up to 4 ways.
      const racers = Array.from({ length: 4 }, (_, r) => startPublisher(`racer ${r}`, { url, topic: 'raced', count, keys: 20, chains: 4, idPrefix: 'same-', printAcks: true }));
      try {
        await Promise.all(racers.map(async (racer) => assert.equal((await racer.exited).code, 0, `${racer.name} failed\n${racer.describe()}`)));
      } finally {
        await killAll(racers);
      }
      for (const racer of racers) assert.equal(racer.values('ack').length, count, `${racer.name}: every publish acknowledged (stored or a duplicate)`);
      const [stats] = await bq.stats('raced');
      assert.equal(stats?.retained, count, 'each id stored once');
      const seen = new Map<string, number>();
      const worker = bq.worker('raced', (m) => void seen.set(m.id, (seen.get(m.id) ?? 0) + 1), { group: 'check', leaseMs: 2_000, concurrency: 32 });
      try {
        await worker.ready;
        await waitFor('every stored message handled', async () => (await groupStats(bq, 'raced', 'check')).backlog === 0 && seen.size >= count, 30_000);
      } finally {
        await worker.close();
      }
      assert.equal(seen.size, count);
      assert.deepEqual([...seen].filter(([, times]) => times !== 1), [], 'each id delivered once');
      t.diagnostic(`${racers.length} processes × ${count} publishes of the same ids: ${stats?.retained} stored`);
    });

    test('a worker over a 1,000,000-message backlog uses no more memory than over 10,000', async (t) => {
      const prefetch = 1024;
      const batchSize = 5_000;
      const message = (i: number) => ({ key: `k${i % 1_000}`, id: `b${i}`, payload: { n: Math.floor(i / 1_000) } });
      /**
       * Runs the worker for ~5 s over `backlog` messages. With `topUp`, this process publishes
       * another batch whenever the backlog falls under `backlog / 2`, so that the worker does as
       * much work as over the large backlog (memory follows throughput: garbage between
       * collections, SQLite's page cache) while the backlog itself stays small.
       */
      async function measure(backlog: number, topUp: boolean): Promise<{ peakRss: number; peakHeap: number; maxBuffered: number; handled: number; publishMs: number; maxBacklog: number }> {
        const dir = freshDir();
        const url = urlFor(dir);
        const bq = await connect(url);
        let published = 0;
        let maxBacklog = 0;
        const worker = { current: undefined as Child | undefined };
        try {
          const t0 = Date.now();
          await bq.createTopic('bulk', { partitions: 16 });
          // The group exists before the publish, so each message is pending for it as it is stored.
          await bq.broker.ensureGroup('bulk', 'g');
          for (; published < backlog; published += batchSize) {
            await bq.publishBatch('bulk', Array.from({ length: Math.min(batchSize, backlog - published) }, (_, j) => message(published + j)));
          }
          assert.equal((await groupStats(bq, 'bulk', 'g')).backlog, backlog);
          const publishMs = Date.now() - t0;
          if (!topUp) await bq.close();
          const child = startWorker(`worker-${backlog}`, { url, topic: 'bulk', reportMs: 200, options: { group: 'g', prefetch, leaseMs: 5_000 } });
          worker.current = child;
          await child.waitLine('ready');
          const from = child.values('mem').length;
          // ~5 s of samples (one every 200 ms) once the worker runs.
          await waitWhileAlive('25 memory samples', [child], async () => {
            if (topUp) {
              const pending = (await groupStats(bq, 'bulk', 'g')).backlog;
              maxBacklog = Math.max(maxBacklog, pending);
              if (pending < backlog / 2) {
                await bq.publishBatch('bulk', Array.from({ length: batchSize }, (_, j) => message(published + j)));
                published += batchSize;
              }
            }
            return child.values('mem').length >= from + 25;
          }, 30_000, 10);
          const samples = child.values('mem').map((l) => l.split(' ').map(Number) as [number, number, number, number]);
          return {
            peakRss: Math.max(...samples.map(([rss]) => rss)),
            peakHeap: Math.max(...samples.map(([, , , heap]) => heap)),
            maxBuffered: Math.max(...samples.map(([, buffered]) => buffered)),
            handled: samples.at(-1)![2],
            publishMs,
            maxBacklog: topUp ? maxBacklog : backlog,
          };
        } finally {
          if (worker.current !== undefined) {
            reportErrors(t, [worker.current]);
            await killAll([worker.current]);
          }
          await bq.close();
        }
      }
      const small = await measure(10_000, true);
      const large = await measure(1_000_000, false);
      const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
      for (const [name, m] of [['10k', small], ['1M', large]] as const) {
        t.diagnostic(`${name} backlog (at most ${m.maxBacklog} pending): peak RSS ${mb(m.peakRss)} MB (heap ${mb(m.peakHeap)} MB), max buffered ${m.maxBuffered}, handled ${m.handled} in ~5 s (initial backlog published in ${m.publishMs} ms)`);
      }
      assert.ok(large.handled > 1_000 && small.handled > 10_000, `the workers handled only ${small.handled} and ${large.handled} messages: they were not working while measured`);
      assert.ok(small.maxBacklog <= 10_000, `the small backlog reached ${small.maxBacklog}`);
      assert.ok(small.maxBuffered <= prefetch && large.maxBuffered <= prefetch, `buffered exceeded the prefetch of ${prefetch}: ${small.maxBuffered}, ${large.maxBuffered}`);
      assert.ok(large.maxBuffered > 0, 'the worker over the 1M backlog never held a message');
      const growth = large.peakRss - small.peakRss;
      assert.ok(growth < 60 * 1024 * 1024, `peak RSS grew by ${mb(growth)} MB with the backlog (${mb(small.peakRss)} → ${mb(large.peakRss)} MB)`);
    });
  });
}
