/**
 * Slack Web API client: `POST {root}/{method}` (root `https://slack.com/api`), bearer token.
 * chat.postMessage allows about 1 message/s per channel; 429 carries `Retry-After` (seconds).
 * Slack answers most refusals with HTTP 200 and `{"ok":false,"error":"channel_not_found"}`:
 * those are refusals too.
 */
import type { OutboundPayload } from './address.js';
import { MAX_QUOTED_BODY, callApi, classify, isAnswer, secondsToMs } from './http-call.js';
import { chatAndGlobal, type PlatformClient, type PlatformLimits, type SendOutcome } from './platform-client.js';

export const SLACK_DEFAULT_ROOT = 'https://slack.com/api';

export const SLACK_LIMITS: PlatformLimits = {
  chat: { limit: 1, windowMs: 1_000 },
};

export function slackClient(options: { token: string; apiRoot?: string }): PlatformClient {
  const root = (options.apiRoot ?? SLACK_DEFAULT_ROOT).replace(/\/+$/, '');
  return {
    platform: 'slack',
    limitsFor: (payload: OutboundPayload, limits: PlatformLimits) => chatAndGlobal(payload, limits),
    async send(payload: OutboundPayload, signal: AbortSignal): Promise<SendOutcome> {
      const body: Record<string, unknown> = { channel: payload.chat, ...payload.body };
      if (payload.thread !== undefined && body.thread_ts === undefined) body.thread_ts = payload.thread;
      const answer = await callApi(`${root}/${encodeURIComponent(payload.method ?? 'chat.postMessage')}`, { headers: { authorization: `Bearer ${options.token}` }, body }, signal);
      if (!isAnswer(answer)) return answer;
      const json = answer.json as { ok?: boolean; error?: string; ts?: string } | undefined;
      if (answer.status === 429 || json?.error === 'ratelimited') {
        return { kind: 'rate-limited', status: answer.status, retryAfterMs: secondsToMs(answer.headers.get('retry-after')) ?? 1_000, scope: 'chat' };
      }
      if (answer.status >= 200 && answer.status < 300 && json?.ok !== true) return { kind: 'rejected', status: answer.status, body: answer.text.slice(0, MAX_QUOTED_BODY) };
      return classify(answer, json?.ts === undefined ? undefined : { ts: json.ts });
    },
  };
}
