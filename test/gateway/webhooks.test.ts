/**
 * The webhook routes over real HTTP on loopback, on a real SQLite file, with each platform's
 * real request shapes and headers: what is stored (payload whole, id, key, the reply headers),
 * what is answered, retries deduplicated, and every refusal counted with nothing stored.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { BotqueueError, ErrorCodes, connect, Botqueue } from '../../src/index.js';
import {
  SECRETS,
  discordHeaders,
  genericHeaders,
  nowS,
  removeTempDirs,
  send,
  slackHeaders,
  startGateway,
  storedMessages,
  telegramRequest,
  telegramUpdate,
  whatsappHeaders,
  type Gateway,
} from './harness.js';

const open: Gateway[] = [];
after(async () => {
  for (const gateway of open.splice(0)) await gateway.close();
  removeTempDirs();
});

async function gateway(...args: Parameters<typeof startGateway>): Promise<Gateway> {
  const g = await startGateway(...args);
  open.push(g);
  return g;
}

async function retained(g: Gateway, topic: string): Promise<number> {
  const [stats] = await g.bq.stats(topic);
  return stats === undefined ? 0 : stats.retained;
}

describe('Telegram webhook', () => {
  test('a message update is stored whole with its id, key and reply headers; a retry is deduplicated', async () => {
    const g = await gateway();
    const update = telegramUpdate(911978041, 1935396680, '/start');
    const first = await send(`${g.url}/webhooks/telegram`, telegramRequest(update));
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(JSON.parse(first.text), { ok: true });
    // Telegram retries when it saw no 2xx in time: the same update_id again.
    const retry = await send(`${g.url}/webhooks/telegram`, telegramRequest(update));
    assert.equal(retry.status, 200);
    const stored = await storedMessages(g.bq, 'telegram', 1);
    assert.equal(stored.length, 1);
    const [m] = stored;
    assert.equal(m!.id, 'telegram:default:911978041');
    assert.equal(m!.key, 'telegram:default:1935396680');
    assert.deepEqual(m!.payload, update);
    assert.equal(m!.headers['bq-platform'], 'telegram');
    assert.equal(m!.headers['bq-chat'], '1935396680');
    assert.equal(m!.headers['bq-bot'], 'default');
    assert.ok(Math.abs(Number(m!.headers['bq-received-at']) - Date.now()) < 60_000);
  });

  test('/webhooks/telegram/:bot scopes ids and keys by bot; a callback query is keyed by its message chat', async () => {
    const g = await gateway();
    const callback = {
      update_id: 10000,
      callback_query: {
        id: '4382bfdwdsb323b2d9',
        from: { id: 1111111, is_bot: false, first_name: 'A' },
        message: { message_id: 42, date: 1700000000, chat: { id: -1001234567890, type: 'supergroup', title: 'G' } },
        chat_instance: '-8047652837492837',
        data: 'vote:1',
      },
    };
    assert.equal((await send(`${g.url}/webhooks/telegram/shop_bot`, telegramRequest(callback))).status, 200);
    // The same update_id for another bot is another update.
    assert.equal((await send(`${g.url}/webhooks/telegram/news-bot`, telegramRequest(callback))).status, 200);
    const stored = await storedMessages(g.bq, 'telegram', 2);
    assert.deepEqual(stored.map((m) => m.id).sort(), ['telegram:news-bot:10000', 'telegram:shop_bot:10000']);
    const shop = stored.find((m) => m.id === 'telegram:shop_bot:10000')!;
    assert.equal(shop.key, 'telegram:shop_bot:-1001234567890');
    assert.equal(shop.headers['bq-chat'], '-1001234567890');
    assert.equal(shop.headers['bq-bot'], 'shop_bot');
  });

  test('a wrong or missing secret token is 401 (never 410), nothing stored, counted', async () => {
    const g = await gateway();
    const update = telegramUpdate(1, 5, 'hi');
    const wrong = await send(`${g.url}/webhooks/telegram`, telegramRequest(update, 'tg-secret_0123456780'));
    assert.equal(wrong.status, 401);
    assert.equal(JSON.parse(wrong.text).code, ErrorCodes.WEBHOOK_SIGNATURE_INVALID);
    const missing = await send(`${g.url}/webhooks/telegram`, { headers: { 'content-type': 'application/json' }, body: JSON.stringify(update) });
    assert.equal(missing.status, 401);
    assert.equal(await retained(g, 'telegram'), 0);
    assert.deepEqual(g.rejections.snapshot(), { telegram: { bad_signature: 1, missing_signature: 1 } });
  });
});

test('/metrics counts webhook requests by platform and outcome (accepted, duplicate, unauthorized), never by chat', async () => {
  const g = await gateway();
  const scrape = async (): Promise<string> => {
    const res = await fetch(`${g.url}/metrics`);
    assert.equal(res.status, 200);
    return res.text();
  };
  const count = (text: string, outcome: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`botqueue_webhook_requests_total{platform="telegram",outcome="${outcome}"}`));
    return line === undefined ? 0 : Number(line.split(' ').at(-1));
  };
  const before = await scrape();
  const update = telegramUpdate(77001, 424242, 'metrics');
  assert.equal((await send(`${g.url}/webhooks/telegram`, telegramRequest(update))).status, 200);
  assert.equal((await send(`${g.url}/webhooks/telegram`, telegramRequest(update))).status, 200);
  assert.equal((await send(`${g.url}/webhooks/telegram`, telegramRequest(update, 'tg-secret_0123456780'))).status, 401);
  const after = await scrape();
  assert.equal(count(after, 'accepted') - count(before, 'accepted'), 1);
  assert.equal(count(after, 'duplicate') - count(before, 'duplicate'), 1);
  assert.equal(count(after, 'unauthorized') - count(before, 'unauthorized'), 1);
  assert.ok(!after.includes('424242'), 'no chat id in any series');
});

describe('Slack', () => {
  const event = (id: string, channel: string) => ({
    type: 'event_callback',
    token: 'XXYYZZ',
    team_id: 'T123ABC456',
    api_app_id: 'A123ABC456',
    event: { type: 'message', channel, user: 'U123ABC456', text: 'hello', ts: '1234567890.123456', event_ts: '1234567890.123456', channel_type: 'channel' },
    event_context: 'EC123ABC456',
    event_id: id,
    event_time: 1234567890,
  });

  test('url_verification is answered with the challenge only after the signature check', async () => {
    const g = await gateway();
    const body = JSON.stringify({ token: 'Jhj5dZrVaK7ZwHHjRyZWjbDl', challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P', type: 'url_verification' });
    const ok = await send(`${g.url}/webhooks/slack`, { headers: slackHeaders(body, 'application/json'), body });
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.text), { challenge: '3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P' });
    const unsigned = await send(`${g.url}/webhooks/slack`, { headers: { 'content-type': 'application/json' }, body });
    assert.equal(unsigned.status, 401);
    assert.ok(!unsigned.text.includes('3eZbrw1a'));
  });

  test('an event is stored by event_id and keyed by team and channel; Slack retries (x-slack-retry-num) are deduplicated', async () => {
    const g = await gateway();
    const body = JSON.stringify(event('Ev0001', 'C0001'));
    assert.equal((await send(`${g.url}/webhooks/slack`, { headers: slackHeaders(body, 'application/json'), body })).status, 200);
    for (const num of ['1', '2', '3']) {
      const retry = await send(`${g.url}/webhooks/slack`, { headers: { ...slackHeaders(body, 'application/json'), 'x-slack-retry-num': num, 'x-slack-retry-reason': 'http_timeout' }, body });
      assert.equal(retry.status, 200);
    }
    const stored = await storedMessages(g.bq, 'slack', 1);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.id, 'slack:Ev0001');
    assert.equal(stored[0]!.key, 'slack:T123ABC456:C0001');
    assert.deepEqual(stored[0]!.payload, JSON.parse(body));
    assert.equal(stored[0]!.headers['bq-chat'], 'C0001');
    assert.equal(stored[0]!.headers['bq-bot'], 'T123ABC456');
    assert.equal(stored[0]!.headers['bq-thread'], '1234567890.123456');
  });

  test('a slash command (form-encoded, the documented body) and an interaction (payload=JSON) are stored', async () => {
    const g = await gateway();
    const command =
      'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c';
    assert.equal((await send(`${g.url}/webhooks/slack`, { headers: slackHeaders(command, 'application/x-www-form-urlencoded'), body: command })).status, 200);
    const interaction = { type: 'block_actions', team: { id: 'T1DC2JH3J', domain: 'x' }, channel: { id: 'C777', name: 'general' }, trigger_id: '111.222.abc', actions: [{ action_id: 'a', value: 'v' }] };
    const form = `payload=${encodeURIComponent(JSON.stringify(interaction))}`;
    assert.equal((await send(`${g.url}/webhooks/slack`, { headers: slackHeaders(form, 'application/x-www-form-urlencoded; charset=utf-8'), body: form })).status, 200);
    const stored = await storedMessages(g.bq, 'slack', 2);
    const slash = stored.find((m) => m.id === 'slack:398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c')!;
    assert.equal(slash.key, 'slack:T1DC2JH3J:G8PSS9T3V');
    assert.equal((slash.payload as Record<string, string>).command, '/webhook-collect');
    const action = stored.find((m) => m.id === 'slack:111.222.abc')!;
    assert.equal(action.key, 'slack:T1DC2JH3J:C777');
    assert.deepEqual(action.payload, interaction);
  });

  test('a stale timestamp (a replay 6 minutes later) is 401 even with a valid signature; nothing stored', async () => {
    const g = await gateway();
    const body = JSON.stringify(event('Ev0002', 'C0001'));
    const stale = await send(`${g.url}/webhooks/slack`, { headers: slackHeaders(body, 'application/json', nowS() - 360), body });
    assert.equal(stale.status, 401);
    assert.equal(await retained(g, 'slack'), 0);
    assert.deepEqual(g.rejections.snapshot(), { slack: { stale_timestamp: 1 } });
  });
});

describe('Discord interactions', () => {
  const command = (id: string) => ({
    id,
    application_id: '1100000000000000000',
    type: 2,
    token: `token-${id}`,
    version: 1,
    channel_id: '2200000000000000000',
    guild_id: '3300000000000000000',
    member: { user: { id: '4400000000000000000', username: 'u' } },
    data: { id: '5500000000000000000', name: 'ping', type: 1 },
  });

  test('PING answers PONG without storing; a bad signature is 401 (Discord probes with them)', async () => {
    const g = await gateway();
    const ping = '{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong","type":1,"version":1}';
    const pong = await send(`${g.url}/webhooks/discord`, { headers: discordHeaders(ping), body: ping });
    assert.equal(pong.status, 200);
    assert.deepEqual(JSON.parse(pong.text), { type: 1 });
    const headers = discordHeaders(ping);
    const flipped = Buffer.from(headers['x-signature-ed25519']!, 'hex');
    flipped[5] = flipped[5]! ^ 0x10;
    const probe = await send(`${g.url}/webhooks/discord`, { headers: { ...headers, 'x-signature-ed25519': flipped.toString('hex') }, body: ping });
    assert.equal(probe.status, 401);
    assert.equal(await retained(g, 'discord'), 0);
  });

  test('a command is answered type 5 (deferred) once stored, with the token in bq-interaction-token; a component type 6', async () => {
    const g = await gateway();
    const body = JSON.stringify(command('6600000000000000001'));
    const answer = await send(`${g.url}/webhooks/discord`, { headers: discordHeaders(body), body });
    assert.equal(answer.status, 200);
    assert.deepEqual(JSON.parse(answer.text), { type: 5 });
    const component = JSON.stringify({ ...command('6600000000000000002'), type: 3, data: { custom_id: 'b', component_type: 2 } });
    assert.deepEqual(JSON.parse((await send(`${g.url}/webhooks/discord`, { headers: discordHeaders(component), body: component })).text), { type: 6 });
    const stored = await storedMessages(g.bq, 'discord', 2);
    const m = stored.find((s) => s.id === 'discord:6600000000000000001')!;
    assert.equal(m.key, 'discord:2200000000000000000');
    assert.equal(m.headers['bq-interaction-token'], 'token-6600000000000000001');
    assert.equal(m.headers['bq-bot'], '1100000000000000000');
    assert.equal(m.headers['bq-chat'], '2200000000000000000');
  });

  test('storage failing: an ephemeral "try again" (type 4, flags 64), never a 5xx; Telegram gets 503 + Retry-After', async () => {
    const real = await connect('memory:');
    const unavailable = new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'disk I/O error', { retriable: true });
    const broken = new Proxy(real.broker, {
      get(target, property, receiver) {
        if (property === 'publish') return () => Promise.reject(unavailable);
        const value: unknown = Reflect.get(target, property, receiver);
        return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const bq = new Botqueue(broken, { maxMessageBytes: 262_144, defaultPartitions: 16, defaultDedupWindowMs: 86_400_000 });
    const g = await gateway({}, { bq });
    const body = JSON.stringify(command('6600000000000000003'));
    const answer = await send(`${g.url}/webhooks/discord`, { headers: discordHeaders(body), body });
    assert.equal(answer.status, 200);
    const parsed = JSON.parse(answer.text) as { type: number; data: { flags: number; content: string } };
    assert.equal(parsed.type, 4);
    assert.equal(parsed.data.flags, 64);
    assert.match(parsed.data.content, /try again/);
    const tg = await send(`${g.url}/webhooks/telegram`, telegramRequest(telegramUpdate(7, 7, 'x')));
    assert.equal(tg.status, 503);
    assert.equal(tg.headers.get('retry-after'), '1');
    const sl = JSON.stringify({ type: 'event_callback', team_id: 'T1', event_id: 'Ev9', event: { type: 'message', channel: 'C1' } });
    const slack = await send(`${g.url}/webhooks/slack`, { headers: slackHeaders(sl, 'application/json'), body: sl });
    assert.equal(slack.status, 503);
    assert.equal(slack.headers.get('retry-after'), '1');
    assert.deepEqual(g.rejections.snapshot(), { discord: { storage_failed: 1 }, telegram: { storage_failed: 1 }, slack: { storage_failed: 1 } });
  });
});

describe('WhatsApp', () => {
  const notification = {
    object: 'whatsapp_business_account',
    entry: [
      {
        id: '102290129340398',
        changes: [
          {
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
              contacts: [{ profile: { name: 'Sheena Nelson' }, wa_id: '16505551234' }],
              messages: [
                { from: '16505551234', id: 'wamid.A1', timestamp: '1749416383', type: 'text', text: { body: 'Does it come in another color?' } },
                { from: '16505551234', id: 'wamid.A2', timestamp: '1749416384', type: 'text', text: { body: 'And in blue?' } },
              ],
            },
            field: 'messages',
          },
          {
            value: {
              messaging_product: 'whatsapp',
              metadata: { display_phone_number: '15550783881', phone_number_id: '106540352242922' },
              statuses: [{ id: 'wamid.OUT1', status: 'delivered', timestamp: '1749416390', recipient_id: '16505559999' }],
            },
            field: 'messages',
          },
        ],
      },
    ],
  };

  test('the GET handshake echoes hub.challenge for the right verify token only', async () => {
    const g = await gateway();
    const ok = await send(`${g.url}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=${SECRETS.WHATSAPP_VERIFY_TOKEN}&hub.challenge=1158201444`, { method: 'GET' });
    assert.equal(ok.status, 200);
    assert.equal(ok.text, '1158201444');
    const wrong = await send(`${g.url}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1158201444`, { method: 'GET' });
    assert.equal(wrong.status, 403);
    assert.ok(!wrong.text.includes('1158201444'));
  });

  test('one POST with two messages and a status makes three messages, each with its id and key; a resend adds none', async () => {
    const g = await gateway();
    const body = JSON.stringify(notification);
    assert.equal((await send(`${g.url}/webhooks/whatsapp`, { headers: whatsappHeaders(body), body })).status, 200);
    assert.equal((await send(`${g.url}/webhooks/whatsapp`, { headers: whatsappHeaders(body), body })).status, 200);
    const stored = await storedMessages(g.bq, 'whatsapp', 3);
    assert.deepEqual(stored.map((m) => m.id).sort(), ['whatsapp:wamid.A1', 'whatsapp:wamid.A2', 'whatsapp:wamid.OUT1:delivered']);
    const a1 = stored.find((m) => m.id === 'whatsapp:wamid.A1')!;
    assert.equal(a1.key, 'whatsapp:106540352242922:16505551234');
    assert.equal(a1.headers['bq-chat'], '16505551234');
    assert.equal(a1.headers['bq-bot'], '106540352242922');
    assert.deepEqual((a1.payload as { message: unknown }).message, notification.entry[0]!.changes[0]!.value.messages![0]);
    assert.equal(stored.find((m) => m.id === 'whatsapp:wamid.OUT1:delivered')!.key, 'whatsapp:106540352242922:16505559999');
  });

  test('a body whose signature was computed over re-serialised JSON (an emoji escaped) is refused', async () => {
    const g = await gateway();
    const body = '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"messages":[{"id":"wamid.E","from":"1","text":{"body":"🙂"}}]},"field":"messages"}]}]}';
    const reserialised = body.replace('🙂', '\\ud83d\\ude42');
    const answer = await send(`${g.url}/webhooks/whatsapp`, { headers: whatsappHeaders(reserialised), body });
    assert.equal(answer.status, 401);
    assert.equal((await send(`${g.url}/webhooks/whatsapp`, { headers: whatsappHeaders(body), body })).status, 200);
  });
});

describe('generic signed webhook', () => {
  test('stores the JSON body on the route topic, keyed by X-Botqueue-Key; the same signed request twice is one message', async () => {
    const g = await gateway();
    const body = JSON.stringify({ order: 42, status: 'paid' });
    const headers = { ...genericHeaders(body), 'x-botqueue-key': 'order:42' };
    assert.equal((await send(`${g.url}/webhooks/generic/payments`, { headers, body })).status, 202);
    assert.equal((await send(`${g.url}/webhooks/generic/payments`, { headers, body })).status, 202);
    const stored = await storedMessages(g.bq, 'payments', 1);
    assert.equal(stored.length, 1);
    assert.equal(stored[0]!.key, 'order:42');
    assert.deepEqual(stored[0]!.payload, { order: 42, status: 'paid' });
    assert.equal(stored[0]!.headers['bq-platform'], 'generic');
  });
});

describe('mounting and bad input', () => {
  test('a platform without its secret is not mounted: 404', async () => {
    const g = await gateway({}, { env: { SLACK_SIGNING_SECRET: SECRETS.SLACK_SIGNING_SECRET } });
    assert.equal((await send(`${g.url}/webhooks/telegram`, telegramRequest(telegramUpdate(1, 1, 'x')))).status, 404);
    assert.equal((await send(`${g.url}/webhooks/discord`, { headers: { 'content-type': 'application/json' }, body: '{}' })).status, 404);
    assert.equal((await send(`${g.url}/webhooks/whatsapp`, { headers: { 'content-type': 'application/json' }, body: '{}' })).status, 404);
    assert.equal((await send(`${g.url}/webhooks/generic/x`, { headers: { 'content-type': 'application/json' }, body: '{}' })).status, 404);
    assert.equal((await send(`${g.url}/webhooks/slack`, { headers: { 'content-type': 'application/json' }, body: '{}' })).status, 401);
  });

  test('each bad input gets its 4xx, nothing is stored, and /v1/stats counts it by platform and reason', async () => {
    const g = await gateway({ webhooks: { bodyLimitBytes: 4096 } });
    const tg = (body: string, contentType = 'application/json') => send(`${g.url}/webhooks/telegram`, { headers: { ...telegramRequest({}).headers, 'content-type': contentType }, body });
    assert.equal((await tg('{"update_id": 1, "message": ')).status, 400);
    assert.equal((await tg(JSON.stringify(telegramUpdate(1, 1, 'x')), 'text/plain')).status, 415);
    assert.equal((await tg(JSON.stringify(telegramUpdate(1, 1, 'x'.repeat(5000))))).status, 413);
    assert.equal((await tg(`{"update_id":1,"message":${'['.repeat(100)}${']'.repeat(100)}}`)).status, 400);
    assert.equal((await tg('{"update_id":1,"message":{"__proto__":{"polluted":true},"chat":{"id":1}}}')).status, 400);
    assert.equal((await tg('{"update_id":1,"message":{"constructor":{"prototype":{}},"chat":{"id":1}}}')).status, 400);
    assert.equal((await tg('{"message":{"chat":{"id":1}}}')).status, 400);
    assert.equal((await tg('[1,2,3]')).status, 400);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    const generic = JSON.stringify({ a: 1 });
    assert.equal((await send(`${g.url}/webhooks/generic/t1`, { headers: genericHeaders(generic, nowS() - 3600), body: generic })).status, 401);
    assert.equal((await tg(JSON.stringify(telegramUpdate(1, 1, 'x')))).status, 200, 'the process still serves');
    const stats = await send(`${g.url}/v1/stats`, { method: 'GET' });
    const { webhooks } = JSON.parse(stats.text) as { webhooks: { rejected: unknown } };
    assert.deepEqual(webhooks.rejected, {
      telegram: { malformed_body: 1, unsupported_media_type: 1, too_large: 1, too_deep: 1, forbidden_key: 2, not_an_update: 2 },
      generic: { stale_timestamp: 1 },
    });
    const stored = await storedMessages(g.bq, 'telegram', 1);
    assert.deepEqual(stored.map((m) => m.id), ['telegram:default:1']);
    assert.equal(await retained(g, 't1'), 0);
  });

  test('a topic at its maxBacklog answers 429 with Retry-After (Discord: an ephemeral try again)', async () => {
    const g = await gateway({ topics: { telegram: { maxBacklog: 2 }, discord: { maxBacklog: 1 } } }, { backlogRefreshMs: 0 });
    await g.bq.createTopic('telegram', { partitions: 4 });
    g.bq.worker('telegram', () => new Promise(() => undefined), { group: 'stuck', concurrency: 1 });
    for (let i = 1; i <= 2; i++) assert.equal((await send(`${g.url}/webhooks/telegram`, telegramRequest(telegramUpdate(i, 1, 'x')))).status, 200);
    const full = await send(`${g.url}/webhooks/telegram`, telegramRequest(telegramUpdate(3, 1, 'x')));
    assert.equal(full.status, 429);
    assert.equal(full.headers.get('retry-after'), '5');
    assert.deepEqual(g.rejections.snapshot(), { telegram: { backlog_full: 1 } });
  });
});
