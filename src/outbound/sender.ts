/**
 * The sender: a botqueue worker on `outbound.<platform>` (keyed by chat, so a chat's messages
 * go one at a time, in order) that calls the platform's API within its limits.
 *
 * - Limits: before each call the message waits for its limiters (chat, group, global). A wait
 *   up to `maxInlineWaitMs` is slept in the handler; a longer one is a `RetryLater`, so the
 *   chat waits without holding a handler slot.
 * - 429 (`retry_after`): `RetryLater(retry_after)`: only that chat waits (a Discord `global`
 *   429 or a WhatsApp throughput error also pauses the global limiter).
 * - 5xx, network errors, timeouts: an ordinary failure, retried with the worker's backoff
 *   while the chat waits; dead-lettered after `maxAttempts`.
 * - Other 4xx: `BOTQUEUE_PLATFORM_REJECTED` at once, dead-lettered with the status and body.
 * - At most once per outbound message id in the normal path: the call runs inside
 *   `ctx.once('send')`, so a redelivered message whose call completed and was recorded is not
 *   sent again. A crash between the call's answer and its record repeats it (docs/outbound.md).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Botqueue } from '../client.js';
import type { Envelope } from '../core/envelope.js';
import { BotqueueError, ErrorCodes, PermanentError } from '../core/errors.js';
import { RetryLater } from '../core/retry-later.js';
import { recordOutboundSend, type OutboundOutcome } from '../observability/metrics.js';

/** The metrics outcome of each kind of answer (a 429 also counts in botqueue_outbound_rate_limited_total). */
const OUTCOME_LABEL = { sent: 'sent', 'rate-limited': 'rate_limited', unavailable: 'failed', rejected: 'permanent_failure' } as const satisfies Record<string, OutboundOutcome>;
import type { HandlerContext } from '../worker/handler-context.js';
import type { WorkerOptions } from '../worker/options.js';
import type { Worker } from '../worker/worker.js';
import { outboundTopic, type OutboundPayload } from './address.js';
import type { PlatformClient, PlatformLimits } from './platform-client.js';
import { Limiters } from './rate-limit.js';

export interface SenderOptions {
  /** The platform's API client (telegramClient, slackClient, discordClient, whatsappClient). */
  client: PlatformClient;
  /** The platform's limits; default: the platform module's (e.g. TELEGRAM_LIMITS). */
  limits: PlatformLimits;
  /** A limiter wait up to this is slept in the handler; a longer one becomes a RetryLater. Default 1 000 ms. */
  maxInlineWaitMs?: number;
  /** Options of the sender's worker. Defaults: group `botqueue-sender`, concurrency 64, maxAttempts 8, maxDeferrals 10 000. */
  worker?: Partial<WorkerOptions>;
}

export interface Sender {
  readonly topic: string;
  readonly worker: Worker<OutboundPayload>;
  close(): Promise<{ timedOut: boolean }>;
}

/** What `ctx.once('send')` records for a sent message. */
interface SendRecord {
  status: number;
  result?: unknown;
}

export function startSender(bq: Botqueue, options: SenderOptions): Sender {
  const { client, limits } = options;
  const maxInlineWaitMs = options.maxInlineWaitMs ?? 1_000;
  const limiters = new Limiters();
  const topic = outboundTopic(client.platform);

  /** Waits for the message's limiters, or defers it when the wait is long; then counts the send (call the result when it is answered). */
  async function admit(payload: OutboundPayload, signal: AbortSignal): Promise<() => void> {
    for (;;) {
      const now = Date.now();
      const names = client.limitsFor(payload, limits, now);
      const wait = limiters.waitMs(names, now);
      if (wait === 0) {
        return limiters.take(names, now);
      }
      if (wait > maxInlineWaitMs) throw new RetryLater(wait, `${client.platform} rate limit`);
      await sleep(wait, undefined, { signal });
    }
  }

  async function sendOnce(payload: OutboundPayload, signal: AbortSignal): Promise<SendRecord> {
    const answered = await admit(payload, signal);
    let outcome;
    try {
      outcome = await client.send(payload, signal);
    } finally {
      answered();
    }
    recordOutboundSend(client.platform, OUTCOME_LABEL[outcome.kind]);
    switch (outcome.kind) {
      case 'sent':
        if (outcome.pauseChatMs !== undefined && limits.chat !== undefined) limiters.block(`chat:${payload.chat}`, limits.chat, Date.now() + outcome.pauseChatMs);
        return outcome.result === undefined ? { status: outcome.status } : { status: outcome.status, result: outcome.result };
      case 'rate-limited':
        if (outcome.scope === 'global' && limits.global !== undefined) limiters.block('global', limits.global, Date.now() + outcome.retryAfterMs);
        throw new RetryLater(outcome.retryAfterMs, `${client.platform} answered ${outcome.status}: rate limited`);
      case 'unavailable':
        throw new BotqueueError(ErrorCodes.PLATFORM_UNAVAILABLE, `${client.platform} API unavailable (${outcome.status === undefined ? outcome.detail : `HTTP ${outcome.status}`}); retrying with backoff`, { retriable: true });
      case 'rejected':
        throw new BotqueueError(ErrorCodes.PLATFORM_REJECTED, `${client.platform} refused the message: HTTP ${outcome.status}: ${outcome.body}`, {
          details: { status: outcome.status, body: outcome.body },
        });
    }
  }

  const worker = bq.worker<OutboundPayload>(
    topic,
    async (message: Envelope<OutboundPayload>, ctx: HandlerContext) => {
      const payload = readPayload(message.payload);
      await ctx.once('send', () => sendOnce(payload, ctx.signal));
    },
    { group: 'botqueue-sender', concurrency: 64, maxAttempts: 8, maxDeferrals: 10_000, ...options.worker },
  );
  return { topic, worker, close: () => worker.close() };
}

function readPayload(payload: unknown): OutboundPayload {
  const p = payload as Partial<OutboundPayload> | null;
  if (typeof p !== 'object' || p === null || typeof p.chat !== 'string' || p.chat === '' || typeof p.body !== 'object' || p.body === null) {
    throw new PermanentError('an outbound message needs a payload { chat, body } (publish it with bq.send or ctx.reply)');
  }
  return p as OutboundPayload;
}
