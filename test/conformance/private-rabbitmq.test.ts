/**
 * The private RabbitMQ node that resilience tests restart mid-run: it must come up on its own port,
 * keep confirmed messages in a durable quorum queue across a graceful restart and across a crash
 * (SIGKILL), and leave the machine's shared broker alone.
 *
 * Without rabbitmq-server installed this fails under CI (a CI machine without the broker is
 * misconfigured) and is skipped, loudly, elsewhere.
 */
import assert from 'node:assert/strict';
import { createConnection } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { ChannelModel, ConsumeMessage } from 'amqplib';
import { findRabbitmqScripts, startPrivateRabbit, type PrivateRabbit } from '../support/private-rabbitmq.js';

const COUNT = 100;
const SHARED_PORT = 5672;
const RESTART_QUEUE = 'bq-private-restart';
const CRASH_QUEUE = 'bq-private-crash';
/**
 * RabbitMQ 3.10 (ra 2.2) records a new quorum queue's Raft server in a dets table that is saved
 * every 500 ms; SIGKILL the node before that and the queue comes back with a fresh, EMPTY log,
 * confirmed messages included. Tests that crash the broker must declare their queues longer ago.
 */
const QUEUE_REGISTRATION_SAVED_MS = 1_500;

if (!findRabbitmqScripts()) {
  const why = 'rabbitmq-server is not installed (looked in /usr/lib/rabbitmq/bin and on PATH)';
  if (process.env.CI) {
    test('private RabbitMQ node', () => assert.fail(`${why}; CI must have RabbitMQ (see .ci/services.sh)`));
  } else {
    console.warn(`\n*** SKIPPING private RabbitMQ tests: ${why} ***\n`);
    test('private RabbitMQ node', { skip: why }, () => undefined);
  }
} else {
  describe('private RabbitMQ node', { timeout: 180_000 }, () => {
    let rabbit: PrivateRabbit | undefined;
    let sharedWasUp = false;
    let declaredAt = 0;
    const node = (): PrivateRabbit => rabbit ?? assert.fail('the private node did not start');

    before(async () => {
      sharedWasUp = await portAccepts(SHARED_PORT);
      const started = Date.now();
      rabbit = await startPrivateRabbit();
      console.log(`private node ${rabbit.nodename} accepted AMQP on ${rabbit.amqpPort} after ${Date.now() - started} ms (first boot)`);
      await declare(rabbit.url, [RESTART_QUEUE, CRASH_QUEUE]);
      declaredAt = Date.now();
    });

    after(async () => {
      await rabbit?.destroy();
    });

    test('runs on its own port, not the shared one', () => {
      assert.notEqual(node().amqpPort, SHARED_PORT);
      assert.match(node().nodename, /^bqtest-\d+-[0-9a-f]+@localhost$/);
    });

    test('confirmed persistent messages in a durable quorum queue survive a graceful restart, in order', async (t) => {
      const queue = RESTART_QUEUE;
      await publish(node().url, queue, 'restart');
      const restarted = Date.now();
      await node().restart();
      t.diagnostic(`graceful restart (stop + start) took ${Date.now() - restarted} ms`);
      assert.deepEqual(await drain(node().url, queue), bodies('restart'));
    });

    test('confirmed messages survive a crash (SIGKILL) and a start on the same data dir, in order', async (t) => {
      const queue = CRASH_QUEUE;
      // Normally long past (the restart test ran in between); waits only when this test runs alone.
      await sleep(declaredAt + QUEUE_REGISTRATION_SAVED_MS - Date.now());
      await publish(node().url, queue, 'crash');
      const killed = Date.now();
      await node().kill();
      assert.equal(await portAccepts(node().amqpPort), false, 'the port is closed once kill() resolves');
      await node().start();
      t.diagnostic(`kill + start took ${Date.now() - killed} ms`);
      assert.deepEqual(await drain(node().url, queue), bodies('crash'));
    });

    test('the shared broker on 5672 is still up if it was before', async (t) => {
      if (!sharedWasUp) return t.skip('nothing listened on 5672 before the private node started');
      assert.equal(await portAccepts(SHARED_PORT), true, 'the shared RabbitMQ on 5672 stopped accepting connections');
    });
  });
}

function bodies(prefix: string): string[] {
  return Array.from({ length: COUNT }, (_, i) => `${prefix}-${i}`);
}

async function connect(url: string): Promise<ChannelModel> {
  const amqp = await import('amqplib');
  const connection = await amqp.connect(url);
  // A broker going away must fail the test through the awaited calls, not crash the process.
  connection.on('error', () => undefined);
  return connection;
}

async function declare(url: string, queues: string[]): Promise<void> {
  const connection = await connect(url);
  try {
    const channel = await connection.createChannel();
    for (const queue of queues) await channel.assertQueue(queue, { durable: true, arguments: { 'x-queue-type': 'quorum' } });
  } finally {
    await connection.close();
  }
}

/** Publishes COUNT persistent messages, waiting for every confirm. */
async function publish(url: string, queue: string, prefix: string): Promise<void> {
  const connection = await connect(url);
  try {
    const channel = await connection.createConfirmChannel();
    for (const body of bodies(prefix)) channel.sendToQueue(queue, Buffer.from(body), { persistent: true });
    await channel.waitForConfirms();
  } finally {
    await connection.close();
  }
}

/** Consumes until COUNT messages arrived (acking them), returning their bodies in delivery order. */
async function drain(url: string, queue: string): Promise<string[]> {
  const connection = await connect(url);
  try {
    const channel = await connection.createChannel();
    // Right after a start a recovering quorum queue can report 0 messages for a few hundred ms.
    const deadline = Date.now() + 15_000;
    let count = (await channel.checkQueue(queue)).messageCount;
    while (count < COUNT && Date.now() < deadline) {
      await sleep(100);
      count = (await channel.checkQueue(queue)).messageCount;
    }
    assert.equal(count, COUNT, `${queue} holds all ${COUNT} messages after the broker came back`);
    await channel.prefetch(COUNT);
    const received: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${received.length} of ${COUNT} messages arrived within 20 s`)), 20_000);
      const fail = (error: unknown): void => {
        clearTimeout(timer);
        reject(error instanceof Error ? error : new Error(String(error)));
      };
      void channel
        .consume(queue, (message: ConsumeMessage | null) => {
          if (!message) return fail(new Error('the consumer was cancelled by the broker'));
          received.push(message.content.toString());
          channel.ack(message);
          if (received.length === COUNT) {
            clearTimeout(timer);
            resolve();
          }
        })
        .catch(fail);
    });
    assert.equal((await channel.checkQueue(queue)).messageCount, 0, `${queue} is empty once all ${COUNT} are acked`);
    return received;
  } finally {
    await connection.close();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}
