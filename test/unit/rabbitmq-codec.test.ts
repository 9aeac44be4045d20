import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeMessage, encodeMessage } from '../../src/brokers/rabbitmq/message-codec.js';
import type { PreparedMessage } from '../../src/core/envelope.js';

const base: PreparedMessage = { id: 'm-1', key: 'chat:42', partition: 3, payload: '{"text":"hi"}', headers: {}, notBefore: 0, dedup: true };

test('a message survives the trip through an AMQP body and message-id, with its key, headers and unicode', () => {
  const message: PreparedMessage = { ...base, key: 'chat:ünï\ncode', payload: '{"text":"line\\nbreak ✓"}', headers: { platform: 'telegram', trace: 'a;b' }, notBefore: 1_700_000_000_123 };
  const { content, properties } = encodeMessage(message, 1_700_000_000_000_001, 1_700_000_000_100);
  assert.equal(properties.messageId, 'm-1');
  assert.equal(properties.persistent, true);
  assert.deepEqual(decodeMessage(properties, content), {
    id: 'm-1',
    seq: 1_700_000_000_000_001,
    key: 'chat:ünï\ncode',
    partition: 3,
    publishedAt: 1_700_000_000_100,
    notBefore: 1_700_000_000_123,
    headers: { platform: 'telegram', trace: 'a;b' },
    payload: '{"text":"line\\nbreak ✓"}',
    attempts: 0,
    firstFailedAt: null,
    parked: false,
  });
});

test('a message without key or headers decodes with key null and no headers', () => {
  const { content, properties } = encodeMessage({ ...base, key: null }, 7, 8);
  const decoded = decodeMessage(properties, content);
  assert.equal(decoded?.key, null);
  assert.deepEqual(decoded?.headers, {});
  assert.equal(decoded?.payload, base.payload);
});

test('what botqueue did not publish is not mistaken for a message', () => {
  const { content } = encodeMessage(base, 1, 2);
  assert.equal(decodeMessage({}, content), undefined, 'no message-id');
  assert.equal(decodeMessage({ messageId: 'x' }, Buffer.from('{"plain":"json"}')), undefined, 'no envelope line');
  assert.equal(decodeMessage({ messageId: 'x' }, Buffer.from('{"plain":1}\n{}')), undefined, 'not an envelope');
  assert.equal(decodeMessage({ messageId: 'x' }, Buffer.from('["bq1","seq",0,0,0,null]\n{}')), undefined, 'seq not a number');
  assert.equal(decodeMessage({ messageId: 'x' }, Buffer.from('not json\n{}')), undefined, 'garbage');
  assert.equal(decodeMessage({ messageId: 'x' }, Buffer.alloc(0)), undefined, 'empty (a rotation marker)');
});

test('a message in the earlier format (envelope in AMQP headers) is still read, not dropped as foreign', () => {
  const properties = { messageId: 'old-1', headers: { bq: '1700000000000001;5;1700000000100;0', 'bq-key': 'chat:7', 'bq-headers': '{"platform":"slack"}' } };
  const decoded = decodeMessage(properties, Buffer.from('{"text":"queued before the upgrade"}'));
  assert.equal(decoded?.id, 'old-1');
  assert.equal(decoded?.seq, 1_700_000_000_000_001);
  assert.equal(decoded?.partition, 5);
  assert.equal(decoded?.key, 'chat:7');
  assert.deepEqual(decoded?.headers, { platform: 'slack' });
  assert.equal(decoded?.payload, '{"text":"queued before the upgrade"}');
  assert.equal(decodeMessage({ messageId: 'x', headers: {} }, Buffer.from('{}')), undefined, 'neither format');
});
