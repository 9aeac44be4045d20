/**
 * Which senders `botqueue start` runs: one per platform whose send credentials are set.
 * TELEGRAM_BOT_TOKEN; SLACK_BOT_TOKEN; DISCORD_BOT_TOKEN; WHATSAPP_ACCESS_TOKEN with
 * WHATSAPP_PHONE_NUMBER_ID. API roots: TELEGRAM_API_ROOT, SLACK_API_ROOT, DISCORD_API_ROOT,
 * WHATSAPP_API_ROOT (a fake platform in tests, a local Bot API server, a proxy).
 */
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { DISCORD_LIMITS, discordClient } from './discord.js';
import type { PlatformClient, PlatformLimits } from './platform-client.js';
import { SLACK_LIMITS, slackClient } from './slack.js';
import { TELEGRAM_LIMITS, telegramClient } from './telegram.js';
import { WHATSAPP_LIMITS, whatsappClient } from './whatsapp.js';

export interface ConfiguredPlatform {
  client: PlatformClient;
  limits: PlatformLimits;
}

export function platformsFromEnv(env: NodeJS.ProcessEnv): ConfiguredPlatform[] {
  const set = (name: string): string | undefined => (env[name] === undefined || env[name] === '' ? undefined : env[name]);
  const root = (name: string): string | undefined => {
    const value = set(name);
    if (value !== undefined && !/^https?:\/\//.test(value)) throw new BotqueueError(ErrorCodes.INVALID_OPTION, `${name} must be an http(s) URL, got ${JSON.stringify(value)}`, { details: { option: name } });
    return value;
  };
  const platforms: ConfiguredPlatform[] = [];
  const telegram = set('TELEGRAM_BOT_TOKEN');
  if (telegram !== undefined) platforms.push({ client: telegramClient({ token: telegram, apiRoot: root('TELEGRAM_API_ROOT') }), limits: TELEGRAM_LIMITS });
  const slack = set('SLACK_BOT_TOKEN');
  if (slack !== undefined) platforms.push({ client: slackClient({ token: slack, apiRoot: root('SLACK_API_ROOT') }), limits: SLACK_LIMITS });
  const discord = set('DISCORD_BOT_TOKEN');
  if (discord !== undefined) platforms.push({ client: discordClient({ token: discord, apiRoot: root('DISCORD_API_ROOT') }), limits: DISCORD_LIMITS });
  const whatsapp = set('WHATSAPP_ACCESS_TOKEN');
  const phoneNumberId = set('WHATSAPP_PHONE_NUMBER_ID');
  if ((whatsapp === undefined) !== (phoneNumberId === undefined)) {
    throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'WhatsApp replies need both WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID (set both, or neither)', { details: { option: 'WHATSAPP_PHONE_NUMBER_ID' } });
  }
  if (whatsapp !== undefined && phoneNumberId !== undefined) platforms.push({ client: whatsappClient({ token: whatsapp, phoneNumberId, apiRoot: root('WHATSAPP_API_ROOT') }), limits: WHATSAPP_LIMITS });
  return platforms;
}

/** The send credentials in the environment, for the redactor. */
export function platformSecrets(env: NodeJS.ProcessEnv): string[] {
  return ['TELEGRAM_BOT_TOKEN', 'SLACK_BOT_TOKEN', 'DISCORD_BOT_TOKEN', 'WHATSAPP_ACCESS_TOKEN'].map((name) => env[name]).filter((v): v is string => typeof v === 'string' && v !== '');
}
