/**
 * The botqueue scenarios of bench/sqlite.ts, each on a fresh SQLite file through the public API
 * (`connect('sqlite:...')`, default settings: WAL, synchronous=FULL, group commit).
 */
import { connect, type Botqueue, type PublishInput } from '../src/index.js';
import { percentile, signal, sleep, tempDb, within } from './lib.js';

export const TOPIC = 'bench';
export const GROUP = 'bench';
/** Roughly the size of a chat update's text. */
const TEXT = 'hello bot, this is a fairly typical short chat message of about one hundred bytes';

export interface Payload {
  /** Key index (the conversation). */
  k: number;
  /** Message number, 0..N-1, in publish order. */
  n: number;
  /** performance.now() just before publish was called (latency scenario), else 0. */
  t: number;
  text: string;
}

export function message(n: number, keys: number, t = 0): { key: string; payload: Payload } {
  const k = n % keys;
  return { key: `chat:${k}`, payload: { k, n, t, text: TEXT } };
}

interface Opened {
  bq: Botqueue;
  dispose: () => Promise<void>;
}

/** A fresh file with the topic; `subscribe` adds the consumer group (as a deployed topic has). */
async function open(dir: string, label: string, partitions: number, subscribe: boolean): Promise<Opened> {
  const file = tempDb(dir, label);
  const bq = await connect(`sqlite:${file.path}`);
  await bq.createTopic(TOPIC, { partitions });
  if (subscribe) await bq.broker.ensureGroup(TOPIC, GROUP);
  return {
    bq,
    dispose: async () => {
      await bq.close();
      file.dispose();
    },
  };
}

/** One producer awaiting `publishBatch` of `batch` messages, `total` messages; msgs/s. */
export async function publishBatched(dir: string, partitions: number, total: number, batch: number, withIds: boolean): Promise<number> {
  const { bq, dispose } = await open(dir, 'publish-batch', partitions, true);
  try {
    const started = performance.now();
    for (let i = 0; i < total; i += batch) {
      const count = Math.min(batch, total - i);
      const messages = new Array<PublishInput<Payload>>(count);
      for (let j = 0; j < count; j++) {
        const m: PublishInput<Payload> = message(i + j, 1000);
        if (withIds) m.id = `tg:${i + j}`;
        messages[j] = m;
      }
      await bq.publishBatch(TOPIC, messages);
    }
    return total / ((performance.now() - started) / 1000);
  } finally {
    await dispose();
  }
}

/** `producers` concurrent loops of `await bq.publish(one message)` for `durationMs`; msgs/s. */
export async function publishSingles(dir: string, partitions: number, producers: number, durationMs: number): Promise<number> {
  const { bq, dispose } = await open(dir, 'publish-single', partitions, true);
  try {
    let count = 0;
    const started = performance.now();
    const deadline = started + durationMs;
    const producer = async (p: number): Promise<void> => {
      for (let n = p; performance.now() < deadline; n += producers) {
        await bq.publish(TOPIC, message(n, 1000));
        count++;
      }
    };
    await Promise.all(Array.from({ length: producers }, (_, p) => producer(p)));
    return count / ((performance.now() - started) / 1000);
  } finally {
    await dispose();
  }
}

export interface E2eResult {
  /** Messages handled / (last handled − first publish), msgs/s. */
  rate: number;
  /** When the producer had stored everything, seconds after the first publish. */
  publishedAtS: number;
  elapsedS: number;
  handled: number;
  duplicates: number;
  /** Per-key order violations seen by the handler (must be 0). */
  orderViolations: number;
  /** True if the run hit its time cap before every message was handled. */
  capped: boolean;
  prefetch: number;
}

/**
 * Producer and worker together on one client: the producer awaits `publishBatch` of `batch`
 * messages in a loop while the worker consumes; the clock runs from the first publish to the
 * last handled message. The handler does nothing but count and check per-key order.
 */
export async function endToEnd(dir: string, partitions: number, keys: number, total: number, batch: number, concurrency: number, capMs: number): Promise<E2eResult> {
  const { bq, dispose } = await open(dir, `e2e-${keys}`, partitions, false);
  try {
    const seen = new Uint8Array(total);
    const lastOfKey = new Float64Array(keys).fill(-1);
    let handled = 0;
    let duplicates = 0;
    let violations = 0;
    let lastHandledAt = 0;
    const finished = signal();
    const worker = bq.worker<Payload>(
      TOPIC,
      (msg) => {
        const { k, n } = msg.payload;
        if (seen[n] === 1) duplicates++;
        else {
          seen[n] = 1;
          handled++;
        }
        if (n <= lastOfKey[k]!) violations++;
        lastOfKey[k] = n;
        lastHandledAt = performance.now();
        if (handled === total) finished.resolve();
      },
      { group: GROUP, concurrency },
    );
    await worker.ready;
    const started = performance.now();
    let publishedAt = Number.NaN;
    const producing = (async () => {
      for (let i = 0; i < total; i += batch) {
        const count = Math.min(batch, total - i);
        const messages = new Array<PublishInput<Payload>>(count);
        for (let j = 0; j < count; j++) messages[j] = message(i + j, keys);
        await bq.publishBatch(TOPIC, messages);
      }
      publishedAt = performance.now();
    })();
    const outcome = await within(finished.promise, capMs);
    const end = outcome === 'timeout' ? performance.now() : lastHandledAt;
    await producing;
    const prefetch = worker.options.prefetch;
    await worker.close();
    const elapsedS = (end - started) / 1000;
    return {
      rate: handled / elapsedS,
      publishedAtS: (publishedAt - started) / 1000,
      elapsedS,
      handled,
      duplicates,
      orderViolations: violations + worker.orderViolations,
      capped: outcome === 'timeout',
      prefetch,
    };
  } finally {
    await dispose();
  }
}

export interface LatencyResult {
  p50: number;
  p99: number;
  max: number;
  /** Publish call → publish promise resolved (durable), p50 / p99. */
  publishP50: number;
  publishP99: number;
  /** Messages per second the paced producer actually issued. */
  achievedRate: number;
  measured: number;
  lost: number;
}

/**
 * A paced, open-loop producer: message i is published (single `bq.publish`, not awaited by the
 * pacing loop) at start + i / rate, 1,000 keys, for `durationMs`, while a worker handles them.
 * Latency = handler start − performance.now() taken just before publish was called. The first
 * `warmupMs` of messages are not counted.
 */
export async function latency(dir: string, partitions: number, rate: number, durationMs: number, warmupMs: number, concurrency: number): Promise<LatencyResult> {
  const { bq, dispose } = await open(dir, 'latency', partitions, false);
  try {
    const total = Math.max(1, Math.round((rate * durationMs) / 1000));
    const skip = Math.min(total - 1, Math.round((rate * warmupMs) / 1000));
    const endToEndMs = new Float64Array(total).fill(Number.NaN);
    const publishMs = new Float64Array(total).fill(Number.NaN);
    let handled = 0;
    let failed = 0;
    const finished = signal();
    const worker = bq.worker<Payload>(
      TOPIC,
      (msg) => {
        const now = performance.now();
        const { n, t } = msg.payload;
        if (Number.isNaN(endToEndMs[n]!)) {
          endToEndMs[n] = now - t;
          handled++;
          if (handled === total) finished.resolve();
        }
      },
      { group: GROUP, concurrency },
    );
    await worker.ready;
    const started = performance.now();
    let sent = 0;
    let lastSentAt = started;
    while (sent < total) {
      const due = Math.min(total, Math.floor(((performance.now() - started) * rate) / 1000) + 1);
      while (sent < due) {
        const n = sent++;
        const m = message(n, 1000);
        const t = performance.now();
        m.payload.t = t;
        lastSentAt = t;
        bq.publish(TOPIC, m).then(
          () => {
            publishMs[n] = performance.now() - t;
          },
          () => {
            failed++;
          },
        );
      }
      await sleep(1);
    }
    const outcome = await within(finished.promise, 30_000);
    await worker.close();
    const sortedE2e = Float64Array.from(endToEndMs.subarray(skip).filter((v) => !Number.isNaN(v))).sort();
    const sortedPublish = Float64Array.from(publishMs.subarray(skip).filter((v) => !Number.isNaN(v))).sort();
    return {
      p50: percentile(sortedE2e, 50),
      p99: percentile(sortedE2e, 99),
      max: sortedE2e.length === 0 ? Number.NaN : sortedE2e[sortedE2e.length - 1]!,
      publishP50: percentile(sortedPublish, 50),
      publishP99: percentile(sortedPublish, 99),
      achievedRate: Math.max(1, total - 1) / Math.max(0.001, (lastSentAt - started) / 1000),
      measured: sortedE2e.length,
      lost: outcome === 'timeout' ? total - handled + failed : failed,
    };
  } finally {
    await dispose();
  }
}
