/**
 * The `webhooks` section of the service's config, with the platforms' secrets from the
 * environment overriding the file. A platform is mounted only when its secret is set: nothing
 * is ever accepted unsigned.
 *
 * @example
 * // botqueue.config.ts (prefer the environment for the secrets themselves)
 * webhooks: { bodyLimitBytes: 1_048_576, telegram: { topic: 'updates' }, slack: { topic: 'slack' } }
 */
import { checkName } from '../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { ed25519PublicKey } from './verify.js';

export const DEFAULT_WEBHOOK_BODY_LIMIT = 1024 * 1024;
export const DEFAULT_TELEGRAM_API_ROOT = 'https://api.telegram.org';
/** getUpdates long-poll seconds: Telegram holds the request open this long when there is nothing. */
export const DEFAULT_POLL_TIMEOUT_S = 30;

export interface WebhooksConfig {
  /** Largest webhook body, in bytes (413 above). Default 1 MiB. */
  bodyLimitBytes: number;
  telegram: { secretToken: string; topic: string } | undefined;
  /** Telegram long polling (getUpdates) instead of a webhook, for a bot without a public URL. */
  telegramPolling: { botToken: string; apiRoot: string; bot: string; topic: string; timeoutS: number } | undefined;
  slack: { signingSecret: string; topic: string } | undefined;
  discord: { publicKey: string; topic: string } | undefined;
  whatsapp: { appSecret: string; verifyToken: string | undefined; topic: string } | undefined;
  generic: { secret: string } | undefined;
}

/** What the config file's `webhooks` may hold (every field optional). */
export interface WebhooksConfigFile {
  bodyLimitBytes?: number;
  telegram?: { secretToken?: string; topic?: string; polling?: boolean; botToken?: string; apiRoot?: string; pollTimeoutS?: number; bot?: string };
  slack?: { signingSecret?: string; topic?: string };
  discord?: { publicKey?: string; topic?: string };
  whatsapp?: { appSecret?: string; verifyToken?: string; topic?: string };
  generic?: { secret?: string };
}

/** The environment variables that hold the platforms' secrets. */
export const WEBHOOK_SECRET_VARIABLES = ['TELEGRAM_SECRET_TOKEN', 'TELEGRAM_BOT_TOKEN', 'SLACK_SIGNING_SECRET', 'WHATSAPP_APP_SECRET', 'WHATSAPP_VERIFY_TOKEN', 'BOTQUEUE_WEBHOOK_SECRET'] as const;

export const NO_WEBHOOKS: WebhooksConfig = {
  bodyLimitBytes: DEFAULT_WEBHOOK_BODY_LIMIT,
  telegram: undefined,
  telegramPolling: undefined,
  slack: undefined,
  discord: undefined,
  whatsapp: undefined,
  generic: undefined,
};

/** Every secret of a webhooks config, for the redactor. */
export function webhookSecrets(config: WebhooksConfig | undefined): string[] {
  if (config === undefined) return [];
  return [config.telegram?.secretToken, config.telegramPolling?.botToken, config.slack?.signingSecret, config.whatsapp?.appSecret, config.whatsapp?.verifyToken, config.generic?.secret].filter(
    (s): s is string => s !== undefined,
  );
}

/** The mounted routes, for the start banner. */
export function mountedRoutes(config: WebhooksConfig): string[] {
  const routes: string[] = [];
  if (config.telegram) routes.push('POST /webhooks/telegram[/:bot]');
  if (config.slack) routes.push('POST /webhooks/slack');
  if (config.discord) routes.push('POST /webhooks/discord');
  if (config.whatsapp) routes.push(config.whatsapp.verifyToken === undefined ? 'POST /webhooks/whatsapp' : 'GET+POST /webhooks/whatsapp');
  if (config.generic) routes.push('POST /webhooks/generic/:topic');
  return routes;
}

type Fields = Record<string, unknown>;

class Checker {
  constructor(private readonly label: string) {}

  fail(path: string, message: string): BotqueueError {
    return new BotqueueError(ErrorCodes.INVALID_OPTION, `${this.label}: ${path} ${message}`, { details: { option: path } });
  }

  object(value: unknown, path: string, known: readonly string[]): Fields {
    if (value === undefined) return {};
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw this.fail(path, 'must be an object');
    for (const key of Object.keys(value)) if (!known.includes(key)) throw this.fail(`${path}.${key}`, `is not a known field; known fields of ${path}: ${known.join(', ')}`);
    return value as Fields;
  }

  string(value: unknown, path: string): string | undefined {
    if (value === undefined) return undefined;
    if (typeof value !== 'string' || value === '') throw this.fail(path, 'must be a non-empty string');
    return value;
  }
}

/** Reads a variable; empty means unset. */
function envText(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

/** Validates `webhooks` from the file (`label` names it in errors) and applies the environment. */
export function resolveWebhooks(input: unknown, env: NodeJS.ProcessEnv, label: string): WebhooksConfig {
  const c = new Checker(label);
  const top = c.object(input, 'webhooks', ['bodyLimitBytes', 'telegram', 'slack', 'discord', 'whatsapp', 'generic']);
  const bodyLimitBytes = top.bodyLimitBytes === undefined ? DEFAULT_WEBHOOK_BODY_LIMIT : top.bodyLimitBytes;
  if (typeof bodyLimitBytes !== 'number' || !Number.isInteger(bodyLimitBytes) || bodyLimitBytes < 1024 || bodyLimitBytes > 64 * 1024 * 1024) {
    throw c.fail('webhooks.bodyLimitBytes', 'must be an integer from 1024 to 67108864');
  }
  const topic = (value: unknown, path: string, fallback: string): string => {
    const name = c.string(value, path) ?? fallback;
    try {
      return checkName('topic', name);
    } catch {
      throw c.fail(path, `is not a valid topic name: ${JSON.stringify(name)}`);
    }
  };
  // Secrets: the environment wins, so a committed config file need not hold them.
  const secret = (variable: string, value: unknown, path: string): string | undefined => envText(env, variable) ?? c.string(value, path);

  const tg = c.object(top.telegram, 'webhooks.telegram', ['secretToken', 'topic', 'polling', 'botToken', 'apiRoot', 'pollTimeoutS', 'bot']);
  const tgTopic = topic(tg.topic, 'webhooks.telegram.topic', 'telegram');
  const secretToken = secret('TELEGRAM_SECRET_TOKEN', tg.secretToken, 'webhooks.telegram.secretToken');
  // Telegram's own rule for secret_token (setWebhook refuses anything else).
  if (secretToken !== undefined && !/^[A-Za-z0-9_-]{1,256}$/.test(secretToken)) {
    throw c.fail('TELEGRAM_SECRET_TOKEN (webhooks.telegram.secretToken)', 'must be 1-256 characters of A-Z, a-z, 0-9, _ and - (Telegram accepts no others)');
  }
  const pollingText = envText(env, 'TELEGRAM_POLLING');
  let polling: boolean;
  if (pollingText !== undefined) {
    if (!/^(1|0|true|false)$/i.test(pollingText)) throw c.fail('TELEGRAM_POLLING', `must be true or false, got ${JSON.stringify(pollingText)}`);
    polling = /^(1|true)$/i.test(pollingText);
  } else if (tg.polling === undefined) polling = false;
  else if (typeof tg.polling === 'boolean') polling = tg.polling;
  else throw c.fail('webhooks.telegram.polling', 'must be true or false');
  let telegramPolling: WebhooksConfig['telegramPolling'];
  if (polling) {
    const botToken = secret('TELEGRAM_BOT_TOKEN', tg.botToken, 'webhooks.telegram.botToken');
    if (botToken === undefined) throw c.fail('webhooks.telegram.polling', 'is on but no bot token is set: set TELEGRAM_BOT_TOKEN');
    const apiRoot = (envText(env, 'TELEGRAM_API_ROOT') ?? c.string(tg.apiRoot, 'webhooks.telegram.apiRoot') ?? DEFAULT_TELEGRAM_API_ROOT).replace(/\/+$/, '');
    if (!/^https?:\/\/[^\s/]+/i.test(apiRoot)) throw c.fail('TELEGRAM_API_ROOT (webhooks.telegram.apiRoot)', 'must be an http(s) URL such as https://api.telegram.org');
    const timeoutS = tg.pollTimeoutS === undefined ? DEFAULT_POLL_TIMEOUT_S : tg.pollTimeoutS;
    if (typeof timeoutS !== 'number' || !Number.isInteger(timeoutS) || timeoutS < 0 || timeoutS > 50) throw c.fail('webhooks.telegram.pollTimeoutS', 'must be an integer from 0 to 50');
    const bot = c.string(tg.bot, 'webhooks.telegram.bot') ?? 'default';
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(bot)) throw c.fail('webhooks.telegram.bot', 'must be 1-64 characters of A-Z, a-z, 0-9, _ and -');
    telegramPolling = { botToken, apiRoot, bot, topic: tgTopic, timeoutS };
  }

  const sl = c.object(top.slack, 'webhooks.slack', ['signingSecret', 'topic']);
  const signingSecret = secret('SLACK_SIGNING_SECRET', sl.signingSecret, 'webhooks.slack.signingSecret');
  const dc = c.object(top.discord, 'webhooks.discord', ['publicKey', 'topic']);
  const publicKey = secret('DISCORD_PUBLIC_KEY', dc.publicKey, 'webhooks.discord.publicKey');
  if (publicKey !== undefined) {
    try {
      ed25519PublicKey(publicKey);
    } catch {
      throw c.fail('DISCORD_PUBLIC_KEY (webhooks.discord.publicKey)', 'must be the 64 hex characters of the application\'s public key (Developer Portal, General Information)');
    }
  }
  const wa = c.object(top.whatsapp, 'webhooks.whatsapp', ['appSecret', 'verifyToken', 'topic']);
  const appSecret = secret('WHATSAPP_APP_SECRET', wa.appSecret, 'webhooks.whatsapp.appSecret');
  const verifyToken = secret('WHATSAPP_VERIFY_TOKEN', wa.verifyToken, 'webhooks.whatsapp.verifyToken');
  const ge = c.object(top.generic, 'webhooks.generic', ['secret']);
  const genericSecret = secret('BOTQUEUE_WEBHOOK_SECRET', ge.secret, 'webhooks.generic.secret');
  if (genericSecret !== undefined && genericSecret.length < 16) {
    throw c.fail('BOTQUEUE_WEBHOOK_SECRET (webhooks.generic.secret)', `must be at least 16 characters (got ${genericSecret.length}); generate one with: openssl rand -hex 32`);
  }

  return {
    bodyLimitBytes,
    telegram: secretToken === undefined ? undefined : { secretToken, topic: tgTopic },
    telegramPolling,
    slack: signingSecret === undefined ? undefined : { signingSecret, topic: topic(sl.topic, 'webhooks.slack.topic', 'slack') },
    discord: publicKey === undefined ? undefined : { publicKey: publicKey.toLowerCase(), topic: topic(dc.topic, 'webhooks.discord.topic', 'discord') },
    whatsapp: appSecret === undefined ? undefined : { appSecret, verifyToken, topic: topic(wa.topic, 'webhooks.whatsapp.topic', 'whatsapp') },
    generic: genericSecret === undefined ? undefined : { secret: genericSecret },
  };
}
