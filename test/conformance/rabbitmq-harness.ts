/**
 * Fresh RabbitMQ storage for each conformance test: every URL gets its own namespace (a queue
 * and exchange prefix, and a PostgreSQL schema). What a namespace declared is deleted as soon
 * as its test is over: each quorum queue holds file handles on the shared RabbitMQ node, whose
 * limit (about 900 here) a whole run would otherwise exhaust, blocking every new connection.
 */
import { open } from '../../src/brokers/rabbitmq/index.js';
import { Names } from '../../src/brokers/rabbitmq/names.js';
import { dropPostgresSchema } from '../../src/stores/postgres/index.js';
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
        await dropPostgresSchema(STORE_URL, new Names(ns).schema);
        namespaces.delete(ns);
      };
      return broker;
    },
    cleanupUsed: () => cleanupNamespaces(namespaces),
    cleanup: () => cleanupNamespaces(namespaces),
  };
}

/**
 * Deletes the queues and exchanges of the namespaces, found from each namespace's store (its
 * topics and groups), then the store's schema. Plain AMQP and SQL: fast enough to run after
 * every test.
 */
export async function cleanupNamespaces(namespaces: Set<string>): Promise<void> {
  if (namespaces.size === 0) return;
  const { default: pg } = await import('pg');
  const client = new pg.Client({ connectionString: STORE_URL });
  await client.connect();
  const amqplib = await import('amqplib');
  const connection = await amqplib.connect(RABBITMQ_URL);
  try {
    const channel = await connection.createChannel();
    for (const ns of [...namespaces]) {
      const names = new Names(ns);
      const schema = names.schema;
      const exists = await client.query('SELECT 1 FROM information_schema.schemata WHERE schema_name = $1', [schema]);
      if (exists.rowCount !== 0) {
        const topics = await client.query<{ name: string; partitions: number }>(`SELECT name, partitions FROM "${schema}".topics`);
        for (const topic of topics.rows) {
          const groups = await client.query<{ grp: string }>(`SELECT name AS grp FROM "${schema}".groups WHERE topic = $1`, [topic.name]);
          for (const { grp } of groups.rows) for (let p = 0; p < topic.partitions; p++) await channel.deleteQueue(names.partitionQueue(topic.name, grp, p));
          await channel.deleteQueue(names.unclaimedQueue(topic.name));
          await channel.deleteQueue(names.deadLetterQueue(topic.name));
          for (const exchange of [names.exchange(topic.name), names.unclaimedExchange(topic.name), names.deadLetterExchange(topic.name)]) await channel.deleteExchange(exchange);
        }
      }
      await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      namespaces.delete(ns);
    }
    await channel.close();
  } finally {
    await connection.close();
    await client.end();
  }
}
