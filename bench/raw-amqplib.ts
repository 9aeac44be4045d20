/**
 * The RabbitMQ baseline: what a competent amqplib user writes for an ordered, durable,
 * acknowledged pipeline, with no botqueue code in the path. botqueue's RabbitMQ backend is
 * compared against this.
 *
 * Topology: one direct exchange and `partitions` durable quorum queues (single active consumer,
 * delivery limit 50), queue i bound with routing key "i". A message for key k goes to partition
 * fnv1a(k) % partitions, so all messages of one key sit in one queue and one consumer sees them
 * in publish order. Everything is named `${queuePrefix}...`, deleted before declaring (a leftover
 * of a crashed run would fail the declare with other arguments) and deleted at the end, also on
 * error.
 *
 * Publisher: one ConfirmChannel on its own connection (RabbitMQ's advice: flow control throttles
 * a publishing connection, which must not hold back the acks of consumers). Messages are JSON
 * `{ key, n, pad }` of about `payloadBytes` bytes, persistent, keys k0..k{keys-1} round-robin, n
 * the global sequence number. At most `publishWindow` publishes are unconfirmed at once (the
 * per-publish confirm callback frees a slot); when publish() returns false the loop waits for
 * 'drain'.
 *
 * Consumers: on a second connection, one channel per partition queue with prefetch `prefetch`,
 * manual acks. The handler parses the JSON, checks that n increases per key (a violation or a
 * duplicate fails the run) and acks that one message (multiple=false: in a real worker per-key
 * handlers finish independently, so a cumulative ack would ack unfinished work).
 *
 * One run has three phases on the same queues:
 *  1. publish-only: no consumers; publishMs = first publish -> last confirm. publishMsgsPerSec
 *     comes from this phase (not from phase 3, where the consumers compete for the 2 cores).
 *  2. drain: consumers start on the backlog of phase 1; consumeMs = consume() -> last ack.
 *  3. end-to-end (the main figure): consumers subscribed first, then N messages are published;
 *     endToEndMsgsPerSec = N / (first publish -> last ack sent). Acks are fire-and-forget in
 *     AMQP, so "last ack" is the moment the client wrote it, as a worker would see it.
 *
 * CLI: `node --import tsx bench/raw-amqplib.ts` runs 3 repetitions with the defaults below and
 * prints each run and the medians. Flags: --url --messages --keys --partitions --payload-bytes
 * --publish-window --prefetch --runs, and --ack=multiple (info only: acks with multiple=true once
 * per event-loop turn instead of one ack per message). The URL also comes from BENCH_AMQP_URL.
 */
import { connect, type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage } from 'amqplib';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { brokerCpuMicros, fmtInt, median, progress, within } from './lib.js';

export interface RawAmqpResult {
  messages: number;
  publishMs: number;
  consumeMs: number;
  /** This process's CPU (user + system) per message in phase 1 (publish-only) and phase 2 (drain), µs. */
  publishCpuMicros: number;
  consumeCpuMicros: number;
  /** RabbitMQ's CPU per message in the same phases, µs (NaN where it cannot be read). */
  publishBrokerCpuMicros: number;
  consumeBrokerCpuMicros: number;
  /** This process's and RabbitMQ's CPU per message in phase 3 (end-to-end), µs. */
  endToEndCpuMicros: number;
  endToEndBrokerCpuMicros: number;
  endToEndMsgsPerSec: number;
  publishMsgsPerSec: number;
}

export interface RawAmqpOptions {
  url: string;
  messages: number;
  keys: number;
  partitions: number;
  payloadBytes: number;
  /** Most publishes unconfirmed at once. */
  publishWindow: number;
  /** Unacked deliveries per consumer (basic.qos per channel). */
  prefetch: number;
  queuePrefix: string;
}

/** 'multiple' is the informational variant: one cumulative ack per channel per event-loop turn. */
type AckMode = 'single' | 'multiple';

interface Detail extends RawAmqpResult {
  /** Publish rate inside phase 3, while the consumers run (info). */
  concurrentPublishMsgsPerSec: number;
}

/** CPU (user + system) this process used since `since`, in µs. */
export function cpuMicros(since: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(since);
  return used.user + used.system;
}

/** RabbitMQ's CPU since a brokerCpuMicros() reading, µs; NaN where it cannot be read. */
export function brokerCpuSince(since: number | undefined): number {
  const now = brokerCpuMicros();
  return since === undefined || now === undefined ? Number.NaN : now - since;
}

/** A phase that has not finished by then is broken (lost or stuck messages), not slow. */
const PHASE_CAP_MS = 180_000;

/**
 * The defaults of the CLI. publishWindow and prefetch are the best end-to-end figure of a sweep on
 * the 2-core dev machine (shared with other jobs; runs vary by about +-25%), medians of 5-10 runs:
 * window 100: 7-8k msg/s whatever the prefetch (the publisher waits on confirms); window 1,000:
 * 12-14k (prefetch 256: 13.5k, 1,000: 12.4k, 64: 12.2k); window 5,000: 9-12k, no better than 1,000
 * and noisier. The consumers keep up in every setting, so prefetch barely moves the end-to-end figure.
 */
export const DEFAULTS = {
  url: 'amqp://guest:guest@127.0.0.1:5672',
  messages: 50_000,
  keys: 1_000,
  partitions: 8,
  payloadBytes: 200,
  publishWindow: 1_000,
  prefetch: 256,
} as const;

/** FNV-1a, 32 bit: any stable hash does; this one is short and spreads k0..k999 evenly. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

interface Names {
  exchange: string;
  queues: string[];
}

function namesOf(opts: RawAmqpOptions): Names {
  return {
    exchange: `${opts.queuePrefix}.x`,
    queues: Array.from({ length: opts.partitions }, (_, i) => `${opts.queuePrefix}.p${i}`),
  };
}

async function declare(channel: Channel, names: Names): Promise<void> {
  await deleteAll(channel, names);
  await channel.assertExchange(names.exchange, 'direct', { durable: true, autoDelete: false });
  for (const [i, queue] of names.queues.entries()) {
    await channel.assertQueue(queue, {
      durable: true,
      arguments: { 'x-queue-type': 'quorum', 'x-single-active-consumer': true, 'x-delivery-limit': 50 },
    });
    await channel.bindQueue(queue, names.exchange, String(i));
  }
}

/**
 * amqplib emits 'error' when the server closes a channel or connection, and an 'error' event
 * without a listener would crash the process before the cleanup. The failure itself still
 * surfaces as a rejected operation, a failed confirm or a consumer error, so the event is ignored.
 */
function tolerateErrors<T extends Channel | ChannelModel>(emitter: T): T {
  emitter.on('error', () => undefined);
  return emitter;
}

/** Deleting what does not exist is not an error in RabbitMQ, so this also serves as the pre-clean. */
async function deleteAll(channel: Channel, names: Names): Promise<void> {
  for (const queue of names.queues) await channel.deleteQueue(queue);
  await channel.deleteExchange(names.exchange);
}

/** The channels of a failed run may be closed, so cleanup uses a connection of its own. */
async function cleanup(url: string, names: Names): Promise<void> {
  const conn = tolerateErrors(await connect(url));
  try {
    await deleteAll(tolerateErrors(await conn.createChannel()), names);
  } finally {
    await conn.close();
  }
}

interface Producer {
  /** Publishes opts.messages messages, resolving when all are confirmed; returns elapsed ms. */
  publishAll: (onFirst?: () => void) => Promise<number>;
}

function producer(channel: ConfirmChannel, opts: RawAmqpOptions, exchange: string): Producer {
  // Per key: its name and its routing key, computed once (the hash is not what is measured).
  const keys = Array.from({ length: opts.keys }, (_, i) => {
    const key = `k${i}`;
    return { key, routingKey: String(fnv1a(key) % opts.partitions) };
  });
  const padding = 'x'.repeat(opts.payloadBytes);
  const publishOptions = { persistent: true, contentType: 'application/json' };

  const publishAll = async (onFirst?: () => void): Promise<number> => {
    let inFlight = 0;
    let failure: Error | undefined;
    // The one waiter of the publish loop: woken when fewer than `limit` publishes are unconfirmed.
    let waiter: { limit: number; wake: () => void } | undefined;
    const wakeIfDue = (): void => {
      if (waiter !== undefined && (inFlight < waiter.limit || failure !== undefined)) {
        const { wake } = waiter;
        waiter = undefined;
        wake();
      }
    };
    const onConfirm = (err: unknown): void => {
      inFlight--;
      if (err !== null && err !== undefined) failure ??= err instanceof Error ? err : new Error('raw amqplib: publish not confirmed');
      wakeIfDue();
    };
    // A closed channel fails what is in flight (amqplib calls the callbacks) but never emits
    // 'drain', so a wait for 'drain' must end on 'close' too.
    let onDrain: (() => void) | undefined;
    const onClose = (): void => {
      failure ??= new Error('raw amqplib: the publish channel closed');
      wakeIfDue();
      onDrain?.();
    };
    channel.once('close', onClose);
    const confirmedBelow = async (limit: number): Promise<void> => {
      if (inFlight >= limit && failure === undefined) await new Promise<void>((wake) => (waiter = { limit, wake }));
      if (failure !== undefined) throw failure;
    };

    onFirst?.();
    const started = performance.now();
    try {
      for (let n = 0; n < opts.messages; n++) {
        // Most of the time a slot is free: skip the await (and its microtask) then.
        if (inFlight >= opts.publishWindow || failure !== undefined) await confirmedBelow(opts.publishWindow);
        const { key, routingKey } = keys[n % keys.length]!;
        const head = JSON.stringify({ key, n, pad: '' });
        const body = `${head.slice(0, -2)}${padding.slice(0, Math.max(0, opts.payloadBytes - head.length))}"}`;
        inFlight++;
        const writable = channel.publish(exchange, routingKey, Buffer.from(body), publishOptions, onConfirm);
        // The socket buffer is full: wait for it to empty rather than queue without bound in memory.
        if (!writable) {
          await new Promise<void>((resolve) => {
            onDrain = resolve;
            channel.once('drain', resolve);
          });
          onDrain = undefined;
        }
      }
      await confirmedBelow(1);
    } finally {
      channel.off('close', onClose);
    }
    return performance.now() - started;
  };
  return { publishAll };
}

interface Consumers {
  /** Resolves with performance.now() of the last ack, once opts.messages messages are acked. */
  done: Promise<number>;
  stop: () => Promise<void>;
}

/** One channel and one consumer per partition queue; resolves once every consume-ok is back. */
async function startConsumers(conn: ChannelModel, opts: RawAmqpOptions, names: Names, ackMode: AckMode): Promise<Consumers> {
  const lastN = new Map<string, number>();
  let acked = 0;
  let violations = 0;
  let finish!: (at: number) => void;
  let fail!: (err: Error) => void;
  const done = new Promise<number>((resolve, reject) => {
    finish = resolve;
    fail = reject;
  });
  // A failure while the other channels are still being set up must not count as unhandled.
  done.catch(() => undefined);
  const countAcked = (count: number): void => {
    acked += count;
    if (acked < opts.messages) return;
    if (violations > 0 || acked > opts.messages) fail(new Error(`raw amqplib: ${violations} per-key order violations, ${acked} acks for ${opts.messages} messages`));
    else finish(performance.now());
  };

  const channels: { channel: Channel; tag: string }[] = [];
  for (const queue of names.queues) {
    const channel = await conn.createChannel();
    channel.on('error', (err: Error) => fail(err));
    await channel.prefetch(opts.prefetch);
    // For ackMode 'multiple': the newest unacked delivery and how many it covers.
    let pending: ConsumeMessage | undefined;
    let pendingCount = 0;
    const flush = (): void => {
      if (pending === undefined) return;
      channel.ack(pending, true);
      const count = pendingCount;
      pending = undefined;
      pendingCount = 0;
      countAcked(count);
    };
    const onMessage = (msg: ConsumeMessage | null): void => {
      if (msg === null) {
        fail(new Error(`raw amqplib: the broker cancelled the consumer of ${queue}`));
        return;
      }
      const body = JSON.parse(msg.content.toString()) as { key: string; n: number };
      const previous = lastN.get(body.key);
      if (previous !== undefined && body.n <= previous) violations++;
      lastN.set(body.key, body.n);
      if (ackMode === 'single') {
        channel.ack(msg);
        countAcked(1);
        return;
      }
      // Deliveries of one socket read arrive in one turn; ack them together right after it.
      if (pending === undefined) setImmediate(flush);
      pending = msg;
      pendingCount++;
    };
    const { consumerTag } = await channel.consume(queue, onMessage, { noAck: false });
    channels.push({ channel, tag: consumerTag });
  }

  // Best effort: after a failure a consumer may already be cancelled or its channel closed, and
  // that must not hide the failure itself.
  const stop = async (): Promise<void> => {
    for (const { channel, tag } of channels) {
      await channel.cancel(tag).catch(() => undefined);
      await channel.close().catch(() => undefined);
    }
  };
  return { done, stop };
}

/** A run whose consumers failed or stalled must still stop them, so the timeout is explicit. */
async function awaitPhase(done: Promise<number>, what: string): Promise<number> {
  const at = await within(done, PHASE_CAP_MS);
  if (at === 'timeout') throw new Error(`raw amqplib: ${what} did not finish within ${PHASE_CAP_MS / 1000} s`);
  return at;
}

async function runDetailed(opts: RawAmqpOptions, ackMode: AckMode): Promise<Detail> {
  const names = namesOf(opts);
  const pubConn = tolerateErrors(await connect(opts.url));
  let subConn: ChannelModel | undefined;
  try {
    subConn = tolerateErrors(await connect(opts.url));
    const admin = tolerateErrors(await pubConn.createChannel());
    await declare(admin, names);
    await admin.close();
    const confirm = tolerateErrors(await pubConn.createConfirmChannel());
    const { publishAll } = producer(confirm, opts, names.exchange);

    // Phase 1: publish-only, into idle queues.
    let cpu = process.cpuUsage();
    let broker = brokerCpuMicros();
    const publishMs = await publishAll();
    const publishCpuMicros = cpuMicros(cpu) / opts.messages;
    const publishBrokerCpuMicros = brokerCpuSince(broker) / opts.messages;

    // Phase 2: drain the backlog of phase 1.
    const drainStarted = performance.now();
    cpu = process.cpuUsage();
    broker = brokerCpuMicros();
    const drain = await startConsumers(subConn, opts, names, ackMode);
    let consumeMs: number;
    let consumeCpuMicros: number;
    let consumeBrokerCpuMicros: number;
    try {
      consumeMs = (await awaitPhase(drain.done, 'the drain')) - drainStarted;
      consumeCpuMicros = cpuMicros(cpu) / opts.messages;
      consumeBrokerCpuMicros = brokerCpuSince(broker) / opts.messages;
    } finally {
      await drain.stop();
    }

    // Phase 3: consumers subscribed first, then publish; the clock runs to the last ack.
    const live = await startConsumers(subConn, opts, names, ackMode);
    let firstPublish = 0;
    let e2eMs: number;
    let concurrentPublishMs: number;
    let endToEndCpuMicros: number;
    let endToEndBrokerCpuMicros: number;
    cpu = process.cpuUsage();
    broker = brokerCpuMicros();
    try {
      // Both promises are awaited together so a consumer failure during publishing is not left unhandled.
      const [published, lastAck] = await Promise.all([publishAll(() => (firstPublish = performance.now())), awaitPhase(live.done, 'the end-to-end phase')]);
      concurrentPublishMs = published;
      e2eMs = lastAck - firstPublish;
      endToEndCpuMicros = cpuMicros(cpu) / opts.messages;
      endToEndBrokerCpuMicros = brokerCpuSince(broker) / opts.messages;
    } finally {
      await live.stop();
    }
    await confirm.close();

    return {
      messages: opts.messages,
      publishMs,
      consumeMs,
      publishCpuMicros,
      consumeCpuMicros,
      publishBrokerCpuMicros,
      consumeBrokerCpuMicros,
      endToEndCpuMicros,
      endToEndBrokerCpuMicros,
      endToEndMsgsPerSec: opts.messages / (e2eMs / 1000),
      publishMsgsPerSec: opts.messages / (publishMs / 1000),
      concurrentPublishMsgsPerSec: opts.messages / (concurrentPublishMs / 1000),
    };
  } finally {
    // Closing the connections first drops any unacked deliveries, so the queues delete at once.
    await subConn?.close().catch(() => undefined);
    await pubConn.close().catch(() => undefined);
    await cleanup(opts.url, names);
  }
}

export async function runRawAmqplib(opts: RawAmqpOptions): Promise<RawAmqpResult> {
  const { concurrentPublishMsgsPerSec: _info, ...result } = await runDetailed(opts, 'single');
  return result;
}

function positiveInt(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`raw amqplib: --${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      messages: { type: 'string' },
      keys: { type: 'string' },
      partitions: { type: 'string' },
      'payload-bytes': { type: 'string' },
      'publish-window': { type: 'string' },
      prefetch: { type: 'string' },
      runs: { type: 'string' },
      ack: { type: 'string' },
    },
  });
  const ackMode: AckMode = values.ack === 'multiple' ? 'multiple' : 'single';
  if (values.ack !== undefined && values.ack !== 'single' && values.ack !== 'multiple') throw new Error('raw amqplib: --ack must be single or multiple');
  const runs = positiveInt('runs', values.runs, 3);
  const opts: Omit<RawAmqpOptions, 'queuePrefix'> = {
    url: values.url ?? process.env.BENCH_AMQP_URL ?? DEFAULTS.url,
    messages: positiveInt('messages', values.messages, DEFAULTS.messages),
    keys: positiveInt('keys', values.keys, DEFAULTS.keys),
    partitions: positiveInt('partitions', values.partitions, DEFAULTS.partitions),
    payloadBytes: positiveInt('payload-bytes', values['payload-bytes'], DEFAULTS.payloadBytes),
    publishWindow: positiveInt('publish-window', values['publish-window'], DEFAULTS.publishWindow),
    prefetch: positiveInt('prefetch', values.prefetch, DEFAULTS.prefetch),
  };
  const label = `raw amqplib quorum${ackMode === 'multiple' ? ' (ack multiple)' : ''}`;
  progress(
    `${label}: ${fmtInt(opts.messages)} messages, ${fmtInt(opts.keys)} keys, ${opts.partitions} partitions, ${opts.payloadBytes} B, ` +
      `publish window ${opts.publishWindow}, prefetch ${opts.prefetch}, ${runs} runs`,
  );

  const results: Detail[] = [];
  for (let run = 1; run <= runs; run++) {
    const r = await runDetailed({ ...opts, queuePrefix: `botqueue-bench-raw-${process.pid}-${run}` }, ackMode);
    results.push(r);
    console.log(
      `run ${run}: e2e ${fmtInt(r.endToEndMsgsPerSec)} msg/s (publish ${fmtInt(r.concurrentPublishMsgsPerSec)} msg/s alongside), ` +
        `publish-only ${fmtInt(r.publishMsgsPerSec)} msg/s (${fmtInt(r.publishMs)} ms), drain ${fmtInt(r.messages / (r.consumeMs / 1000))} msg/s (${fmtInt(r.consumeMs)} ms)`,
    );
  }
  const med = (pick: (r: Detail) => number): string => fmtInt(median(results.map(pick)));
  console.log(`${label} e2e: ${med((r) => r.endToEndMsgsPerSec)} msg/s (median of ${runs})`);
  console.log(`${label} publish-only: ${med((r) => r.publishMsgsPerSec)} msg/s (median of ${runs})`);
  console.log(`${label} drain: ${med((r) => r.messages / (r.consumeMs / 1000))} msg/s (median of ${runs})`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
