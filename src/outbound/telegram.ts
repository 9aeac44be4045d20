/**
 * Telegram Bot API client: `POST {root}/bot{token}/{method}` with JSON. 429 answers
 * `{"ok":false,"error_code":429,"parameters":{"retry_after":N}}` (seconds); limits per the Bot
 * FAQ: ~1 msg/s per chat, 20 msg/min per group, ~30 msg/s overall.
 */
import type { OutboundPayload } from './address.js';
import { callApi, classify, isAnswer, secondsToMs } from './http-call.js';
import { chatAndGlobal, type PlatformClient, type PlatformLimits, type SendOutcome } from './platform-client.js';

export const TELEGRAM_DEFAULT_ROOT = 'https://api.telegram.org';

export const TELEGRAM_LIMITS: PlatformLimits = {
  chat: { limit: 1, windowMs: 1_000 },
  group: { limit: 20, windowMs: 60_000 },
  global: { limit: 30, windowMs: 1_000 },
};

export function telegramClient(options: { token: string; apiRoot?: string }): PlatformClient {
  const root = (options.apiRoot ?? TELEGRAM_DEFAULT_ROOT).replace(/\/+$/, '');
  return {
    platform: 'telegram',
    limitsFor(payload: OutboundPayload, limits: PlatformLimits) {
      const names = chatAndGlobal(payload, limits);
      // Group and supergroup chat ids are negative.
      if (limits.group !== undefined && payload.chat.startsWith('-')) names.push([`group:${payload.chat}`, limits.group]);
      return names;
    },
    async send(payload: OutboundPayload, signal: AbortSignal): Promise<SendOutcome> {
      const method = payload.method ?? 'sendMessage';
      // A body that names its own chat_id (a grammY call) keeps it.
      const answer = await callApi(`${root}/bot${options.token}/${encodeURIComponent(method)}`, { body: { chat_id: payload.chat, ...payload.body } }, signal);
      if (!isAnswer(answer)) return answer;
      const json = answer.json as { ok?: boolean; result?: { message_id?: unknown }; parameters?: { retry_after?: unknown } } | undefined;
      if (answer.status === 429) return { kind: 'rate-limited', status: 429, retryAfterMs: secondsToMs(json?.parameters?.retry_after) ?? 1_000, scope: 'chat' };
      const messageId = json?.result?.message_id;
      return classify(answer, messageId === undefined ? undefined : { message_id: messageId });
    },
  };
}
