/**
 * `botqueue/grammy`: runs an existing grammY bot's handlers on botqueue. Replace the bot's
 * start line (`bot.start()`) with `await runOnBotqueue(bot)`; nothing else in the file changes.
 *
 * - Each Telegram update the gateway stored (topic `telegram`, the Update as payload, keyed by
 *   chat) goes to `bot.handleUpdate` in a botqueue worker: one update at a time per chat, in
 *   order; a handler that throws is retried with backoff, then dead-lettered (bot.catch is not
 *   called: botqueue's retries and DLQ take its place).
 * - `api: 'queue'` (the default): the bot's send calls (sendMessage, sendPhoto by file id or
 *   URL, editMessageText, deleteMessage…) go through the outbound queue `outbound.telegram`,
 *   installed as a grammY API transformer: inside a handler with an id derived from the update
 *   (a redelivered update stores them once), outside one with a fresh id. The call resolves
 *   once the message is stored, with a placeholder result (message_id 0: the real id is known
 *   only when the sender has sent it). Other calls (getMe, answerCallbackQuery, uploads of
 *   local files) go straight to the API. `api: 'direct'`: every call goes straight to the API.
 * - With `api: 'queue'` the sender for outbound.telegram runs in this process (through the
 *   bot's own API object, so its apiRoot and other transformers apply) unless `sender: false`
 *   (when `botqueue start` with TELEGRAM_BOT_TOKEN runs it).
 *
 * grammY is not a dependency of botqueue: this module uses only the bot object it is given.
 *
 * @example
 * const bot = new Bot(process.env.TELEGRAM_BOT_TOKEN!);
 * bot.on('message:text', (ctx) => ctx.reply(`echo: ${ctx.message.text}`));
 * await runOnBotqueue(bot); // was: bot.start();
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Bot, Context, Transformer } from 'grammy';
import { connect, DEFAULT_URL, type Botqueue } from '../client.js';
import type { Envelope } from '../core/envelope.js';
import { validateOptions, type OptionSpec } from '../core/options.js';
import type { HandlerContext } from '../worker/handler-context.js';
import type { WorkerOptions } from '../worker/options.js';
import type { Worker } from '../worker/worker.js';
import { outboundInput, outboundTopic, type OutboundPayload } from '../outbound/address.js';
import type { PlatformClient, SendOutcome } from '../outbound/platform-client.js';
import { startSender, type Sender } from '../outbound/sender.js';
import { TELEGRAM_LIMITS } from '../outbound/telegram.js';

export interface GrammyOptions {
  /** A client to use; default: `connect(url)`, closed by `stop()`. */
  bq?: Botqueue;
  /** The botqueue URL when no client is given. Default BOTQUEUE_URL, else the default SQLite file. */
  url?: string;
  /** The topic the gateway stores Telegram updates on. Default `telegram`. */
  topic: string;
  /** The worker's consumer group. Default `grammy`. */
  group: string;
  /** `queue` (default): send calls go through outbound.telegram; `direct`: straight to the API. */
  api: 'queue' | 'direct';
  /** Run the outbound.telegram sender in this process (with api: 'queue'). Default true. */
  sender: boolean;
  /** Options of the worker that runs the bot's handlers (concurrency, maxAttempts…). */
  worker?: Partial<WorkerOptions>;
}

export interface RunningBot {
  readonly bq: Botqueue;
  readonly worker: Worker;
  /** Stops the worker (running updates finish), the sender, and the client if this module opened it. */
  stop(): Promise<void>;
}

const spec: OptionSpec = {
  bq: { type: 'object' },
  url: { type: 'string', nonEmpty: true },
  topic: { type: 'string', nonEmpty: true },
  group: { type: 'string', nonEmpty: true },
  api: { type: 'string', oneOf: ['queue', 'direct'] },
  sender: { type: 'boolean' },
  worker: { type: 'object' },
};

/** Methods that send to a chat and whose result a bot rarely needs at once: queued with api: 'queue'. */
const QUEUED_METHODS = new Set([
  'sendMessage', 'sendPhoto', 'sendAnimation', 'sendAudio', 'sendDocument', 'sendVideo', 'sendVoice', 'sendVideoNote', 'sendSticker',
  'sendLocation', 'sendVenue', 'sendContact', 'sendPoll', 'sendDice', 'sendMediaGroup', 'forwardMessage', 'copyMessage',
  'editMessageText', 'editMessageCaption', 'editMessageReplyMarkup', 'deleteMessage', 'setMessageReaction', 'pinChatMessage',
]);

interface UpdateScope {
  ctx: HandlerContext;
  calls: number;
}

export async function runOnBotqueue<C extends Context>(bot: Bot<C>, options: Partial<GrammyOptions> = {}): Promise<RunningBot> {
  const resolved = validateOptions<GrammyOptions>('runOnBotqueue options', spec, options, { topic: 'telegram', group: 'grammy', api: 'queue', sender: true });
  const owned = resolved.bq === undefined;
  const bq = resolved.bq ?? (await connect(resolved.url ?? process.env.BOTQUEUE_URL ?? DEFAULT_URL));
  const scope = new AsyncLocalStorage<UpdateScope>();
  /** Set while the sender calls the API: those calls must go through, not back into the queue. */
  const sending = new AsyncLocalStorage<true>();
  let sender: Sender | undefined;
  try {
    if (resolved.api === 'queue') {
      bot.api.config.use(queueTransformer(bq, scope, sending));
      if (resolved.sender) sender = startSender(bq, { client: grammyClient(bot, sending), limits: TELEGRAM_LIMITS });
    }
    await bot.init();
    const worker = bq.worker(
      resolved.topic,
      async (message: Envelope, ctx: HandlerContext) => {
        await scope.run({ ctx, calls: 0 }, () => bot.handleUpdate(message.payload as Parameters<Bot<C>['handleUpdate']>[0]));
      },
      { group: resolved.group, ...resolved.worker },
    );
    await Promise.all([worker.ready, sender?.worker.ready]);
    let stopping: Promise<void> | undefined;
    const stop = (): Promise<void> =>
      (stopping ??= (async () => {
        await Promise.all([worker.close(), sender?.close()]);
        if (owned) await bq.close();
      })());
    // A bot file's own `process.once('SIGINT', () => bot.stop())` stops botqueue's worker.
    bot.stop = stop;
    return { bq, worker: worker, stop };
  } catch (error) {
    await sender?.close();
    if (owned) await bq.close();
    throw error;
  }
}

/** The grammY API transformer that stores send calls on outbound.telegram. */
function queueTransformer(bq: Botqueue, scope: AsyncLocalStorage<UpdateScope>, sending: AsyncLocalStorage<true>): Transformer {
  return (async (prev, method, payload, signal) => {
    const body = payload as Record<string, unknown> | undefined;
    if (sending.getStore() === true || !QUEUED_METHODS.has(method) || body === undefined || !isStorable(body) || (typeof body.chat_id !== 'string' && typeof body.chat_id !== 'number')) {
      return prev(method, payload, signal);
    }
    const chat = String(body.chat_id);
    const input = outboundInput({ platform: 'telegram', chat }, JSON.parse(JSON.stringify(body)) as Record<string, unknown>, { method });
    const current = scope.getStore();
    if (current !== undefined) await current.ctx.publish(outboundTopic('telegram'), input, { step: `grammy:${++current.calls}:${method}` });
    else await bq.publish(outboundTopic('telegram'), input);
    return { ok: true, result: placeholder(method, body) };
  }) as Transformer;
}

/** What a queued call resolves with: the shape of a sent message, with message_id 0 (the real one is not known yet). */
function placeholder(method: string, body: Record<string, unknown>): unknown {
  if (method === 'deleteMessage' || method === 'setMessageReaction' || method === 'pinChatMessage') return true;
  if (method === 'sendMediaGroup') return [];
  if (method === 'copyMessage') return { message_id: 0 };
  const chatId = body.chat_id;
  return { message_id: 0, date: Math.floor(Date.now() / 1000), chat: { id: typeof chatId === 'number' ? chatId : 0, type: 'private' }, text: body.text };
}

/**
 * Whether a call's payload can be stored as JSON: a file to upload (grammY's InputFile, which
 * has `toRaw`; a Buffer; a stream) cannot, and goes to the API directly. Class instances such as
 * InlineKeyboard are stored by their JSON form (what grammY would send).
 */
function isStorable(value: unknown): boolean {
  if (value === null || typeof value !== 'object') return typeof value !== 'function' && typeof value !== 'symbol' && typeof value !== 'bigint';
  if (value instanceof Uint8Array || typeof (value as { toRaw?: unknown }).toRaw === 'function' || typeof (value as { pipe?: unknown }).pipe === 'function') return false;
  return Object.values(value).every(isStorable);
}

/**
 * The sender's Telegram client made of the bot's own API object: its apiRoot, token and other
 * transformers apply. grammY throws GrammyError (error_code, parameters.retry_after) or HttpError.
 */
function grammyClient<C extends Context>(bot: Bot<C>, sending: AsyncLocalStorage<true>): PlatformClient {
  return {
    platform: 'telegram',
    limitsFor(payload, limits) {
      const names: Array<readonly [string, NonNullable<typeof limits.chat>]> = [];
      if (limits.chat !== undefined) names.push([`chat:${payload.chat}`, limits.chat]);
      if (limits.group !== undefined && payload.chat.startsWith('-')) names.push([`group:${payload.chat}`, limits.group]);
      if (limits.global !== undefined) names.push(['global', limits.global]);
      return names;
    },
    async send(payload: OutboundPayload, signal: AbortSignal): Promise<SendOutcome> {
      const method = payload.method ?? 'sendMessage';
      const call = (bot.api.raw as unknown as Record<string, ((body: unknown, signal?: AbortSignal) => Promise<unknown>) | undefined>)[method];
      if (call === undefined) return { kind: 'rejected', status: 400, body: `unknown Bot API method ${method}` };
      try {
        const result = (await sending.run(true, () => call({ chat_id: payload.chat, ...payload.body }, signal))) as { message_id?: unknown } | undefined;
        return { kind: 'sent', status: 200, result: result?.message_id === undefined ? undefined : { message_id: result.message_id } };
      } catch (error) {
        const e = error as { error_code?: unknown; description?: unknown; parameters?: { retry_after?: unknown } };
        if (typeof e.error_code !== 'number') return { kind: 'unavailable', detail: (error as Error).name };
        if (e.error_code === 429) return { kind: 'rate-limited', status: 429, retryAfterMs: typeof e.parameters?.retry_after === 'number' ? e.parameters.retry_after * 1_000 : 1_000, scope: 'chat' };
        if (e.error_code >= 500) return { kind: 'unavailable', status: e.error_code, detail: String(e.description) };
        return { kind: 'rejected', status: e.error_code, body: JSON.stringify({ ok: false, error_code: e.error_code, description: e.description }) };
      }
    },
  };
}


