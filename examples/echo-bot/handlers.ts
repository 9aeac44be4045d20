/**
 * The echo/counter bot: botqueue handlers for the `updates` topic, keyed by chat.
 *
 * Updates come as `{ "text": "..." }` published to /v1/topics/updates/messages, or as Telegram
 * updates received on /webhooks/telegram (with TELEGRAM_SECRET_TOKEN set; the config stores
 * them in the same topic). For each update of a chat it counts the chat's messages and replies
 * `#<n> <text>`: by appending a line to data/echo-bot/outbox.log, or, for a Telegram update
 * with TELEGRAM_BOT_TOKEN set, for real: `ctx.reply` puts it on the outbound queue, and the
 * sender that `botqueue start` runs calls sendMessage for its chat. It shows:
 * - per-chat order: a chat's replies are numbered #1, #2, #3 in the order its updates were
 *   published, whatever the number of workers and chats at once;
 * - ctx.once: the count and the reply are steps recorded once per update, so a redelivered
 *   update (after a crash or a retry) neither counts twice nor replies twice;
 * - a poison message: `{ "text": "/poison" }` throws PermanentError and lands in the
 *   dead-letter queue at once (no retries); the chat's next messages go on.
 *
 * Counters live in one small JSON file per chat under data/echo-bot/counters/, so a restart
 * keeps them. One file per chat is safe with several worker processes: botqueue runs a chat's
 * messages one at a time, so two processes never write the same chat's file at once.
 */
import { appendFile, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { PermanentError, type Envelope, type HandlerContext } from 'botqueue';

/** Where the bot keeps its state and its replies; relative to the directory `botqueue start` runs in. */
const dataDir = resolve(process.env.ECHO_BOT_DATA ?? join('data', 'echo-bot'));

export async function onUpdate(message: Envelope, ctx: HandlerContext): Promise<void> {
  const text = message.headers['bq-platform'] === 'telegram' ? telegramText(message.payload) : textOf(message.payload);
  // A Telegram update without text (a sticker, a member joining): nothing to echo.
  if (text === undefined) return;
  if (text === '/poison') throw new PermanentError('poison message: "/poison" always fails, so it goes to the dead-letter queue');
  const chat = message.key ?? 'no-chat';
  // Each step runs once per update id: on redelivery the recorded result is returned instead.
  const n = await ctx.once('count', () => incrementCounter(chat));
  // Through the outbound queue (per-chat order, Telegram's limits, 429s): its id is derived from this update's, so a redelivery stores it once.
  if (process.env.TELEGRAM_BOT_TOKEN && message.headers['bq-platform'] === 'telegram') await ctx.reply(`#${n} ${text}`);
  else await ctx.once('reply', () => sendReply(chat, `#${n} ${text}`));
}

function textOf(payload: unknown): string {
  // `{ "text": "hi" }`, or a Telegram Update `{ "message": { "text": "hi", ... } }`.
  const p = typeof payload === 'object' && payload !== null ? (payload as { text?: unknown; message?: { text?: unknown } }) : undefined;
  const text = p?.text ?? p?.message?.text;
  // A malformed update will never succeed: skip the retries.
  if (typeof text !== 'string') throw new PermanentError('an update needs a payload like { "text": "hi" }');
  return text;
}

/**
 * The text of a Telegram update (`/webhooks/telegram` stores the update whole, keyed
 * `telegram:<bot>:<chat id>`): a message, an edit, a channel post, or a button's data.
 */
function telegramText(payload: unknown): string | undefined {
  if (typeof payload !== 'object' || payload === null) return undefined;
  const update = payload as Record<string, { text?: unknown; caption?: unknown; data?: unknown } | undefined>;
  for (const field of ['message', 'edited_message', 'channel_post', 'edited_channel_post', 'business_message']) {
    const text = update[field]?.text ?? update[field]?.caption;
    if (typeof text === 'string') return text;
  }
  const data = update.callback_query?.data;
  return typeof data === 'string' ? data : undefined;
}

async function incrementCounter(chat: string): Promise<number> {
  const dir = join(dataDir, 'counters');
  const file = join(dir, `${encodeURIComponent(chat)}.json`);
  let count = 0;
  try {
    count = (JSON.parse(await readFile(file, 'utf8')) as { count: number }).count;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    await mkdir(dir, { recursive: true });
  }
  count++;
  // Write then rename: a crash leaves the old count or the new one, never half a file.
  await writeFile(`${file}.tmp`, JSON.stringify({ chat, count }));
  await rename(`${file}.tmp`, file);
  return count;
}

async function sendReply(chat: string, text: string): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  // One append per line (O_APPEND): lines from several worker processes stay whole.
  await appendFile(join(dataDir, 'outbox.log'), `${new Date().toISOString()} ${chat} ${text}\n`);
}
