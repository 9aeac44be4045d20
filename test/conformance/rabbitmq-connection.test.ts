/**
 * The RabbitMQ connection's write coalescing on a real broker: a burst of publishes leaves the
 * client in a few writev calls instead of one write per message, and every publish is still
 * confirmed. This also catches an amqplib upgrade that moves the internals the hook relies on
 * (src/brokers/rabbitmq/coalesce-writes.ts): the hook would then not apply, silently slower.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AmqpConnection } from '../../src/brokers/rabbitmq/connection.js';
import { coalesceWrites } from '../../src/brokers/rabbitmq/coalesce-writes.js';
import { missingServices, RABBITMQ_URL, reportMissing } from '../support/services.js';

const MESSAGES = 2_000;

interface CountedSocket {
  _write: (...args: unknown[]) => void;
  _writev: (...args: unknown[]) => void;
}

if (!reportMissing('RabbitMQ write coalescing', await missingServices(), test)) {
  test('a burst of publishes is written with a few writev calls, and every one is confirmed', async () => {
    const connection = await AmqpConnection.open(RABBITMQ_URL, 5, 'botqueue-test-coalesce');
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
}
