/**
 * A Kafka-protocol test cluster: librdkafka's mock cluster with 3 brokers on loopback, run by
 * the C program next to this file (built here with gcc -lrdkafka when its binary is missing or
 * older than its source). Topics are created, brokers taken down and up, leaders moved and
 * request errors injected through the program's stdin.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SOURCE = join(here, 'kafka-mock-cluster.c');
const BINARY = join(here, '..', '..', 'node_modules', '.cache', 'botqueue', 'kafka-mock-cluster');

/** Kafka API keys and error codes the fault tests use. */
export const ApiKey = { Produce: 0, Fetch: 1, ListOffsets: 2, Metadata: 3, OffsetCommit: 8, OffsetFetch: 9, FindCoordinator: 10 } as const;
export const KafkaError = { NOT_LEADER_OR_FOLLOWER: 6, REQUEST_TIMED_OUT: 7, NOT_COORDINATOR: 16, NOT_ENOUGH_REPLICAS: 19, COORDINATOR_LOAD_IN_PROGRESS: 14 } as const;

/** Builds the program when needed; returns why it cannot be built, or undefined. */
export function buildMockCluster(): string | undefined {
  if (existsSync(BINARY) && statSync(BINARY).mtimeMs >= statSync(SOURCE).mtimeMs) return undefined;
  if (!existsSync('/usr/include/librdkafka/rdkafka_mock.h')) return 'librdkafka-dev is not installed (apt-get install librdkafka-dev; .ci/services.sh does it)';
  mkdirSync(dirname(BINARY), { recursive: true });
  const built = spawnSync('gcc', ['-O2', '-o', BINARY, SOURCE, '-lrdkafka'], { encoding: 'utf8' });
  if (built.status !== 0) return `gcc failed building the Kafka mock cluster: ${built.error?.message ?? built.stderr}`;
  return undefined;
}

export class MockKafkaCluster {
  private readonly lines: string[] = [];
  private waiting: (() => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private stderr = '';

  private constructor(
    private readonly proc: ChildProcessWithoutNullStreams,
    readonly bootstraps: string[],
  ) {}

  static async start(): Promise<MockKafkaCluster> {
    const problem = buildMockCluster();
    if (problem !== undefined) throw new Error(problem);
    const proc = spawn(BINARY, [], { stdio: ['pipe', 'pipe', 'pipe'] });
    const lines: string[] = [];
    let wake: (() => void) | undefined;
    const rl = createInterface({ input: proc.stdout });
    rl.on('line', (line) => {
      lines.push(line);
      wake?.();
    });
    let stderr = '';
    proc.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4_000);
    });
    const deadline = Date.now() + 10_000;
    while (lines.length === 0) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`the Kafka mock cluster did not start: ${stderr}`);
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    const first = lines.shift()!;
    if (!first.startsWith('bootstraps ')) throw new Error(`the Kafka mock cluster said ${first}`);
    const cluster = new MockKafkaCluster(proc, first.slice('bootstraps '.length).split(','));
    rl.removeAllListeners('line');
    rl.on('line', (line) => {
      cluster.lines.push(line);
      cluster.waiting?.();
    });
    proc.stderr.removeAllListeners('data');
    proc.stderr.on('data', (chunk: Buffer) => {
      cluster.stderr = (cluster.stderr + chunk.toString()).slice(-4_000);
    });
    proc.unref();
    (proc.stdout as unknown as { unref?: () => void }).unref?.();
    (proc.stderr as unknown as { unref?: () => void }).unref?.();
    return cluster;
  }

  /** Sends one command and waits for its answer; commands run one at a time. */
  command(line: string): Promise<void> {
    const run = this.queue.then(async () => {
      this.proc.stdin.write(`${line}\n`);
      const deadline = Date.now() + 10_000;
      while (this.lines.length === 0) {
        if (Date.now() > deadline) throw new Error(`the Kafka mock cluster did not answer "${line}": ${this.stderr}`);
        await new Promise<void>((resolve) => {
          this.waiting = resolve;
          setTimeout(resolve, 50);
        });
      }
      const answer = this.lines.shift()!;
      if (answer !== 'ok') throw new Error(`the Kafka mock cluster refused "${line}": ${answer}`);
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  createTopic(name: string, partitions: number): Promise<void> {
    return this.command(`topic ${name} ${partitions}`);
  }

  brokerDown(id: number): Promise<void> {
    return this.command(`down ${id}`);
  }

  brokerUp(id: number): Promise<void> {
    return this.command(`up ${id}`);
  }

  setLeader(topic: string, partition: number, broker: number): Promise<void> {
    return this.command(`leader ${topic} ${partition} ${broker}`);
  }

  /** The next `count` requests of the API fail with the Kafka error code. */
  pushErrors(apiKey: number, count: number, code: number): Promise<void> {
    return this.command(`errors ${apiKey} ${count} ${code}`);
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.stdin.end('quit\n');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
