import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import type { ConfirmChannel } from 'amqplib';
import { encodePublishFrames, encodePublishMethod, framePublisher } from '../../src/brokers/rabbitmq/publish-frames.js';

// amqplib's own encoders: what channel.publish(exchange, routingKey, content, { persistent: true }) writes.
// Its package exports hide lib/, so they are loaded by file path.
const require = createRequire(import.meta.url);
const amqplibLib = join(dirname(require.resolve('amqplib')), 'lib');
const defs = require(join(amqplibLib, 'defs.js')) as {
  BasicPublish: number;
  BasicProperties: number;
  encodeMethod(method: number, channel: number, fields: object): Buffer;
  encodeProperties(id: number, channel: number, size: number, fields: object): Buffer;
};
const { makeBodyFrame } = require(join(amqplibLib, 'frame.js')) as { makeBodyFrame: (channel: number, payload: Buffer) => Buffer };

function amqplibFrames(channel: number, frameMax: number, exchange: string, routingKey: string, body: string): Buffer {
  const content = Buffer.from(body, 'utf8');
  const parts = [
    defs.encodeMethod(defs.BasicPublish, channel, { exchange, routingKey, mandatory: false, immediate: false, ticket: undefined }),
    defs.encodeProperties(defs.BasicProperties, channel, content.length, { deliveryMode: 2 }),
  ];
  const maxBody = frameMax - 8;
  for (let offset = 0; offset < content.length; offset += maxBody) parts.push(makeBodyFrame(channel, content.subarray(offset, offset + maxBody)));
  return Buffer.concat(parts);
}

test('publish frames are byte for byte what amqplib writes for a persistent message', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 65_535 }),
      fc.string({ maxLength: 60 }),
      fc.string({ maxLength: 60 }),
      fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 })),
      fc.constantFrom(4_096, 131_072, 9 + 8, 64),
      (channel, exchange, routingKey, body, frameMax) => {
        const ours = encodePublishFrames(channel, frameMax, encodePublishMethod(channel, exchange, routingKey), body);
        assert.deepEqual(ours, amqplibFrames(channel, frameMax, exchange, routingKey, body));
      },
    ),
    { numRuns: 2_000 },
  );
});

test('a body larger than a frame is split over several body frames', () => {
  const body = 'x'.repeat(300_000);
  const frames = encodePublishFrames(1, 131_072, encodePublishMethod(1, 'ex', '0'), body);
  assert.deepEqual(frames, amqplibFrames(1, 131_072, 'ex', '0', body));
  // method + header + 3 body frames (131,064 + 131,064 + 37,872 bytes)
  assert.equal(frames.length, encodePublishMethod(1, 'ex', '0').length + 23 + 3 * 8 + 300_000);
});

test('names longer than AMQP allows are refused, not truncated', () => {
  assert.throws(() => encodePublishMethod(1, 'e'.repeat(256), ''), /255/);
  assert.throws(() => encodePublishMethod(1, '', 'é'.repeat(128)), /255/);
});

test('the frame publisher declines a channel whose amqplib internals are not the expected ones', () => {
  const channel = { ch: 1, sendMessage() {}, pushConfirmCallback() {} };
  const buffer = { write: () => true };
  const connection = (entry: object | null) => ({ channels: [null, entry], frameMax: 131_072 });
  const asChannel = (value: object): ConfirmChannel => value as unknown as ConfirmChannel;
  assert.equal(framePublisher(asChannel({})), undefined, 'nothing of it');
  assert.equal(framePublisher(asChannel({ ...channel })), undefined, 'no connection');
  assert.equal(framePublisher(asChannel({ ...channel, connection: { frameMax: 131_072 } })), undefined, 'no channel table');
  const unregistered = { ...channel, connection: connection({ channel: {}, buffer }) };
  assert.equal(framePublisher(asChannel(unregistered)), undefined, 'another channel in its slot');
  const noConfirms = { ch: 1, sendMessage() {}, connection: undefined as unknown };
  noConfirms.connection = connection({ channel: noConfirms, buffer });
  assert.equal(framePublisher(asChannel(noConfirms)), undefined, 'not a confirm channel');
  const fine = { ...channel, connection: undefined as unknown };
  fine.connection = connection({ channel: fine, buffer });
  assert.notEqual(framePublisher(asChannel(fine)), undefined, 'all in place');
});

test('the method-frame cache gives each (exchange, routing key) its own frame, also past its size bound', () => {
  const written: Buffer[] = [];
  const channel = { ch: 3, sendMessage() {}, pushConfirmCallback() {}, connection: undefined as unknown };
  channel.connection = { channels: [null, null, null, { channel, buffer: { write: (frame: Buffer) => written.push(frame) > 0 } }], frameMax: 131_072 };
  const frames = framePublisher(channel as unknown as ConfirmChannel)!;
  const targets = Array.from({ length: 5_000 }, (_, i) => [`ex${i % 3}`, String(i)] as const);
  for (const [exchange, routingKey] of [...targets, ...targets.slice(0, 10)]) frames.publish(exchange, routingKey, 'body', () => undefined);
  for (const [i, [exchange, routingKey]] of [...targets, ...targets.slice(0, 10)].entries()) {
    assert.deepEqual(written[i], encodePublishFrames(3, 131_072, encodePublishMethod(3, exchange, routingKey), 'body'), `${exchange} ${routingKey}`);
  }
});
