/**
 * The platform modules: update → { topic, key, id, headers }, per update type of the table in
 * research/platforms.md §1.1; and the body reader's limits.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { BodyError, MAX_JSON_DEPTH, jsonDepth, parseFormBody, parseJsonBody } from '../../src/gateway/body.js';
import { discordRequest } from '../../src/gateway/discord.js';
import { slackRequest } from '../../src/gateway/slack.js';
import { telegramMessage } from '../../src/gateway/telegram.js';
import { whatsappMessages } from '../../src/gateway/whatsapp.js';

const opts = { bot: 'b', topic: 'telegram', receivedAt: 1 };
const chat = { id: -100123, type: 'supergroup' };
const from = { id: 555, is_bot: false, first_name: 'U' };

describe('Telegram: the conversation of each update type', () => {
  const cases: Array<[string, unknown, string]> = [
    ['message', { message_id: 1, date: 1, chat }, '-100123'],
    ['edited_message', { message_id: 1, date: 1, chat }, '-100123'],
    ['channel_post', { message_id: 1, date: 1, chat }, '-100123'],
    ['edited_channel_post', { message_id: 1, date: 1, chat }, '-100123'],
    ['business_message', { message_id: 1, date: 1, chat }, '-100123'],
    ['edited_business_message', { message_id: 1, date: 1, chat }, '-100123'],
    ['guest_message', { message_id: 1, date: 1, chat }, '-100123'],
    ['callback_query', { id: 'q', from, chat_instance: 'c', message: { message_id: 1, date: 1, chat } }, '-100123'],
    ['callback_query', { id: 'q', from, chat_instance: 'c', inline_message_id: 'im' }, '555'],
    ['inline_query', { id: 'q', from, query: '', offset: '' }, '555'],
    ['chosen_inline_result', { result_id: 'r', from, query: '' }, '555'],
    ['shipping_query', { id: 'q', from, invoice_payload: 'p' }, '555'],
    ['pre_checkout_query', { id: 'q', from, currency: 'XTR', total_amount: 1 }, '555'],
    ['purchased_paid_media', { from, paid_media_payload: 'p' }, '555'],
    ['my_chat_member', { chat, from, date: 1 }, '-100123'],
    ['chat_member', { chat, from, date: 1 }, '-100123'],
    ['chat_join_request', { chat, from, user_chat_id: 555, date: 1 }, '-100123'],
    ['message_reaction', { chat, message_id: 1, date: 1 }, '-100123'],
    ['message_reaction_count', { chat, message_id: 1, date: 1 }, '-100123'],
    ['chat_boost', { chat, boost: {} }, '-100123'],
    ['removed_chat_boost', { chat, boost_id: 'x' }, '-100123'],
    ['deleted_business_messages', { business_connection_id: 'x', chat, message_ids: [1] }, '-100123'],
    ['poll_answer', { poll_id: 'p', user: from, option_ids: [0] }, '555'],
    ['poll_answer', { poll_id: 'p', voter_chat: chat, option_ids: [0] }, '-100123'],
    ['business_connection', { id: 'x', user: from, user_chat_id: 777, date: 1 }, '777'],
  ];
  for (const [type, value, expected] of cases) {
    test(`${type} → chat ${expected}`, () => {
      const m = telegramMessage({ update_id: 9, [type]: value }, opts);
      assert.equal(m.key, `telegram:b:${expected}`);
      assert.equal(m.headers['bq-chat'], expected);
      assert.equal(m.id, 'telegram:b:9');
    });
  }
  test('a poll (no chat) is keyed per bot, without a reply address', () => {
    const m = telegramMessage({ update_id: 9, poll: { id: 'p', question: 'q', options: [] } }, opts);
    assert.equal(m.key, 'telegram:b:no-chat');
    assert.equal(m.headers['bq-chat'], undefined);
  });
  test('update_id must be a non-negative integer', () => {
    for (const bad of [{}, { update_id: '1' }, { update_id: -1 }, { update_id: 1.5 }, [], null]) assert.throws(() => telegramMessage(bad, opts), BodyError);
  });
});

describe('Slack, Discord, WhatsApp shapes', () => {
  test('Slack reaction_added is keyed by item.channel; an event_callback without event_id is refused', () => {
    const r = slackRequest({ type: 'event_callback', team_id: 'T1', event_id: 'Ev1', event: { type: 'reaction_added', item: { type: 'message', channel: 'C9', ts: '1.2' } } }, Buffer.from('x'), { topic: 's', receivedAt: 1 });
    assert.equal(r.kind === 'message' && r.message.key, 'slack:T1:C9');
    assert.throws(() => slackRequest({ type: 'event_callback', team_id: 'T1', event: {} }, Buffer.from('x'), { topic: 's', receivedAt: 1 }), BodyError);
  });
  test('Slack ssl_check is answered, not stored', () => {
    assert.equal(slackRequest({ ssl_check: '1', token: 'x' }, Buffer.from('x'), { topic: 's', receivedAt: 1 }).kind, 'ssl_check');
  });
  test('Discord: a DM interaction (user, channel) and one without a token', () => {
    const r = discordRequest({ id: '1', type: 2, token: 't', application_id: 'a', channel: { id: 'C' }, user: { id: 'U' } }, { topic: 'd', receivedAt: 1 });
    assert.equal(r.kind === 'interaction' && r.message.key, 'discord:C');
    assert.throws(() => discordRequest({ id: '1', type: 2 }, { topic: 'd', receivedAt: 1 }), BodyError);
  });
  test('WhatsApp: a change without messages or statuses is stored whole, identified by its content', () => {
    const change = { field: 'account_update', value: { event: 'VERIFIED_ACCOUNT' } };
    const [a] = whatsappMessages({ object: 'whatsapp_business_account', entry: [{ id: 'E1', changes: [change] }] }, { topic: 'w', receivedAt: 1 });
    const [b] = whatsappMessages({ object: 'whatsapp_business_account', entry: [{ id: 'E1', changes: [change] }] }, { topic: 'w', receivedAt: 2 });
    assert.equal(a!.id, b!.id);
    assert.equal(a!.key, 'whatsapp:E1');
    assert.throws(() => whatsappMessages({ entry: 'x' }, { topic: 'w', receivedAt: 1 }), BodyError);
  });
});

describe('body reader', () => {
  test('depth is measured outside strings', () => {
    assert.equal(jsonDepth(Buffer.from('{"a":[1,{"b":"[[[[{{{"}]}'), 100), 3);
    assert.equal(jsonDepth(Buffer.from('"\\"[[["'), 100), 0);
  });
  test(`nesting over ${MAX_JSON_DEPTH} levels, __proto__, constructor and prototype keys are refused`, () => {
    const reason = (text: string): string => {
      try {
        parseJsonBody(Buffer.from(text));
      } catch (error) {
        return (error as BodyError).reason;
      }
      return 'accepted';
    };
    assert.equal(reason('['.repeat(MAX_JSON_DEPTH) + ']'.repeat(MAX_JSON_DEPTH)), 'accepted');
    assert.equal(reason('['.repeat(MAX_JSON_DEPTH + 1) + ']'.repeat(MAX_JSON_DEPTH + 1)), 'too_deep');
    assert.equal(reason('['.repeat(1_000_000)), 'too_deep');
    assert.equal(reason('{"a":[{"__proto__":1}]}'), 'forbidden_key');
    assert.equal(reason('{"constructor":1}'), 'forbidden_key');
    assert.equal(reason('{"prototype":1}'), 'forbidden_key');
    assert.equal(reason('{"text":"__proto__"}'), 'accepted');
    assert.equal(reason('{'), 'malformed_body');
    assert.throws(() => parseFormBody(Buffer.from('a=1&__proto__=2')), BodyError);
    assert.deepEqual(parseFormBody(Buffer.from('a=1&b=x%20y')), { a: '1', b: 'x y' });
  });
});
