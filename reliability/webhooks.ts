/**
 * Scenario h: the webhook gateway under bad input. The real HTTP server of `botqueue start` on a
 * real SQLite file receives a seeded mix of requests for every platform route: valid ones (each
 * platform's signing), forged (a signature of another secret, or a bit flipped), stale (signed
 * 6 minutes ago), tampered (body changed after signing), unsigned, malformed JSON, deep nesting,
 * `__proto__` keys, random bytes, and replays of valid requests. Counted:
 * - accepted-invalid: a 2xx answer to any invalid request, plus any stored message that no
 *   valid request carried (the target is 0);
 * - lost: a valid request answered 2xx whose update is not stored;
 * - duplicates: a replayed valid request stored a second time;
 * - 5xx answers (none expected: bad input is a 4xx).
 */
import { randomBytes } from 'node:crypto';
import {
  discordHeaders,
  genericHeaders,
  removeTempDirs,
  send,
  slackHeaders,
  startGateway,
  telegramRequest,
  telegramUpdate,
  whatsappHeaders,
  nowS,
  type Answer,
} from '../test/gateway/harness.js';

export interface WebhookFuzzReport {
  requests: number;
  valid: number;
  invalid: number;
  acceptedInvalid: number;
  /** Valid requests answered 2xx whose update was not stored. */
  lost: number;
  /** Replays of a valid request stored more than once. */
  duplicates: number;
  serverErrors: number;
  byKind: Record<string, number>;
  /** `<kind> <platform>` of each invalid request answered 2xx (empty when the target holds). */
  acceptedInvalidByKind: Record<string, number>;
}

type Kind = 'valid' | 'replay' | 'forged' | 'bitflip' | 'stale' | 'tampered' | 'unsigned' | 'malformed' | 'deep' | 'proto' | 'random';
const KINDS: Kind[] = ['valid', 'valid', 'valid', 'replay', 'forged', 'bitflip', 'stale', 'tampered', 'unsigned', 'malformed', 'deep', 'proto', 'random'];
const PLATFORMS = ['telegram', 'slack', 'whatsapp', 'discord', 'generic'] as const;
type Platform = (typeof PLATFORMS)[number];

interface Built {
  path: string;
  headers: Record<string, string>;
  body: string;
  /** The id the gateway stores for a valid request (to find it afterwards). */
  id?: string;
}

/** A valid request of the platform carrying update number `n` (a payload with a unique field). */
function validRequest(platform: Platform, n: number, ts: number, payloadOverride?: string): Built {
  switch (platform) {
    case 'telegram': {
      const body = payloadOverride ?? JSON.stringify(telegramUpdate(n, 1_000 + (n % 50), `h${n}`));
      return { path: '/webhooks/telegram', headers: telegramRequest({}).headers, body, id: `telegram:default:${n}` };
    }
    case 'slack': {
      const body = payloadOverride ?? JSON.stringify({ type: 'event_callback', team_id: 'T1', event_id: `Ev${n}`, event_time: ts, event: { type: 'message', channel: `C${n % 50}`, user: 'U1', text: `h${n}`, ts: `${ts}.000${n}` } });
      return { path: '/webhooks/slack', headers: slackHeaders(body, 'application/json', ts), body, id: `slack:Ev${n}` };
    }
    case 'whatsapp': {
      const body =
        payloadOverride ??
        JSON.stringify({
          object: 'whatsapp_business_account',
          entry: [{ id: 'W1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1555', phone_number_id: 'P1' }, messages: [{ from: `4915${n % 50}`, id: `wamid.${n}`, timestamp: String(ts), type: 'text', text: { body: `h${n}` } }] } }] }],
        });
      return { path: '/webhooks/whatsapp', headers: whatsappHeaders(body), body, id: `whatsapp:wamid.${n}` };
    }
    case 'discord': {
      const body = payloadOverride ?? JSON.stringify({ id: `9${n}`, application_id: 'A1', type: 2, token: `tok${n}`, version: 1, channel_id: `CH${n % 50}`, data: { name: 'echo' } });
      return { path: '/webhooks/discord', headers: discordHeaders(body, ts), body, id: `discord:9${n}` };
    }
    case 'generic': {
      const body = payloadOverride ?? JSON.stringify({ n });
      return { path: '/webhooks/generic/events', headers: genericHeaders(body, ts), body };
    }
  }
}

/** One bit of the digest flipped (after a `v0=` / `sha256=` prefix; every digest character is hex). */
function flipOneBit(signature: string, random: () => number): string {
  const start = signature.indexOf('=') + 1;
  const i = start + Math.floor(random() * (signature.length - start));
  const c = parseInt(signature[i]!, 16);
  return signature.slice(0, i) + (c ^ (1 << Math.floor(random() * 4))).toString(16) + signature.slice(i + 1);
}

const SIGNATURE_HEADERS = ['x-telegram-bot-api-secret-token', 'x-slack-signature', 'x-hub-signature-256', 'x-signature-ed25519', 'x-botqueue-signature'];

/** An invalid variant of a valid request (never one the gateway may accept). */
function invalidRequest(kind: Kind, platform: Platform, n: number, random: () => number): Built {
  const ts = nowS();
  const valid = validRequest(platform, n, ts);
  const sig = SIGNATURE_HEADERS.find((h) => valid.headers[h] !== undefined)!;
  switch (kind) {
    case 'forged':
      return { ...valid, headers: { ...valid.headers, [sig]: platform === 'telegram' ? 'not-the-secret-token' : valid.headers[sig]!.replace(/[0-9a-f]{16}$/, randomBytes(8).toString('hex')) } };
    case 'bitflip':
      return { ...valid, headers: { ...valid.headers, [sig]: platform === 'telegram' ? `${valid.headers[sig]!}x` : flipOneBit(valid.headers[sig]!, random) } };
    case 'stale':
      // Telegram signs no timestamp, so its "stale" is a forged token instead; WhatsApp neither.
      return platform === 'telegram' || platform === 'whatsapp' ? invalidRequest('forged', platform, n, random) : validRequest(platform, n, ts - 360);
    case 'tampered':
      // One byte more after signing (still valid JSON). Telegram signs no body: its secret token
      // authenticates the sender only, so a changed body with the right token is not invalid.
      return platform === 'telegram' ? invalidRequest('forged', platform, n, random) : { ...valid, body: `${valid.body} ` };
    case 'unsigned':
      return { ...valid, headers: Object.fromEntries(Object.entries(valid.headers).filter(([name]) => name !== sig)) };
    case 'malformed':
      return signedGarbage(platform, n, ts, valid.body.slice(0, Math.floor(random() * valid.body.length)), random);
    case 'deep':
      return signedGarbage(platform, n, ts, `${'['.repeat(200)}${']'.repeat(200)}`, random);
    case 'proto':
      return signedGarbage(platform, n, ts, valid.body.replace(/^\{/, '{"__proto__":{"polluted":true},'), random);
    case 'random':
    default:
      return { path: valid.path, headers: { 'content-type': random() < 0.5 ? 'application/json' : 'application/octet-stream', [sig]: randomBytes(16).toString('hex') }, body: randomBytes(1 + Math.floor(random() * 512)).toString('latin1') };
  }
}

/**
 * Bad bodies correctly signed: the gateway must refuse them after the check (400), not store them.
 * The `proto` body is valid JSON with an otherwise valid update, so this is the strictest case.
 */
function signedGarbage(platform: Platform, n: number, ts: number, body: string, _random: () => number): Built {
  const built = validRequest(platform, n, ts, body);
  delete built.id;
  return built;
}

export async function runWebhookFuzz(requests: number, random: () => number): Promise<WebhookFuzzReport> {
  const gateway = await startGateway();
  const report: WebhookFuzzReport = { requests, valid: 0, invalid: 0, acceptedInvalid: 0, lost: 0, duplicates: 0, serverErrors: 0, byKind: {}, acceptedInvalidByKind: {} };
  const validIds = new Map<string, number>(); // platform-id → times answered 2xx
  const validGenericBodies = new Set<string>();
  const sentValid: Built[] = [];
  try {
    let n = 1;
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < requests; i++) {
      const platform = PLATFORMS[Math.floor(random() * PLATFORMS.length)]!;
      let kind = KINDS[Math.floor(random() * KINDS.length)]!;
      if (kind === 'replay' && sentValid.length === 0) kind = 'valid';
      report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
      const request = kind === 'valid' ? validRequest(platform, n++, nowS()) : kind === 'replay' ? sentValid[Math.floor(random() * sentValid.length)]! : invalidRequest(kind, platform, n++, random);
      const isValid = kind === 'valid' || kind === 'replay';
      if (isValid) report.valid++;
      else report.invalid++;
      if (kind === 'valid') sentValid.push(request);
      const done = send(`${gateway.url}${request.path}`, { headers: request.headers, body: request.body }).then((answer: Answer) => {
        if (answer.status >= 500) report.serverErrors++;
        const ok = answer.status >= 200 && answer.status < 300;
        if (!isValid && ok) {
          report.acceptedInvalid++;
          const label = `${kind} ${platform}`;
          report.acceptedInvalidByKind[label] = (report.acceptedInvalidByKind[label] ?? 0) + 1;
        }
        if (isValid && ok) {
          if (request.id !== undefined) validIds.set(request.id, (validIds.get(request.id) ?? 0) + 1);
          else validGenericBodies.add(request.body);
        }
      });
      inFlight.add(done);
      void done.finally(() => inFlight.delete(done));
      if (inFlight.size >= 32) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    // What was stored, on every topic: exactly the valid requests' updates, each once.
    const stored = new Map<string, number>();
    let storedGeneric = 0;
    for (const topic of ['telegram', 'slack', 'whatsapp', 'discord', 'events']) {
      const [stats] = await gateway.bq.stats(topic);
      if (stats === undefined) continue;
      for (const message of await readAll(gateway, topic)) {
        if (topic === 'events') storedGeneric++;
        else stored.set(message, (stored.get(message) ?? 0) + 1);
      }
    }
    for (const [id, times] of stored) {
      if (!validIds.has(id)) report.acceptedInvalid++;
      if (times > 1) report.duplicates += times - 1;
    }
    for (const id of validIds.keys()) if (!stored.has(id)) report.lost++;
    // Generic ids come from the signature: replays of one valid request are one message.
    if (storedGeneric > validGenericBodies.size) report.acceptedInvalid += storedGeneric - validGenericBodies.size;
    if (storedGeneric < validGenericBodies.size) report.lost += validGenericBodies.size - storedGeneric;
    return report;
  } finally {
    await gateway.close();
    removeTempDirs();
  }
}

/** The ids of every message retained on the topic (read through a worker of a throwaway group). */
async function readAll(gateway: Awaited<ReturnType<typeof startGateway>>, topic: string): Promise<string[]> {
  const [stats] = await gateway.bq.stats(topic);
  const total = stats?.retained ?? 0;
  const ids: string[] = [];
  if (total === 0) return ids;
  const worker = gateway.bq.worker(topic, (message) => {
    ids.push(message.id);
  }, { group: `fuzz-check-${topic}`, concurrency: 64 });
  const deadline = Date.now() + 60_000;
  while (ids.length < total && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  await worker.close();
  return ids;
}
