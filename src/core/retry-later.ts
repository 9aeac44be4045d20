import { BotqueueError, ErrorCodes } from './errors.js';

/**
 * Throw it from a handler when the message cannot be handled *yet* (a platform answered 429
 * with `retry_after`, a downstream asked to come back later). It is not a failure: the message
 * comes back after at least `delayMs`, its key waits meanwhile (order holds), and no attempt is
 * counted toward `maxAttempts`. A worker's `maxDeferrals` bounds how often one message may be
 * deferred; past it the failure policy applies as if its attempts were exhausted.
 *
 * @example
 * if (response.status === 429) throw new RetryLater(response.retryAfterSeconds * 1_000, 'telegram 429');
 */
export class RetryLater extends BotqueueError {
  /** How long to wait before the next delivery, in ms. */
  readonly delayMs: number;
  readonly reason: string | undefined;

  constructor(delayMs: number, reason?: string, options: { cause?: unknown } = {}) {
    if (!isDelay(delayMs)) {
      // Thrown from the handler instead, so the message is retried as an ordinary failure and the error says why.
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, `RetryLater needs delayMs, a finite number of ms ≥ 0; got ${String(delayMs)}`);
    }
    super(ErrorCodes.RETRY_LATER, reason === undefined ? `retry after ${delayMs} ms` : `${reason} (retry after ${delayMs} ms)`, { retriable: true, cause: options.cause });
    this.delayMs = delayMs;
    this.reason = reason;
  }
}

/** What a worker needs from a thrown RetryLater. */
export interface Deferral {
  /** Whole ms (rounded up, so the message never comes back before it asked). */
  delayMs: number;
  reason: string | null;
}

/**
 * The deferral a thrown value asks for, or undefined when it is not a valid RetryLater.
 * Recognised by its code, not its class: a handler may import RetryLater from another copy of
 * botqueue. A RetryLater-coded value without a usable `delayMs` is an ordinary failure.
 */
export function readDeferral(thrown: unknown): Deferral | undefined {
  if (typeof thrown !== 'object' || thrown === null) return undefined;
  const { code, delayMs, reason } = thrown as { code?: unknown; delayMs?: unknown; reason?: unknown };
  if (code !== ErrorCodes.RETRY_LATER || !isDelay(delayMs)) return undefined;
  return { delayMs: Math.ceil(delayMs), reason: typeof reason === 'string' ? reason : null };
}

function isDelay(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0;
}
