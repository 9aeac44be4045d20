/**
 * Replies out: the outbound queue's senders. `startOutbound` is what `botqueue start` calls:
 * one sender per platform whose credentials are in the environment. `startSender` runs one
 * sender with explicit options (a test, a bench, a process of its own).
 */
import type { Botqueue } from '../client.js';
import { platformsFromEnv } from './env.js';
import { startSender, type Sender } from './sender.js';

export { startSender, type Sender, type SenderOptions } from './sender.js';
export { telegramClient, TELEGRAM_LIMITS } from './telegram.js';
export { slackClient, SLACK_LIMITS } from './slack.js';
export { discordClient, DISCORD_LIMITS } from './discord.js';
export { whatsappClient, WHATSAPP_LIMITS } from './whatsapp.js';
export { platformsFromEnv, platformSecrets } from './env.js';
export { outboundTopic, PLATFORMS, Headers, type Platform, type OutboundPayload, type ReplyMessage, type SendOptions } from './address.js';
export type { PlatformClient, PlatformLimits, SendOutcome } from './platform-client.js';
export type { RateLimit } from './rate-limit.js';

export interface RunningOutbound {
  /** The platforms a sender runs for. */
  platforms: string[];
  close(): Promise<{ timedOut: boolean }>;
}

/** Starts a sender for each platform whose send credentials `env` holds; resolves once they joined their group. */
export async function startOutbound(bq: Botqueue, env: NodeJS.ProcessEnv): Promise<RunningOutbound> {
  const senders: Sender[] = platformsFromEnv(env).map(({ client, limits }) => startSender(bq, { client, limits }));
  await Promise.all(senders.map((s) => s.worker.ready));
  return {
    platforms: senders.map((s) => s.topic.slice('outbound.'.length)),
    close: async () => ({ timedOut: (await Promise.all(senders.map((s) => s.close()))).some((r) => r.timedOut) }),
  };
}
