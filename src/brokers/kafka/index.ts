/**
 * The Kafka backend (the native protocol, through kafkajs): a botqueue topic is a Kafka topic,
 * a partition a Kafka partition, a group a Kafka consumer group's committed offsets; a shared
 * PostgreSQL store keeps what Kafka does not (dedup, ctx.once, leases, retries, dead letters).
 *
 * @example
 * const broker = await open('kafka://127.0.0.1:9092,127.0.0.1:9093?store=postgres://postgres@127.0.0.1:5432/app');
 */
import { BrokerEventEmitter } from '../events.js';
import { openPostgresStore } from '../../stores/postgres/index.js';
import { KafkaBroker, KafkaNames } from './kafka-broker.js';
import { loadKafkajs } from './kafkajs-parts.js';
import { parseKafkaUrl, type KafkaOptions } from './options.js';
import { CoalescingPublisher } from './publisher.js';

export type { KafkaOptions } from './options.js';
export { KafkaBroker, KafkaNames } from './kafka-broker.js';

const topicCreators = new Map<string, (name: string, partitions: number) => Promise<void>>();

/**
 * Registers how topics are created on the cluster with these bootstrap brokers, for every
 * open() of this process that names them (test clusters that refuse the Admin API, such as
 * librdkafka's mock cluster, created through its own C API). `undefined` removes it.
 */
export function registerTopicCreator(brokers: string[], create: ((name: string, partitions: number) => Promise<void>) | undefined): void {
  const key = [...brokers].sort().join(',');
  if (create === undefined) topicCreators.delete(key);
  else topicCreators.set(key, create);
}

/** Opens the backend the URL names; the store comes from `?store=`, `options.storeUrl` or `BOTQUEUE_STORE_URL`. */
export async function open(url: string, options: KafkaOptions = {}): Promise<KafkaBroker> {
  const resolved = parseKafkaUrl(url, options);
  resolved.createTopic ??= topicCreators.get([...resolved.brokers].sort().join(','));
  const names = new KafkaNames(resolved.namespace);
  const events = new BrokerEventEmitter();
  const kafkajs = await loadKafkajs(resolved.brokers, resolved.clientId);
  const store = await openPostgresStore(resolved.storeUrl, {
    schema: names.schema,
    now: resolved.now,
    onConnectionError: (error) => events.report('connection-lost', { connection: 'store', error }),
  });
  const cluster = kafkajs.cluster();
  // Commits on connections of their own: on the reading ones they queued behind Fetch long polls.
  const commits = kafkajs.cluster();
  const producer = kafkajs.producer();
  try {
    await cluster.connect();
    await commits.connect();
    await producer.connect();
  } catch (error) {
    await Promise.all([cluster.disconnect().catch(() => undefined), commits.disconnect().catch(() => undefined), producer.disconnect().catch(() => undefined), store.close()]);
    throw error;
  }
  const closeClients = async (): Promise<void> => {
    await Promise.all([producer.disconnect(), cluster.disconnect(), commits.disconnect()]);
  };
  return new KafkaBroker({ reads: cluster, commits }, new CoalescingPublisher(producer), closeClients, store, names, resolved, events);
}
