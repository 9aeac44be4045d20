/**
 * The gateway under test: the real HTTP server of `botqueue start` (createHttpServer) on a real
 * SQLite file, listening on loopback; and the fake platforms: senders that sign and shape their
 * requests as each platform does.
 */
import { createHmac, createPrivateKey, sign, type KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { connect, type Botqueue } from '../../src/index.js';
import { WebhookRejections } from '../../src/gateway/rejections.js';
import { resolveConfig, type BotqueueConfigFile } from '../../src/service/config.js';
import { closeHttpServer, createHttpServer, listen } from '../../src/service/http.js';
import { createLogger } from '../../src/service/logger.js';

export const SECRETS = {
  TELEGRAM_SECRET_TOKEN: 'tg-secret_0123456789',
  SLACK_SIGNING_SECRET: '8f742231b10e8888abcd99yyyzzz85a5',
  // RFC 8032 §7.1 test 1: the public key of the seed below.
  DISCORD_PUBLIC_KEY: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
  WHATSAPP_APP_SECRET: 'TEST_APP_SECRET',
  WHATSAPP_VERIFY_TOKEN: 'verify-me-please',
  BOTQUEUE_WEBHOOK_SECRET: 'generic-secret-0123456789abcdef',
} as const;

const DISCORD_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
export const discordPrivateKey: KeyObject = createPrivateKey({
  key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(DISCORD_SEED, 'hex')]),
  format: 'der',
  type: 'pkcs8',
});

export interface Gateway {
  url: string;
  bq: Botqueue;
  app: FastifyInstance;
  rejections: WebhookRejections;
  close(): Promise<void>;
}

const dirs: string[] = [];
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-gateway-'));
  dirs.push(dir);
  return dir;
}
export function removeTempDirs(): void {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** A gateway on its own SQLite file, with every platform's secret set unless `env` says otherwise. */
export async function startGateway(file: BotqueueConfigFile = {}, options: { env?: NodeJS.ProcessEnv; bq?: Botqueue; backlogRefreshMs?: number } = {}): Promise<Gateway> {
  const env = options.env ?? { ...SECRETS };
  const config = resolveConfig(file, { cwd: process.cwd(), env, path: undefined, label: 'config' });
  const bq = options.bq ?? (await connect(`sqlite:${join(tempDir(), 'bq.db')}`));
  const rejections = new WebhookRejections();
  const logger = createLogger({ level: process.env.TEST_SERVICE_LOG_LEVEL ?? 'silent', role: 'gateway' });
  const app = createHttpServer({ bq, config, logger, webhookRejections: rejections, backlogRefreshMs: options.backlogRefreshMs });
  const { url } = await listen(app, '127.0.0.1', 0);
  return {
    url,
    bq,
    app,
    rejections,
    close: async () => {
      await closeHttpServer(app);
      await bq.close().catch(() => undefined);
    },
  };
}

export interface Answer {
  status: number;
  headers: { get(name: string): string | undefined };
  text: string;
  ms: number;
}

/**
 * Keep-alive connections, as a platform keeps them. node:http rather than fetch: the load tests
 * run the client in the server's process, and fetch costs several times more CPU per request.
 */
const agent = new Agent({ keepAlive: true, maxSockets: 128 });

export function send(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer }): Promise<Answer> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const body = init.body === undefined ? undefined : Buffer.from(init.body);
    const headers: Record<string, string> = { ...init.headers };
    if (body !== undefined) headers['content-length'] = String(body.length);
    const req = request(url, { method: init.method ?? 'POST', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        const raw = res.headers;
        resolve({
          status: res.statusCode ?? 0,
          headers: { get: (name) => { const v = raw[name.toLowerCase()]; return Array.isArray(v) ? v.join(', ') : v; } },
          text: Buffer.concat(chunks).toString('utf8'),
          ms: performance.now() - started,
        });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

export const nowS = (): number => Math.floor(Date.now() / 1000);

// ---------------------------------------------------------------- the platforms' request shapes

/** Telegram's Bot API server: JSON, the secret header. */
export function telegramRequest(update: unknown, secret: string = SECRETS.TELEGRAM_SECRET_TOKEN): { headers: Record<string, string>; body: string } {
  return { headers: { 'content-type': 'application/json', 'x-telegram-bot-api-secret-token': secret }, body: JSON.stringify(update) };
}

export function slackHeaders(body: string | Buffer, contentType: string, ts = nowS(), secret: string = SECRETS.SLACK_SIGNING_SECRET): Record<string, string> {
  const signature = `v0=${createHmac('sha256', secret).update(`v0:${ts}:`).update(body).digest('hex')}`;
  return { 'content-type': contentType, 'x-slack-request-timestamp': String(ts), 'x-slack-signature': signature, 'user-agent': 'Slackbot 1.0 (+https://api.slack.com/robots)' };
}

export function discordHeaders(body: string | Buffer, ts = nowS()): Record<string, string> {
  const signature = sign(null, Buffer.concat([Buffer.from(String(ts)), Buffer.from(body)]), discordPrivateKey).toString('hex');
  return { 'content-type': 'application/json', 'x-signature-ed25519': signature, 'x-signature-timestamp': String(ts), 'user-agent': 'Discord-Interactions/1.0 (+https://discord.com)' };
}

export function whatsappHeaders(body: string | Buffer, secret: string = SECRETS.WHATSAPP_APP_SECRET): Record<string, string> {
  return { 'content-type': 'application/json', 'x-hub-signature-256': `sha256=${createHmac('sha256', secret).update(body).digest('hex')}` };
}

export function genericHeaders(body: string | Buffer, ts = nowS(), secret: string = SECRETS.BOTQUEUE_WEBHOOK_SECRET): Record<string, string> {
  return {
    'content-type': 'application/json',
    'x-botqueue-timestamp': String(ts),
    'x-botqueue-signature': `sha256=${createHmac('sha256', secret).update(`${ts}.`).update(body).digest('hex')}`,
  };
}

/** A Telegram message update, as the Bot API sends it. */
export function telegramUpdate(updateId: number, chatId: number, text: string): Record<string, unknown> & { update_id: number } {
  return {
    update_id: updateId,
    message: {
      message_id: updateId,
      from: { id: chatId, is_bot: false, first_name: 'A', language_code: 'en' },
      chat: { id: chatId, first_name: 'A', type: 'private' },
      date: nowS(),
      text,
    },
  };
}

/** Every message of a topic, read through a consumer group of its own. */
export async function storedMessages(bq: Botqueue, topic: string, expected: number, timeoutMs = 10_000): Promise<Array<{ id: string; key: string | null; payload: unknown; headers: Record<string, string> }>> {
  const seen: Array<{ id: string; key: string | null; payload: unknown; headers: Record<string, string> }> = [];
  const worker = bq.worker(topic, (m) => void seen.push({ id: m.id, key: m.key, payload: m.payload, headers: m.headers }), { group: `read-${Math.random().toString(36).slice(2)}`, concurrency: 16 });
  const deadline = Date.now() + timeoutMs;
  while (seen.length < expected && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  // A little longer, to see any message beyond those expected.
  await new Promise((r) => setTimeout(r, 150));
  await worker.close();
  return seen;
}
