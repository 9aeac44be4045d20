/**
 * fast-check fuzz of every webhook route over real HTTP: random bytes and headers, mutated
 * valid requests, signature bit flips, and correctly signed garbage. Invariants: nothing
 * unsigned or mis-signed gets a 2xx or is stored; nothing malformed gets a 5xx; the process
 * keeps serving. FUZZ_RUNS (default 150) sets the runs per property.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
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
  type Answer,
  type Gateway,
} from './harness.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 150);
let g: Gateway;
const counts: Record<string, number> = {};
before(async () => {
  g = await startGateway({ webhooks: { bodyLimitBytes: 8192 } });
});
after(async () => {
  console.log(`# fuzz requests per route and property: ${JSON.stringify(counts)}`);
  await g.close();
  removeTempDirs();
});

interface Route {
  name: string;
  path: string;
  topic: string;
  /** A valid request of the platform. */
  valid(n: number): { headers: Record<string, string>; body: string };
  /** Signs arbitrary body bytes as the platform would (undefined: the platform signs no body). */
  sign: ((body: Buffer) => Record<string, string>) | undefined;
  /** The header that carries the signature (or the secret token). */
  signatureHeader: string;
}

const slackEvent = (n: number) => JSON.stringify({ type: 'event_callback', team_id: 'T1', event_id: `EvFuzz${n}`, event: { type: 'message', channel: 'C1', text: 'x', ts: '1.1' } });
const discordCommand = (n: number) => JSON.stringify({ id: `9${n}`, application_id: '1', type: 2, token: 't', version: 1, channel_id: '2', data: { name: 'x' } });
const whatsappBody = (n: number) =>
  JSON.stringify({ object: 'whatsapp_business_account', entry: [{ id: '1', changes: [{ field: 'messages', value: { metadata: { phone_number_id: '5' }, messages: [{ id: `wamid.F${n}`, from: '7', type: 'text' }] } }] }] });

const ROUTES: Route[] = [
  {
    name: 'telegram',
    path: '/webhooks/telegram',
    topic: 'telegram',
    valid: (n) => telegramRequest(telegramUpdate(n, 1, 'x')),
    sign: undefined,
    signatureHeader: 'x-telegram-bot-api-secret-token',
  },
  {
    name: 'slack',
    path: '/webhooks/slack',
    topic: 'slack',
    valid: (n) => ({ headers: slackHeaders(slackEvent(n), 'application/json'), body: slackEvent(n) }),
    sign: (body) => slackHeaders(body, 'application/json'),
    signatureHeader: 'x-slack-signature',
  },
  {
    name: 'discord',
    path: '/webhooks/discord',
    topic: 'discord',
    valid: (n) => ({ headers: discordHeaders(discordCommand(n)), body: discordCommand(n) }),
    sign: (body) => discordHeaders(body),
    signatureHeader: 'x-signature-ed25519',
  },
  {
    name: 'whatsapp',
    path: '/webhooks/whatsapp',
    topic: 'whatsapp',
    valid: (n) => ({ headers: whatsappHeaders(whatsappBody(n)), body: whatsappBody(n) }),
    sign: (body) => whatsappHeaders(body),
    signatureHeader: 'x-hub-signature-256',
  },
  {
    name: 'generic',
    path: '/webhooks/generic/fuzzed',
    topic: 'fuzzed',
    valid: (n) => ({ headers: genericHeaders(JSON.stringify({ n })), body: JSON.stringify({ n }) }),
    sign: (body) => genericHeaders(body),
    signatureHeader: 'x-botqueue-signature',
  },
];

async function call(route: Route, property: string, headers: Record<string, string>, body: Buffer): Promise<Answer> {
  counts[`${route.name}/${property}`] = (counts[`${route.name}/${property}`] ?? 0) + 1;
  return send(`${g.url}${route.path}`, { headers, body });
}

function assertRefused(answer: Answer, what: string): void {
  assert.ok(answer.status >= 400 && answer.status < 500, `${what}: expected a 4xx, got ${answer.status} ${answer.text.slice(0, 200)}`);
  // Discord gets its "try again" as a 200 only when storage fails, which nothing here provokes.
}

const headerValue = fc.stringMatching(/^[\x20-\x7e]{0,80}$/);
const contentTypes = fc.constantFrom('application/json', 'application/x-www-form-urlencoded', 'text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', '');

async function stored(topic: string): Promise<number> {
  const [stats] = await g.bq.stats(topic);
  return stats?.retained ?? 0;
}

describe('webhook fuzz', () => {
  for (const route of ROUTES) {
    test(`${route.name}: random bytes and headers are never accepted, never a 5xx, never stored`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.uint8Array({ maxLength: 2048 }), contentTypes, headerValue, headerValue, async (bytes, contentType, signature, timestamp) => {
          const headers: Record<string, string> = { 'x-signature-timestamp': timestamp, 'x-slack-request-timestamp': timestamp, 'x-botqueue-timestamp': timestamp };
          if (contentType !== '') headers['content-type'] = contentType;
          headers[route.signatureHeader] = signature;
          assertRefused(await call(route, 'random', headers, Buffer.from(bytes)), 'random request');
        }),
        { numRuns: RUNS },
      );
      assert.equal(await stored(route.topic), 0);
    });

    test(`${route.name}: a valid request with one signature bit flipped is 401, never stored`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.nat({ max: 1_000_000 }), fc.nat(), fc.nat({ max: 7 }), async (n, at, bit) => {
          const { headers, body } = route.valid(n);
          const signature = headers[route.signatureHeader]!;
          const index = at % signature.length;
          const flipped = signature.slice(0, index) + String.fromCharCode(signature.charCodeAt(index) ^ (1 << bit)) + signature.slice(index + 1);
          // A flip that makes a character a header cannot carry would be refused by the client, not the server.
          // Hex digits are case-insensitive: "a" → "A" (bit 5) is the same signature, rightly accepted.
          fc.pre(/^[\x20-\x7e]*$/.test(flipped) && flipped.trim() === flipped && flipped.toLowerCase() !== signature.toLowerCase());
          const answer = await call(route, 'bit-flip', { ...headers, [route.signatureHeader]: flipped }, Buffer.from(body));
          assert.equal(answer.status, 401, answer.text);
        }),
        { numRuns: RUNS },
      );
      assert.equal(await stored(route.topic), 0);
    });

    if (route.sign !== undefined) {
      const sign = route.sign;
      test(`${route.name}: a valid request whose body was changed after signing is 401, never stored`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.nat({ max: 1_000_000 }), fc.nat(), fc.integer({ min: 1, max: 255 }), async (n, at, xor) => {
            const { headers, body } = route.valid(n);
            const bytes = Buffer.from(body);
            bytes[at % bytes.length] = bytes[at % bytes.length]! ^ xor;
            assert.equal((await call(route, 'mutated-body', headers, bytes)).status, 401);
          }),
          { numRuns: RUNS },
        );
        assert.equal(await stored(route.topic), 0);
      });

      test(`${route.name}: correctly signed garbage is never a 5xx`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 1024 }).map((b) => Buffer.from(b)), fc.json().map((j) => Buffer.from(j))), async (body) => {
            const answer = await call(route, 'signed-garbage', sign(body), body);
            assert.ok(answer.status < 500, `got ${answer.status} ${answer.text.slice(0, 200)}`);
          }),
          { numRuns: RUNS },
        );
      });
    } else {
      test(`${route.name}: with the right secret token, malformed bodies are never a 5xx`, async () => {
        await fc.assert(
          fc.asyncProperty(fc.oneof(fc.uint8Array({ maxLength: 1024 }).map((b) => Buffer.from(b)), fc.json().map((j) => Buffer.from(j))), async (body) => {
            const answer = await call(route, 'signed-garbage', telegramRequest({}).headers, body);
            assert.ok(answer.status < 500, `got ${answer.status} ${answer.text.slice(0, 200)}`);
          }),
          { numRuns: RUNS },
        );
      });
    }
  }

  test('whatsapp GET handshake: random queries never echo, never a 5xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('subscribe', 'unsubscribe', ''), fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), async (mode, token, challenge) => {
        fc.pre(token !== 'verify-me-please');
        const query = new URLSearchParams({ 'hub.mode': mode, 'hub.verify_token': token, 'hub.challenge': challenge });
        counts['whatsapp/handshake'] = (counts['whatsapp/handshake'] ?? 0) + 1;
        const answer = await send(`${g.url}/webhooks/whatsapp?${query.toString()}`, { method: 'GET' });
        assert.ok(answer.status >= 400 && answer.status < 500, `got ${answer.status}`);
      }),
      { numRuns: RUNS },
    );
  });

  test('the process still serves a valid update after all of it', async () => {
    const answer = await send(`${g.url}/webhooks/telegram`, telegramRequest(telegramUpdate(42, 1, 'x')));
    assert.equal(answer.status, 200);
    assert.ok(g.rejections.total() > 0);
  });
});
