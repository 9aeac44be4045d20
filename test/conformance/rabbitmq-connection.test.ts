/**
 * The RabbitMQ connection's write coalescing on a real broker: a burst of publishes leaves the
 * client in a few writev calls instead of one write per message, and every publish is still
 * confirmed. This also catches an amqplib upgrade that moves the internals the hook relies on
 * (src/brokers/rabbitmq/coalesce-writes.ts): the hook would then not apply, silently slower.
 * The same for the frame publisher (src/brokers/rabbitmq/publish-frames.ts), whose messages must
 * also come back from RabbitMQ exactly as sent.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Channel } from 'amqplib';
import { BrokerEventEmitter, type BrokerEvents } from '../../src/brokers/events.js';
import { AmqpConnection } from '../../src/brokers/rabbitmq/connection.js';
import { coalesceWrites } from '../../src/brokers/rabbitmq/coalesce-writes.js';
import { framePublisher } from '../../src/brokers/rabbitmq/publish-frames.js';
import { ConfirmPublisher, framePublishing } from '../../src/brokers/rabbitmq/publisher.js';
import { missingServices, RABBITMQ_URL, reportMissing } from '../support/services.js';

const MESSAGES = 2_000;

interface CountedSocket {
  _write: (...args: unknown[]) => void;
  _writev: (...args: unknown[]) => void;
}

interface Received {
  body: string;
  deliveryMode: unknown;
  /** The other properties that are set (amqplib's empty header table aside). */
  properties: string[];
}

/** Every message in the queue, in order, taken with basic.get. */
async function takeAll(channel: Channel, queue: string): Promise<Received[]> {
  const received: Received[] = [];
  for (;;) {
    const message = await channel.get(queue, { noAck: true });
    if (message === false) return received;
    const set = Object.entries(message.properties).filter(([name, value]) => value !== undefined && name !== 'deliveryMode' && name !== 'headers');
    received.push({ body: message.content.toString('utf8'), deliveryMode: message.properties.deliveryMode, properties: set.map(([name]) => name) });
  }
}

if (!reportMissing('RabbitMQ write coalescing', await missingServices(), test)) {
  test('a connection whose socket dies reports connection-lost, reconnects by itself and reports connection-restored', async () => {
    const events = new BrokerEventEmitter();
    const seen: Array<{ event: keyof BrokerEvents; connection: string; error?: string }> = [];
    events.on('connection-lost', (e) => seen.push({ event: 'connection-lost', connection: e.connection, error: e.error?.message }));
    events.on('connection-restored', (e) => seen.push({ event: 'connection-restored', connection: e.connection }));
    const connection = await AmqpConnection.open(RABBITMQ_URL, 5, 'botqueue-test-events', events);
    try {
      const channel = await connection.channel();
      (channel as unknown as { connection: { stream: { destroy(error: Error): void } } }).connection.stream.destroy(new Error('cut by the test'));
      const deadline = Date.now() + 15_000;
      while (!seen.some((s) => s.event === 'connection-restored') && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.deepEqual(
        seen.map((s) => `${s.event} ${s.connection}`),
        ['connection-lost rabbitmq botqueue-test-events', 'connection-restored rabbitmq botqueue-test-events'],
      );
      assert.equal(typeof seen[0]?.error, 'string', 'the loss carries its error');
      const again = await connection.channel();
      await again.checkExchange('amq.direct');
    } finally {
      await connection.close();
    }
  });

  test('a burst of publishes is written with a few writev calls, and every one is confirmed', async () => {
    const connection = await AmqpConnection.open(RABBITMQ_URL, 5, 'botqueue-test-coalesce', new BrokerEventEmitter());
    const queue = `botqueue.test.coalesce.${process.pid}`;
    try {
      const channel = await connection.confirmChannel();
      assert.equal(coalesceWrites(channel), true, 'the hook applies to amqplib as installed');
      await channel.assertQueue(queue, { durable: false, autoDelete: false, exclusive: true });
      const socket = (channel as unknown as { connection: { stream: CountedSocket } }).connection.stream;
      let writes = 0;
      let writevs = 0;
      const write = socket._write.bind(socket);
      const writev = socket._writev.bind(socket);
      socket._write = (...args) => {
        writes++;
        write(...args);
      };
      socket._writev = (...args) => {
        writevs++;
        writev(...args);
      };
      const body = Buffer.from('x'.repeat(200));
      for (let i = 0; i < MESSAGES; i++) channel.publish('', queue, body, { persistent: false });
      await channel.waitForConfirms();
      const calls = writes + writevs;
      assert.ok(writevs > 0, 'frames were coalesced into writev calls');
      assert.ok(calls < MESSAGES / 10, `${MESSAGES} publishes took ${calls} socket writes (${writevs} writev)`);
      const { messageCount } = await channel.checkQueue(queue);
      assert.equal(messageCount, MESSAGES, 'every publish arrived');
      await channel.deleteQueue(queue);
    } finally {
      await connection.close();
    }
  });

  test('the frame publisher applies to amqplib as installed, and RabbitMQ hands its messages back as sent', async () => {
    const connection = await AmqpConnection.open(RABBITMQ_URL, 5, 'botqueue-test-frames', new BrokerEventEmitter());
    const queue = `botqueue.test.frames.${process.pid}`;
    try {
      const channel = await connection.confirmChannel();
      const frames = framePublisher(channel);
      assert.ok(frames !== undefined, 'the frame publisher applies to amqplib as installed');
      await channel.assertQueue(queue, { durable: true, autoDelete: false, arguments: { 'x-queue-type': 'quorum' } });
      // Small, unicode, and larger than one frame (frameMax 131,072): split over body frames.
      const bodies = ['["bq2",1]\n{}', 'héllo ✓ \u{1F600}', 'x'.repeat(300_000), ...Array.from({ length: 200 }, (_, i) => `m${i}`)];
      const confirms = bodies.map(
        (body) =>
          new Promise<void>((resolve, reject) => {
            frames.publish('', queue, body, (error) => (error === null || error === undefined ? resolve() : reject(new Error('RabbitMQ nacked the publish', { cause: error }))));
          }),
      );
      await Promise.all(confirms);
      const received = await takeAll(channel, queue);
      assert.deepEqual(received.map((m) => m.body), bodies, 'every body, in order, byte for byte');
      assert.ok(received.every((m) => m.deliveryMode === 2 && m.properties.length === 0), 'persistent, no other property');
      await channel.deleteQueue(queue);
      await channel.close();
      assert.throws(() => frames.publish('', queue, 'late', () => undefined), /closed/i, 'a closed channel refuses, as channel.publish does');
    } finally {
      await connection.close();
    }
  });

  test("botqueue's publisher sends bodies through the frame publisher, and its fallback (channel.publish) sends the same", async () => {
    const connection = await AmqpConnection.open(RABBITMQ_URL, 5, 'botqueue-test-publisher', new BrokerEventEmitter());
    const queue = `botqueue.test.publisher.${process.pid}`;
    try {
      const before = { ...framePublishing };
      const publisher = new ConfirmPublisher(connection, 100);
      const channel = await publisher.declareChannel();
      await channel.assertQueue(queue, { durable: true, autoDelete: false, arguments: { 'x-queue-type': 'quorum' } });
      assert.equal(framePublishing.applied, before.applied + 1, 'the channel publishes through frames');
      assert.equal(framePublishing.notApplied, before.notApplied, 'no channel fell back to channel.publish');
      const fallback = new ConfirmPublisher(connection, 100, 15_000, false);
      const bodies = ['["bq2",1,0,2,0,"id","k"]\n{"text":"héllo ✓"}', 'y'.repeat(200_000)];
      for (const body of bodies) {
        await publisher.publishAll([{ exchange: '', routingKey: queue, body }]);
        await fallback.publishAll([{ exchange: '', routingKey: queue, body }]);
      }
      const received = await takeAll(channel, queue);
      const expected = bodies.flatMap((body) => [body, body]).map((body) => ({ body, deliveryMode: 2, properties: [] }));
      assert.deepEqual(received, expected, 'both paths: the same body, persistent, no other property');
      await channel.deleteQueue(queue);
    } finally {
      await connection.close();
    }
  });
}
