/**
 * Discord REST client (root `https://discord.com/api/v10`). A reply to an interaction is a
 * follow-up through its token, `POST /webhooks/{application id}/{token}` (no bot token; exempt
 * from the global limit), while the token is valid (15 minutes from receipt, minus a margin for
 * the call itself); later, or without a token, a channel message `POST /channels/{id}/messages`
 * with `Authorization: Bot {token}`. 429: body `retry_after` (seconds, decimals) and `global`.
 * A bucket that answers `X-RateLimit-Remaining: 0` pauses the chat for `X-RateLimit-Reset-After`.
 */
import type { OutboundPayload } from './address.js';
import { callApi, classify, isAnswer, secondsToMs } from './http-call.js';
import { chatAndGlobal, type PlatformClient, type PlatformLimits, type SendOutcome } from './platform-client.js';

export const DISCORD_DEFAULT_ROOT = 'https://discord.com/api/v10';

export const DISCORD_LIMITS: PlatformLimits = {
  chat: { limit: 5, windowMs: 5_000 },
  global: { limit: 50, windowMs: 1_000 },
};

/** Interaction tokens are valid this long after the interaction was received. */
export const INTERACTION_TOKEN_MS = 15 * 60_000;
/** A follow-up is not started in the token's last minute (it could expire during the call and retries). */
const INTERACTION_MARGIN_MS = 60_000;

export function usesInteraction(payload: OutboundPayload, now: number): boolean {
  return payload.interaction !== undefined && now < payload.interaction.receivedAt + INTERACTION_TOKEN_MS - INTERACTION_MARGIN_MS;
}

export function discordClient(options: { token: string; apiRoot?: string; now?: () => number }): PlatformClient {
  const root = (options.apiRoot ?? DISCORD_DEFAULT_ROOT).replace(/\/+$/, '');
  const now = options.now ?? Date.now;
  return {
    platform: 'discord',
    limitsFor(payload: OutboundPayload, limits: PlatformLimits, at: number) {
      if (!usesInteraction(payload, at)) return chatAndGlobal(payload, limits);
      // Interaction webhooks are not bound to the global limit; the channel's order still holds through the key.
      return limits.chat === undefined ? [] : [[`chat:${payload.chat}`, limits.chat] as const];
    },
    async send(payload: OutboundPayload, signal: AbortSignal): Promise<SendOutcome> {
      const interaction = usesInteraction(payload, now()) ? payload.interaction : undefined;
      const answer =
        interaction !== undefined
          ? await callApi(`${root}/webhooks/${encodeURIComponent(interaction.applicationId)}/${encodeURIComponent(interaction.token)}`, { body: payload.body }, signal)
          : await callApi(`${root}/channels/${encodeURIComponent(payload.chat)}/messages`, { headers: { authorization: `Bot ${options.token}` }, body: payload.body }, signal);
      if (!isAnswer(answer)) return answer;
      const json = answer.json as { id?: unknown; retry_after?: unknown; global?: unknown } | undefined;
      if (answer.status === 429) {
        const retryAfterMs = secondsToMs(json?.retry_after) ?? secondsToMs(answer.headers.get('retry-after')) ?? 1_000;
        const global = json?.global === true || answer.headers.get('x-ratelimit-global') === 'true';
        return { kind: 'rate-limited', status: 429, retryAfterMs, scope: global ? 'global' : 'chat' };
      }
      const outcome = classify(answer, { id: json?.id, via: interaction === undefined ? 'channel' : 'interaction' });
      if (outcome.kind === 'sent' && answer.headers.get('x-ratelimit-remaining') === '0') {
        const pauseMs = secondsToMs(answer.headers.get('x-ratelimit-reset-after'));
        if (pauseMs !== undefined) return { ...outcome, pauseChatMs: pauseMs };
      }
      return outcome;
    },
  };
}
