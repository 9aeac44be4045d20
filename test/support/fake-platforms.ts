/**
 * A fake of the platforms' send APIs on loopback (Telegram Bot API, Slack Web API, Discord
 * REST, WhatsApp Cloud API), for the outbound tests and bench. It records every request and
 * enforces what it is told: a global limit (429 past it, in the platform's own 429 format),
 * per-chat limits, canned answers (a 400 with a body, a 5xx), a response delay.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FakePlatform = 'telegram' | 'slack' | 'discord' | 'whatsapp';

export interface FakeRequest {
  platform: FakePlatform;
  /** The API method or route (`sendMessage`, `chat.postMessage`, `channel`, `interaction`, `messages`). */
  method: string;
  /** The chat the request addresses. */
  chat: string;
  body: Record<string, unknown>;
  /** The Authorization header, or the token in Telegram's path. */
  auth: string | undefined;
  /** Epoch ms the request arrived. */
  at: number;
  /** True when it was answered 2xx (counted as sent). */
  accepted: boolean;
  status: number;
}

export interface Canned {
  status: number;
  body: unknown;
  headers?: Record<string, string>;
}

export interface FakeOptions {
  /** At most this many accepted sends in any `windowMs`, all chats together; past it a 429 with retry_after 1 s. */
  globalLimit?: { limit: number; windowMs: number };
  /** Per-chat limits for some chats; past it a 429 with `retryAfterS`. */
  chatLimits?: Record<string, { limit: number; windowMs: number; retryAfterS: number }>;
  /** A canned answer for a request (checked first); undefined to answer normally. */
  answer?: (request: FakeRequest) => Canned | undefined;
  /** Ms to wait before answering each request. */
  delayMs?: number;
}

export interface FakePlatforms {
  /** Root URLs to give the clients. */
  roots: { telegram: string; slack: string; discord: string; whatsapp: string };
  url: string;
  requests: FakeRequest[];
  /** Accepted requests, in arrival order. */
  accepted(): FakeRequest[];
  options: FakeOptions;
  /** Resolves when `predicate` holds (checked after each request), or rejects after `timeoutMs`. */
  waitFor(predicate: (requests: FakeRequest[]) => boolean, timeoutMs: number, what: string): Promise<void>;
  close(): Promise<void>;
}

let nextMessageId = 1;

export async function startFakePlatforms(options: FakeOptions = {}): Promise<FakePlatforms> {
  const requests: FakeRequest[] = [];
  const acceptedTimes: number[] = [];
  const chatTimes = new Map<string, number[]>();
  const waiters = new Set<() => void>();

  function within(times: number[], now: number, windowMs: number): number {
    let n = 0;
    for (let i = times.length - 1; i >= 0 && times[i]! > now - windowMs; i--) n++;
    return n;
  }

  function route(req: IncomingMessage, path: string, body: Record<string, unknown>): Omit<FakeRequest, 'at' | 'accepted' | 'status'> | undefined {
    let m = /^\/telegram\/bot([^/]+)\/([A-Za-z]+)$/.exec(path);
    if (m !== null) return { platform: 'telegram', method: m[2]!, chat: String(body.chat_id), body, auth: m[1] };
    m = /^\/slack\/api\/([A-Za-z.]+)$/.exec(path);
    if (m !== null) return { platform: 'slack', method: m[1]!, chat: String(body.channel), body, auth: req.headers.authorization };
    m = /^\/discord\/api\/v10\/channels\/([^/]+)\/messages$/.exec(path);
    if (m !== null) return { platform: 'discord', method: 'channel', chat: decodeURIComponent(m[1]!), body, auth: req.headers.authorization };
    m = /^\/discord\/api\/v10\/webhooks\/([^/]+)\/([^/]+)$/.exec(path);
    if (m !== null) return { platform: 'discord', method: 'interaction', chat: `${m[1]}/${m[2]}`, body, auth: req.headers.authorization };
    m = /^\/whatsapp\/v21\.0\/([^/]+)\/messages$/.exec(path);
    if (m !== null) return { platform: 'whatsapp', method: 'messages', chat: String(body.to), body, auth: req.headers.authorization };
    return undefined;
  }

  function tooMany(platform: FakePlatform, retryAfterS: number): Canned {
    switch (platform) {
      case 'telegram':
        return { status: 429, body: { ok: false, error_code: 429, description: `Too Many Requests: retry after ${retryAfterS}`, parameters: { retry_after: retryAfterS } } };
      case 'slack':
        return { status: 429, body: { ok: false, error: 'ratelimited' }, headers: { 'retry-after': String(retryAfterS) } };
      case 'discord':
        return { status: 429, body: { message: 'You are being rate limited.', retry_after: retryAfterS, global: false }, headers: { 'retry-after': String(retryAfterS) } };
      case 'whatsapp':
        return { status: 400, body: { error: { message: '(#131056) (Business Account, Consumer Account) pair rate limit hit', code: 131056 } }, headers: { 'retry-after': String(retryAfterS) } };
    }
  }

  function ok(request: Omit<FakeRequest, 'at' | 'accepted' | 'status'>): Canned {
    const id = nextMessageId++;
    switch (request.platform) {
      case 'telegram':
        if (request.method === 'getMe') return { status: 200, body: { ok: true, result: { id: 1, is_bot: true, first_name: 'Fake', username: 'fake_bot', can_join_groups: true, can_read_all_group_messages: false, supports_inline_queries: false } } };
        return { status: 200, body: { ok: true, result: { message_id: id, date: Math.floor(Date.now() / 1000), chat: { id: Number(request.chat), type: 'private' }, text: request.body.text } } };
      case 'slack':
        if (request.method === 'auth.test') return { status: 200, body: { ok: true, url: 'https://fake.slack.com/', team: 'Fake', user: 'bot', team_id: 'T1', user_id: 'U1', bot_id: 'B1' } };
        return { status: 200, body: { ok: true, channel: request.chat, ts: `${Date.now() / 1000}` } };
      case 'discord':
        return { status: 200, body: { id: String(id), channel_id: request.chat, content: request.body.content } };
      case 'whatsapp':
        return { status: 200, body: { messaging_product: 'whatsapp', contacts: [{ input: request.chat, wa_id: request.chat }], messages: [{ id: `wamid.${id}` }] } };
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    let body: Record<string, unknown> = {};
    try {
      if (text !== '') body = (req.headers['content-type'] ?? '').includes('json') ? (JSON.parse(text) as Record<string, unknown>) : Object.fromEntries(new URLSearchParams(text));
    } catch {
      body = {};
    }
    const path = (req.url ?? '/').split('?')[0]!;
    const routed = route(req, path, body);
    const at = Date.now();
    if (routed === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `no route ${path}` }));
      return;
    }
    let canned = options.answer?.({ ...routed, at, accepted: false, status: 0 });
    const sends = !['getMe', 'auth.test'].includes(routed.method);
    if (canned === undefined && sends) {
      const chatLimit = options.chatLimits?.[routed.chat];
      const times = chatTimes.get(routed.chat) ?? [];
      if (options.globalLimit !== undefined && within(acceptedTimes, at, options.globalLimit.windowMs) >= options.globalLimit.limit) canned = tooMany(routed.platform, 1);
      else if (chatLimit !== undefined && within(times, at, chatLimit.windowMs) >= chatLimit.limit) canned = tooMany(routed.platform, chatLimit.retryAfterS);
    }
    canned ??= ok(routed);
    const accepted = canned.status >= 200 && canned.status < 300;
    if (accepted && sends) {
      acceptedTimes.push(at);
      const times = chatTimes.get(routed.chat) ?? [];
      times.push(at);
      chatTimes.set(routed.chat, times);
    }
    if (sends) requests.push({ ...routed, at, accepted, status: canned.status });
    for (const wake of waiters) wake();
    if (options.delayMs !== undefined) await new Promise((r) => setTimeout(r, options.delayMs));
    res.writeHead(canned.status, { 'content-type': 'application/json', ...canned.headers }).end(JSON.stringify(canned.body));
  }

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => res.writeHead(500).end(String(error)));
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    roots: { telegram: `${url}/telegram`, slack: `${url}/slack/api`, discord: `${url}/discord/api/v10`, whatsapp: `${url}/whatsapp/v21.0` },
    requests,
    options,
    accepted: () => requests.filter((r) => r.accepted),
    waitFor(predicate, timeoutMs, what) {
      return new Promise<void>((resolve, reject) => {
        const check = (): void => {
          if (!predicate(requests)) return;
          clearTimeout(timer);
          waiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`fake platforms: timed out after ${timeoutMs} ms waiting for ${what} (${requests.length} requests, ${requests.filter((r) => r.accepted).length} accepted)`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The most requests in any window of `windowMs` (by arrival time). */
export function maxInWindow(times: number[], windowMs: number): number {
  const sorted = [...times].sort((a, b) => a - b);
  let best = 0;
  let start = 0;
  for (let end = 0; end < sorted.length; end++) {
    while (sorted[end]! - sorted[start]! >= windowMs) start++;
    best = Math.max(best, end - start + 1);
  }
  return best;
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? 0;
}
