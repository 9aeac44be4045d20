import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeMessage, encodeBody, parseLine } from '../../src/brokers/rabbitmq/message-codec.js';
import type { PreparedMessage } from '../../src/core/envelope.js';

const base: PreparedMessage = { id: 'm-1', key: 'chat:42', partition: 3, payload: '{"text":"hi"}', headers: {}, notBefore: 0, dedup: true };

/** The body as RabbitMQ hands it back. */
function wire(message: PreparedMessage, seq: number, publishedAt: number): Buffer {
  return Buffer.from(encodeBody(message, seq, publishedAt), 'utf8');
}

test('a message survives the trip through an AMQP body, with its id, key, headers and unicode', () => {
  const message: PreparedMessage = { ...base, key: 'chat:ünï\ncode', payload: '{"text":"line\\nbreak ✓"}', headers: { platform: 'telegram', trace: 'a;b' }, notBefore: 1_700_000_000_123 };
  assert.deepEqual(decodeMessage({}, wire(message, 1_700_000_000_000_001, 1_700_000_000_100)), {
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

test('the envelope line is the documented one', () => {
  assert.equal(encodeBody(base, 17, 18), '["bq2",17,3,18,0,"m-1","chat:42"]\n{"text":"hi"}');
  assert.equal(encodeBody({ ...base, key: null, headers: { a: 'b' } }, 17, 18), '["bq2",17,3,18,0,"m-1",null,{"a":"b"}]\n{"text":"hi"}');
});

test('an id longer than AMQP message-id allows (255 bytes) travels too', () => {
  const id = 'é'.repeat(512);
  assert.equal(decodeMessage({}, wire({ ...base, id }, 5, 6))?.id, id);
});

test('a message without key or headers decodes with key null and no headers', () => {
  const decoded = decodeMessage({}, wire({ ...base, key: null }, 7, 8));
  assert.equal(decoded?.key, null);
  assert.deepEqual(decoded?.headers, {});
  assert.equal(decoded?.payload, base.payload);
});

test('any message decodes to what was encoded (fast reader or JSON.parse, whichever takes it)', () => {
  const text = fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.constantFrom('a"b', 'a\\b', '\u0000', '\u2028', 'null]', ',', '\ud800'));
  fc.assert(
    fc.property(
      fc.record({
        id: text.filter((s) => s.length > 0),
        key: fc.option(text, { nil: null }),
        partition: fc.integer({ min: 0, max: 65_535 }),
        notBefore: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
        headers: fc.oneof(fc.constant({}), fc.dictionary(fc.string(), fc.string())),
        seq: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        publishedAt: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
      }),
      (m) => {
        const message: PreparedMessage = { ...base, id: m.id, key: m.key, partition: m.partition, notBefore: m.notBefore, headers: m.headers };
        const decoded = decodeMessage({}, wire(message, m.seq, m.publishedAt));
        // Even lone surrogates survive: JSON.stringify escapes them.
        assert.deepEqual(decoded, {
          id: m.id,
          key: m.key,
          partition: m.partition,
          seq: m.seq,
          publishedAt: m.publishedAt,
          notBefore: m.notBefore,
          headers: { ...m.headers },
          payload: base.payload,
          attempts: 0,
          firstFailedAt: null,
          parked: false,
        });
      },
    ),
    { numRuns: 2_000 },
  );
});

test('the fast reader accepts no line that JSON.parse reads differently', () => {
  // Lines near the common shape, with the kinds of damage a hand parser gets wrong.
  const piece = fc.constantFrom('0', '00', '01', '-1', '1.5', '1e3', '9007199254740993', '12345678901234567', '"x"', '"a\\"b"', '"\u0001"', 'null', 'true', '{}', '', ' 1');
  fc.assert(
    fc.property(fc.array(piece, { minLength: 6, maxLength: 7 }), fc.constantFrom(']', ']]', ' ]', ',]'), (pieces, close) => {
      const line = `["bq2",${pieces.join(',')}${close}`;
      const text = `${line}\n{}`;
      assert.deepEqual(decodeMessage({}, Buffer.from(text)), parseLine(text, line.length, undefined), line);
    }),
    { numRuns: 3_000 },
  );
});

test('what botqueue did not publish is not mistaken for a message', () => {
  assert.equal(decodeMessage({}, Buffer.from('{"plain":"json"}')), undefined, 'no envelope line');
  assert.equal(decodeMessage({}, Buffer.from('{"plain":1}\n{}')), undefined, 'not an envelope');
  assert.equal(decodeMessage({}, Buffer.from('["bq2","seq",0,0,0,"id",null]\n{}')), undefined, 'seq not a number');
  assert.equal(decodeMessage({}, Buffer.from('["bq2",1,0,0,0,7,null]\n{}')), undefined, 'id not a string');
  assert.equal(decodeMessage({}, Buffer.from('["bq1",1,0,0,0,null]\n{}')), undefined, 'the earlier line without its message-id');
  assert.equal(decodeMessage({ messageId: 'x' }, Buffer.from('not json\n{}')), undefined, 'garbage');
  assert.equal(decodeMessage({}, Buffer.alloc(0)), undefined, 'empty (a rotation marker)');
});

test('a message in the bq1 format (id in message-id) is still read, not dropped as foreign', () => {
  const decoded = decodeMessage({ messageId: 'old-2' }, Buffer.from('["bq1",1700000000000001,5,1700000000100,0,"chat:7",{"platform":"slack"}]\n{"text":"queued before"}'));
  assert.equal(decoded?.id, 'old-2');
  assert.equal(decoded?.seq, 1_700_000_000_000_001);
  assert.equal(decoded?.partition, 5);
  assert.equal(decoded?.key, 'chat:7');
  assert.deepEqual(decoded?.headers, { platform: 'slack' });
  assert.equal(decoded?.payload, '{"text":"queued before"}');
});

test('a message in the header format (envelope in AMQP headers) is still read, not dropped as foreign', () => {
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
