import { checkName } from '../core/envelope.js';
import { validateOptions, type OptionSpec } from '../core/options.js';

export type FailurePolicy = 'dead-letter' | 'park-key';

export interface WorkerOptions {
  /** Consumer group. Every group receives every message; the workers of one group share them. Default `'default'`. */
  group: string;
  /** Handlers running at once, on distinct keys. Default 16. */
  concurrency: number;
  /** Attempts before the failure policy applies (the first delivery counts). Default 5. */
  maxAttempts: number;
  /**
   * Times one message may be deferred with `RetryLater` (which counts no attempt); the next
   * RetryLater applies the failure policy. Counted in the worker's memory. Default 100.
   */
  maxDeferrals: number;
  /** How long a partition stays owned without a heartbeat; renewed every leaseMs/3 while the worker lives. Default 30 000. */
  leaseMs: number;
  /** What happens after the last attempt: `'dead-letter'` (DLQ, the key goes on) or `'park-key'` (DLQ, the key waits). */
  onExhausted: FailurePolicy;
  /** Messages held in memory at most (running ones included). Default max(256, concurrency × 8). */
  prefetch: number;
  /** Messages of one key held in memory at most; the rest are read again when the key catches up. Default 16. */
  perKeyBuffer: number;
  /** Scale of the first retry's delay, in ms (full jitter). Default 1 000. */
  backoffBaseMs: number;
  /** Upper bound of a retry's delay, in ms. Default 60 000. */
  backoffCapMs: number;
  /** How long `close()` lets running handlers finish. Default 30 000. */
  shutdownTimeoutMs: number;
  /** Messages read per fetch at most. Default 256. */
  fetchBatch: number;
}

const spec: OptionSpec = {
  group: { type: 'string', nonEmpty: true },
  concurrency: { type: 'integer', min: 1, max: 10_000 },
  maxAttempts: { type: 'integer', min: 1, max: 1_000 },
  maxDeferrals: { type: 'integer', min: 0, max: 1_000_000 },
  leaseMs: { type: 'integer', min: 100, max: 3_600_000 },
  onExhausted: { type: 'string', oneOf: ['dead-letter', 'park-key'] },
  prefetch: { type: 'integer', min: 1, max: 1_000_000 },
  perKeyBuffer: { type: 'integer', min: 1, max: 100_000 },
  backoffBaseMs: { type: 'integer', min: 0 },
  backoffCapMs: { type: 'integer', min: 0 },
  shutdownTimeoutMs: { type: 'integer', min: 0 },
  fetchBatch: { type: 'integer', min: 1, max: 10_000 },
};

export function resolveWorkerOptions(input: unknown): WorkerOptions {
  const partial = validateOptions<Partial<WorkerOptions>>('worker options', spec, input, {});
  const concurrency = partial.concurrency ?? 16;
  const options: WorkerOptions = {
    group: partial.group ?? 'default',
    concurrency,
    maxAttempts: partial.maxAttempts ?? 5,
    maxDeferrals: partial.maxDeferrals ?? 100,
    leaseMs: partial.leaseMs ?? 30_000,
    onExhausted: partial.onExhausted ?? 'dead-letter',
    prefetch: partial.prefetch ?? Math.max(256, concurrency * 8),
    perKeyBuffer: partial.perKeyBuffer ?? 16,
    backoffBaseMs: partial.backoffBaseMs ?? 1_000,
    backoffCapMs: partial.backoffCapMs ?? 60_000,
    shutdownTimeoutMs: partial.shutdownTimeoutMs ?? 30_000,
    fetchBatch: partial.fetchBatch ?? 256,
  };
  checkName('group', options.group);
  return options;
}
