/**
 * WhatsApp Cloud API client: `POST {root}/{phone number id}/messages` (root
 * `https://graph.facebook.com/v21.0`), bearer token, `{ messaging_product: 'whatsapp', to, ... }`.
 * Limits: 80 msg/s per business number; about one message per 6 s to one user (pair limit,
 * bursts allowed). Rate limits come as Graph errors: 130429 (throughput: the whole number
 * waits) and 131056 (pair: that user waits), on HTTP 400 or 429, rarely with `Retry-After`.
 */
import type { OutboundPayload } from './address.js';
import { callApi, classify, isAnswer, secondsToMs } from './http-call.js';
import { chatAndGlobal, type PlatformClient, type PlatformLimits, type SendOutcome } from './platform-client.js';

export const WHATSAPP_DEFAULT_ROOT = 'https://graph.facebook.com/v21.0';

export const WHATSAPP_LIMITS: PlatformLimits = {
  chat: { limit: 10, windowMs: 60_000 },
  global: { limit: 80, windowMs: 1_000 },
};

/** Graph error codes that mean "too many, wait": throughput, and the app's/number's call rate. */
const GLOBAL_RATE_CODES = new Set([130429, 80007, 4, 613]);
const PAIR_RATE_CODE = 131056;

export function whatsappClient(options: { token: string; phoneNumberId: string; apiRoot?: string }): PlatformClient {
  const root = (options.apiRoot ?? WHATSAPP_DEFAULT_ROOT).replace(/\/+$/, '');
  return {
    platform: 'whatsapp',
    limitsFor: (payload: OutboundPayload, limits: PlatformLimits) => chatAndGlobal(payload, limits),
    async send(payload: OutboundPayload, signal: AbortSignal): Promise<SendOutcome> {
      const body = { messaging_product: 'whatsapp', recipient_type: 'individual', to: payload.chat, ...payload.body };
      const answer = await callApi(`${root}/${encodeURIComponent(options.phoneNumberId)}/messages`, { headers: { authorization: `Bearer ${options.token}` }, body }, signal);
      if (!isAnswer(answer)) return answer;
      const json = answer.json as { messages?: Array<{ id?: unknown }>; error?: { code?: unknown } } | undefined;
      const code = typeof json?.error?.code === 'number' ? json.error.code : undefined;
      const retryAfter = secondsToMs(answer.headers.get('retry-after'));
      if (code === PAIR_RATE_CODE) return { kind: 'rate-limited', status: answer.status, retryAfterMs: retryAfter ?? 6_000, scope: 'chat' };
      if (answer.status === 429 || (code !== undefined && GLOBAL_RATE_CODES.has(code))) return { kind: 'rate-limited', status: answer.status, retryAfterMs: retryAfter ?? 1_000, scope: 'global' };
      return classify(answer, json?.messages?.[0]?.id === undefined ? undefined : { id: json.messages[0].id });
    },
  };
}
