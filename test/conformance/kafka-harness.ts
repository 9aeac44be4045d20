/**
 * Fresh Kafka storage for each conformance test: one librdkafka mock cluster per test file
 * (test/support/kafka-cluster.ts), and per URL its own namespace (a Kafka topic and consumer
 * group prefix, and a PostgreSQL schema). Topics are created through the mock's C API, which
 * the backend is told about with registerTopicCreator (the mock refuses the Admin API).
 */
import { open, registerTopicCreator } from '../../src/brokers/kafka/index.js';
import { KafkaNames } from '../../src/brokers/kafka/kafka-broker.js';
import { dropPostgresSchema } from '../../src/stores/postgres/index.js';
import type { BackendFactory } from './harness.js';
import { MockKafkaCluster } from '../support/kafka-cluster.js';
import { STORE_URL } from '../support/services.js';

export interface KafkaFactory extends BackendFactory {
  cluster: MockKafkaCluster;
  /** Drops the store schemas of every namespace handed out so far (call after each test). */
  cleanupUsed(): Promise<void>;
}

export function kafkaUrl(cluster: MockKafkaCluster, namespace: string): string {
  return `kafka://${cluster.bootstraps.join(',')}?namespace=${namespace}&store=${encodeURIComponent(STORE_URL)}`;
}

export async function kafkaFactory(prefix: string): Promise<KafkaFactory> {
  const cluster = await MockKafkaCluster.start();
  registerTopicCreator(cluster.bootstraps, (name, partitions) => cluster.createTopic(name, partitions));
  const namespaces = new Set<string>();
  let counter = 0;
  const run = `${prefix}${process.pid}_${Date.now() % 100_000}`;
  const namespace = (shared?: string): string => {
    const ns = shared === undefined ? `${run}_${counter++}` : `${run}_s${shared.replace(/[^a-z0-9]/gi, '').toLowerCase().slice(-12)}`;
    namespaces.add(ns);
    return ns;
  };
  const dropUsed = async (): Promise<void> => {
    for (const ns of [...namespaces]) {
      await dropPostgresSchema(STORE_URL, new KafkaNames(ns).schema);
      namespaces.delete(ns);
    }
  };
  return {
    name: 'kafka',
    cluster,
    url: (shared) => kafkaUrl(cluster, namespace(shared)),
    async brokerWithClock(now, shared) {
      const ns = namespace(shared);
      const broker = await open(kafkaUrl(cluster, ns), { now });
      const close = broker.close.bind(broker);
      broker.close = async () => {
        await close();
        await dropPostgresSchema(STORE_URL, new KafkaNames(ns).schema);
        namespaces.delete(ns);
      };
      return broker;
    },
    cleanupUsed: dropUsed,
    async cleanup() {
      await dropUsed();
      registerTopicCreator(cluster.bootstraps, undefined);
      await cluster.stop();
    },
  };
}
