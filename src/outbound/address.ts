/**
 * Where a reply goes and what is stored for the sender: the outbound topic of each platform,
 * the headers the gateway sets on an inbound update (GATEWAY-OUTBOUND-CONTRACT: the only thing
 * ctx.reply reads), and the payload of one outbound message. Pure functions over core only, so
 * the worker (ctx.reply), the client (bq.send) and the sender share them.
 */
import { createHash } from 'node:crypto';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import type { PublishInput } from '../core/envelope.js';

export const PLATFORMS = ['telegram', 'slack', 'discord', 'whatsapp'] as const;
export type Platform = (typeof PLATFORMS)[number];

/** The headers an inbound platform update carries (set by the gateway). */
export const Headers = {
  platform: 'bq-platform',
  chat: 'bq-chat',
  bot: 'bq-bot',
  thread: 'bq-thread',
  interactionToken: 'bq-interaction-token',
  receivedAt: 'bq-received-at',
} as const;

/** Outbound messages of a platform are stored here, keyed by chat. */
export function outboundTopic(platform: Platform): string {
  return `outbound.${platform}`;
}

export function isPlatform(value: unknown): value is Platform {
  return typeof value === 'string' && (PLATFORMS as readonly string[]).includes(value);
}

/**
 * What a reply says: a string (the text), or the platform's own request fields (Telegram
 * `{ text, parse_mode }`, Slack `{ text, blocks }`, Discord `{ content, embeds }`, WhatsApp
 * `{ type: 'image', image: {...} }`); the sender adds the address fields itself.
 */
export type ReplyMessage = string | Record<string, unknown>;

/** Options of ctx.reply, ctx.publish and bq.send. */
export interface SendOptions {
  /** The platform method (Telegram `sendPhoto`, Slack `chat.postEphemeral`); default: the platform's send-message method. */
  method?: string;
  /** Slack: the thread to answer in (`thread_ts`). */
  thread?: string;
}

/** A Discord interaction answered through its token (a follow-up) while the token is valid. */
export interface InteractionAddress {
  applicationId: string;
  token: string;
  /** Epoch ms the gateway received the interaction; the token is valid 15 minutes from then. */
  receivedAt: number;
}

/** The payload of one outbound message, as the sender reads it. */
export interface OutboundPayload {
  chat: string;
  /** The platform method; absent: the default send method. */
  method?: string;
  /** The request fields besides the address. */
  body: Record<string, unknown>;
  thread?: string;
  interaction?: InteractionAddress;
}

/** Where a reply to the handled message goes, read from its headers only. */
export interface ReplyAddress {
  platform: Platform;
  chat: string;
  thread?: string;
  interaction?: InteractionAddress;
}

/** Reads the reply address from an inbound update's headers; throws NO_REPLY_ADDRESS when they do not name one. */
export function replyAddress(headers: Record<string, string>): ReplyAddress {
  const platform = headers[Headers.platform];
  const chat = headers[Headers.chat];
  if (!isPlatform(platform) || chat === undefined || chat === '') {
    throw new BotqueueError(
      ErrorCodes.NO_REPLY_ADDRESS,
      `ctx.reply needs a message the gateway stored from a platform (headers ${Headers.platform} and ${Headers.chat}); this one has ${platform === undefined ? 'none' : `${Headers.platform}: ${platform}`}. Use bq.send(platform, chatId, message) to send to a chat of your choice.`,
    );
  }
  const address: ReplyAddress = { platform, chat };
  const thread = headers[Headers.thread];
  if (thread !== undefined && thread !== '') address.thread = thread;
  const token = headers[Headers.interactionToken];
  const applicationId = headers[Headers.bot];
  const receivedAt = Number(headers[Headers.receivedAt]);
  if (platform === 'discord' && token !== undefined && token !== '' && applicationId !== undefined && Number.isFinite(receivedAt)) {
    address.interaction = { applicationId, token, receivedAt };
  }
  return address;
}

/** The request fields of a message for a platform (a string becomes the platform's text field). */
export function messageBody(platform: Platform, message: ReplyMessage): Record<string, unknown> {
  if (typeof message === 'string') {
    if (message === '') throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, 'a reply needs some text, got an empty string');
    switch (platform) {
      case 'telegram':
      case 'slack':
        return { text: message };
      case 'discord':
        return { content: message };
      case 'whatsapp':
        return { type: 'text', text: { body: message } };
    }
  }
  if (typeof message !== 'object' || message === null || Array.isArray(message)) {
    throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, `a reply is a string or an object of the platform's request fields, got ${Array.isArray(message) ? 'an array' : typeof message}`);
  }
  return message;
}

/** The publish input of one outbound message (its id is the caller's: derived in a handler, random otherwise). */
export function outboundInput(address: ReplyAddress, message: ReplyMessage, options: SendOptions = {}, id?: string): PublishInput<OutboundPayload> {
  checkSendOptions(options);
  const payload: OutboundPayload = { chat: address.chat, body: messageBody(address.platform, message) };
  if (options.method !== undefined) payload.method = options.method;
  const thread = options.thread ?? address.thread;
  if (thread !== undefined) payload.thread = thread;
  if (address.interaction !== undefined) payload.interaction = address.interaction;
  const input: PublishInput<OutboundPayload> = { key: address.chat, payload, headers: { [Headers.platform]: address.platform, [Headers.chat]: address.chat } };
  if (id !== undefined) input.id = id;
  return input;
}

function checkSendOptions(options: SendOptions): void {
  if (typeof options !== 'object' || options === null) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'send options must be an object, e.g. { method: "sendPhoto" }');
  for (const [name, value] of Object.entries(options)) {
    if (name !== 'method' && name !== 'thread' && name !== 'step') throw new BotqueueError(ErrorCodes.INVALID_OPTION, `unknown send option "${name}" (known: method, thread, step)`, { details: { option: name } });
    if (value !== undefined && (typeof value !== 'string' || value === '')) throw new BotqueueError(ErrorCodes.INVALID_OPTION, `send option "${name}" must be a non-empty string`, { details: { option: name } });
  }
}

/** Message ids are at most 512 characters: a longer derived id is replaced by its hash. */
const MAX_DERIVED_ID = 512;

/**
 * The id of a message a handler publishes: the handled message's topic, group and id plus the
 * step name, so the same handler step publishes the same id on every redelivery (and the
 * broker's dedup drops the repeat).
 */
export function derivedId(topic: string, group: string, messageId: string, step: string): string {
  const id = `${topic}/${group}/${messageId}/${step}`;
  return id.length <= MAX_DERIVED_ID ? id : `sha256:${createHash('sha256').update(id).digest('hex')}`;
}
