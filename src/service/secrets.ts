/**
 * The secrets in a service's or a command's settings: the passwords of the broker and store
 * URLs (BOTQUEUE_URL, BOTQUEUE_STORE_URL, the config file's url) and the admin token. Every
 * line `botqueue` prints or logs is redacted against them (core/redact.ts), because a driver's
 * message may quote a password without the URL around it.
 */
import { passwordsOf } from '../core/redact.js';
import { WEBHOOK_SECRET_VARIABLES, webhookSecrets, type WebhooksConfig } from '../gateway/config.js';
import { platformSecrets } from '../outbound/env.js';

export function settingsSecrets(env: NodeJS.ProcessEnv, config?: { url: string; adminToken?: string | undefined; webhooks?: WebhooksConfig | undefined }): string[] {
  // The platforms' webhook secrets (gateway/config.ts) and send credentials (outbound/env.ts) too.
  const webhookTokens = [...WEBHOOK_SECRET_VARIABLES.map((name) => env[name]?.trim()), ...webhookSecrets(config?.webhooks)];
  const tokens = [env.BOTQUEUE_ADMIN_TOKEN, config?.adminToken, ...webhookTokens].filter((token): token is string => typeof token === 'string' && token !== '');
  return [...new Set([...passwordsOf(env.BOTQUEUE_URL, env.BOTQUEUE_STORE_URL, config?.url), ...tokens, ...platformSecrets(env)])];
}
