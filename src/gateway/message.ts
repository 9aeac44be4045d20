/**
 * What every platform module makes of an update: one botqueue message (a WhatsApp POST may make
 * several). Its headers are all the outbound side (ctx.reply) reads to address a reply:
 * `bq-platform`, `bq-chat` (the reply address), `bq-bot`, `bq-thread`, `bq-interaction-token`,
 * `bq-received-at` (README, "Platform webhooks", lists what each platform puts in them).
 */
import { BodyError } from './body.js';

export type Platform = 'telegram' | 'slack' | 'discord' | 'whatsapp' | 'generic';
export const PLATFORMS: readonly Platform[] = ['telegram', 'slack', 'discord', 'whatsapp', 'generic'];

export interface GatewayMessage {
  topic: string;
  /** The conversation; undefined for an update without one (no order constraint). */
  key: string | undefined;
  /** Platform-aware idempotency key: a platform's retry of the same update has the same id. */
  id: string;
  /** The platform's payload, whole. */
  payload: unknown;
  headers: Record<string, string>;
}

/** Builds the contract's headers, leaving out those without a value. */
export function platformHeaders(platform: Platform, receivedAt: number, fields: { chat?: string | undefined; bot?: string | undefined; thread?: string | undefined; interactionToken?: string | undefined }): Record<string, string> {
  const headers: Record<string, string> = { 'bq-platform': platform };
  if (fields.chat !== undefined) headers['bq-chat'] = fields.chat;
  if (fields.bot !== undefined) headers['bq-bot'] = fields.bot;
  if (fields.thread !== undefined) headers['bq-thread'] = fields.thread;
  if (fields.interactionToken !== undefined) headers['bq-interaction-token'] = fields.interactionToken;
  headers['bq-received-at'] = String(receivedAt);
  return headers;
}

/** A string or a safe integer as an id string; undefined otherwise. */
export function idText(value: unknown): string | undefined {
  if (typeof value === 'string' && value !== '' && value.length <= 200) return value;
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  return undefined;
}

export function notAnUpdate(message: string): BodyError {
  return new BodyError('not_an_update', message);
}
