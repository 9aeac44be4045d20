/**
 * Fresh RabbitMQ storage for each conformance test: every URL gets its own namespace (a queue
 * and exchange prefix, and a PostgreSQL schema). What a namespace declared is deleted as soon
 * as its test is over: each quorum queue holds file handles on the shared RabbitMQ node, whose
 * limit (about 900 here) a whole run would otherwise exhaust, blocking every new connection.
 */
import { execFileSync } from 'node:child_process';
import { open } from '../../src/brokers/rabbitmq/index.js';
import { dropPostgresSchema } from '../../src/brokers/rabbitmq/store/postgres-store.js';
import type { BackendFactory } from './harness.js';
import { RABBITMQ_URL, STORE_URL } from '../support/services.js';

export interface RabbitmqFactory extends BackendFactory {
  /** Deletes the objects of every namespace handed out so far (call after each test). */
  cleanupUsed(): Promise<void>;
}

export function rabbitmqFactory(prefix: string): RabbitmqFactory {
  const namespaces = new Set<string>();
  let counter = 0;
  const run = `${prefix}${process.pid}_${Date.now() % 100_000}`;
  const namespace = (shared?: string): string => {
    const ns = shared === undefined ? `${run}_${counter++}` : `${run}_s${shared.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(-12)}`;
    namespaces.add(ns);
    return ns;
  };
  const urlOf = (ns: string): string => `${RABBITMQ_URL}?namespace=${ns}&store=${encodeURIComponent(STORE_URL)}`;
  return {
    name: 'rabbitmq',
    url: (shared) => urlOf(namespace(shared)),
    async brokerWithClock(now, shared) {
      const ns = namespace(shared);
      const broker = await open(urlOf(ns), { now });
      // The property test opens a broker per run: each one takes its queues and schema along when it closes.
      const close = broker.close.bind(broker);
      broker.close = async () => {
        await broker.deleteAllTopicObjects().catch(() => undefined);
        await close();
        await dropPostgresSchema(STORE_URL, `${ns}_store`);
        namespaces.delete(ns);
      };
      return broker;
    },
    cleanupUsed: () => cleanupNamespaces(namespaces),
    cleanup: () => cleanupNamespaces(namespaces),
  };
}

/** Deletes every queue and exchange whose name starts with one of the namespaces, and their store schemas. */
export async function cleanupNamespaces(namespaces: Set<string>): Promise<void> {
  if (namespaces.size === 0) return;
  const prefixes = [...namespaces].map((ns) => `${ns}.`);
  const list = (what: 'list_queues' | 'list_exchanges'): string[] =>
    execFileSync('rabbitmqctl', [what, '-q', '--no-table-headers', 'name'], { encoding: 'utf8' })
      .split('\n')
      .map((line) => line.trim())
      .filter((name) => prefixes.some((p) => name.startsWith(p)));
  const amqplib = await import('amqplib');
  const connection = await amqplib.connect(RABBITMQ_URL);
  try {
    const channel = await connection.createChannel();
    for (const queue of list('list_queues')) await channel.deleteQueue(queue);
    for (const exchange of list('list_exchanges')) await channel.deleteExchange(exchange);
    await channel.close();
  } finally {
    await connection.close();
  }
  for (const ns of namespaces) await dropPostgresSchema(STORE_URL, `${ns}_store`);
  namespaces.clear();
}
