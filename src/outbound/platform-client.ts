/**
 * What the sender needs from one platform's API client: which limiters a message counts
 * against, and one call that says how it went. Each platform module (telegram.ts, slack.ts,
 * discord.ts, whatsapp.ts) reads its own answers (429 formats differ) into a SendOutcome.
 */
import type { OutboundPayload, Platform } from './address.js';
import type { RateLimit } from './rate-limit.js';

export type SendOutcome =
  /** Sent. `result` is the part of the answer worth recording (message id), kept small. */
  | { kind: 'sent'; status: number; result?: unknown; pauseChatMs?: number }
  /** 429 (or the platform's rate-limit error): wait `retryAfterMs`; `scope` says what waits. */
  | { kind: 'rate-limited'; status: number; retryAfterMs: number; scope: 'chat' | 'global' }
  /** 5xx, network error or timeout: retry with backoff. */
  | { kind: 'unavailable'; status?: number; detail: string }
  /** Refused (a 4xx other than 429, or an answer saying not ok): never retried, dead-lettered with the answer. */
  | { kind: 'rejected'; status: number; body: string };

export interface PlatformLimits {
  /** Per chat (Telegram ~1/s, Slack 1/s per channel, WhatsApp's pair limit). */
  chat?: RateLimit;
  /** Per group chat, on top of the chat's (Telegram 20/min). */
  group?: RateLimit;
  /** Per bot, every chat together (Telegram ~30/s, Discord 50/s, WhatsApp 80/s). */
  global?: RateLimit;
}

export interface PlatformClient {
  readonly platform: Platform;
  /** The limiters this message counts against, by name (`chat:<id>`, `group:<id>`, `global`). */
  limitsFor(payload: OutboundPayload, limits: PlatformLimits, now: number): Array<readonly [string, RateLimit]>;
  send(payload: OutboundPayload, signal: AbortSignal): Promise<SendOutcome>;
}

/** The limiter names of an ordinary chat message: its chat and the global one. */
export function chatAndGlobal(payload: OutboundPayload, limits: PlatformLimits): Array<readonly [string, RateLimit]> {
  const names: Array<readonly [string, RateLimit]> = [];
  if (limits.chat !== undefined) names.push([`chat:${payload.chat}`, limits.chat]);
  if (limits.global !== undefined) names.push(['global', limits.global]);
  return names;
}
