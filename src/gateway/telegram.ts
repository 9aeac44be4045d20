/**
 * Telegram updates → botqueue messages. Id `telegram:<bot>:<update_id>` (update ids are per
 * bot); key `telegram:<bot>:<chat id>`, the chat found per update type as in the table of
 * research/platforms.md §1.1 (a callback query's message chat, else its sender; inline queries
 * and payments by sender; poll answers by voter).
 */
import { isObject } from './body.js';
import { idText, notAnUpdate, platformHeaders, type GatewayMessage } from './message.js';

export const TELEGRAM_BOT_NAME = /^[A-Za-z0-9_-]{1,64}$/;
export const DEFAULT_TELEGRAM_BOT = 'default';

/** Where the conversation of each update type lives. */
const CHAT_OF: Record<string, (body: Record<string, unknown>) => unknown> = {
  callback_query: (q) => (isObject(q.message) ? chatId(q.message) : userId(q.from)),
  inline_query: (q) => userId(q.from),
  chosen_inline_result: (q) => userId(q.from),
  shipping_query: (q) => userId(q.from),
  pre_checkout_query: (q) => userId(q.from),
  purchased_paid_media: (q) => userId(q.from),
  poll_answer: (q) => (isObject(q.voter_chat) ? idText(q.voter_chat.id) : userId(q.user)),
  business_connection: (q) => idText(q.user_chat_id),
};

function chatId(object: Record<string, unknown>): string | undefined {
  return isObject(object.chat) ? idText(object.chat.id) : undefined;
}

function userId(user: unknown): string | undefined {
  return isObject(user) ? idText(user.id) : undefined;
}

/** The update type (its one optional field) and the chat id it belongs to, if any. */
export function telegramChat(update: Record<string, unknown>): { type: string | undefined; chat: string | undefined } {
  for (const [type, value] of Object.entries(update)) {
    if (type === 'update_id' || !isObject(value)) continue;
    const find = CHAT_OF[type];
    // Every other type (messages, edits, channel posts, member updates, reactions, boosts, join requests...) has .chat.
    const chat = find !== undefined ? find(value) : (chatId(value) ?? userId(value.from) ?? userId(value.user));
    return { type, chat: typeof chat === 'string' ? chat : undefined };
  }
  return { type: undefined, chat: undefined };
}

export function telegramMessage(update: unknown, options: { bot: string; topic: string; receivedAt: number }): GatewayMessage {
  if (!isObject(update)) throw notAnUpdate('a Telegram update is a JSON object with an update_id');
  const updateId = update.update_id;
  if (typeof updateId !== 'number' || !Number.isSafeInteger(updateId) || updateId < 0) {
    throw notAnUpdate('a Telegram update needs update_id, a non-negative integer');
  }
  const { chat } = telegramChat(update);
  return {
    topic: options.topic,
    // Without a chat (a poll's state), the bot's updates of that kind keep their order among themselves.
    key: `telegram:${options.bot}:${chat ?? 'no-chat'}`,
    id: `telegram:${options.bot}:${updateId}`,
    payload: update,
    headers: platformHeaders('telegram', options.receivedAt, { chat, bot: options.bot }),
  };
}
