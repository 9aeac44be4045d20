/**
 * The parts of kafkajs (2.2.4, pinned) the backend uses, loaded only when a kafka: URL is
 * opened (kafkajs is an optional dependency). Besides the producer, the backend talks to the
 * brokers through kafkajs's cluster and broker objects (Fetch, ListOffsets, OffsetCommit,
 * OffsetFetch): botqueue assigns partitions itself (leases in the shared store), and kafkajs's
 * consumer has no manual assignment.
 */
import { BotqueueError, ErrorCodes } from '../../core/errors.js';

export interface RawMessage {
  offset: string;
  key: Buffer | null;
  value: Buffer | null;
  timestamp: string;
  headers: Record<string, Buffer | Buffer[] | undefined>;
  isControlRecord?: boolean;
}

export interface RawBroker {
  fetch(request: {
    replicaId: number;
    isolationLevel: number;
    maxWaitTime: number;
    minBytes: number;
    maxBytes: number;
    topics: Array<{ topic: string; partitions: Array<{ partition: number; fetchOffset: string; maxBytes: number }> }>;
  }): Promise<{ responses: Array<{ topicName: string; partitions: Array<{ partition: number; errorCode: number; highWatermark: string; messages: RawMessage[] }> }> }>;
  listOffsets(request: {
    replicaId: number;
    isolationLevel: number;
    topics: Array<{ topic: string; partitions: Array<{ partition: number; timestamp: string }> }>;
  }): Promise<{ responses: Array<{ topic: string; partitions: Array<{ partition: number; errorCode: number; offset: string }> }> }>;
  offsetCommit(request: {
    groupId: string;
    groupGenerationId: number;
    memberId: string;
    topics: Array<{ topic: string; partitions: Array<{ partition: number; offset: string; metadata: string | null }> }>;
  }): Promise<{ responses: Array<{ topic: string; partitions: Array<{ partition: number; errorCode: number }> }> }>;
  offsetFetch(request: {
    groupId: string;
    topics: Array<{ topic: string; partitions: Array<{ partition: number }> }>;
  }): Promise<{ responses: Array<{ topic: string; partitions: Array<{ partition: number; offset: string; metadata: string | null; errorCode: number }> }> }>;
  createTopics(request: { topics: Array<{ topic: string; numPartitions: number; replicationFactor: number }>; timeout: number }): Promise<unknown>;
}

export interface RawCluster {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  refreshMetadata(): Promise<void>;
  addTargetTopic(topic: string): Promise<void>;
  addMultipleTargetTopics(topics: string[]): Promise<void>;
  findTopicPartitionMetadata(topic: string): Array<{ partitionId: number; leader: number }>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(request: { nodeId: number | string }): Promise<RawBroker>;
  findControllerBroker(): Promise<RawBroker>;
  findGroupCoordinator(request: { groupId: string }): Promise<RawBroker>;
  getNodeIds(): number[];
  metadata(request: { topics: string[] }): Promise<{ topicMetadata: Array<{ topic: string; topicErrorCode: number; partitionMetadata: Array<{ partitionId: number; leader: number }> }> }>;
}

export interface RawProducer {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  sendBatch(request: {
    acks: number;
    timeout?: number;
    topicMessages: Array<{ topic: string; messages: Array<{ key: Buffer | null; value: Buffer; partition: number; headers: Record<string, string>; timestamp: string }> }>;
  }): Promise<Array<{ topicName: string; partition: number; errorCode: number; baseOffset: string }>>;
}

export interface KafkajsParts {
  /** A cluster connection (metadata, brokers) that never creates topics by asking for them. */
  cluster(): RawCluster;
  /** An idempotent producer (acks all is asked per send) on its own cluster connection. */
  producer(): RawProducer;
  /** kafkajs's own default partitioner (murmur2), for tests comparing it with botqueue's. */
  defaultPartitioner: unknown;
}

/** A module of kafkajs's source tree (untyped; the interfaces above say what is used). */
function internal<T>(path: string): Promise<T> {
  return import(`kafkajs/src/${path}`) as Promise<T>;
}

export async function loadKafkajs(brokers: string[], clientId: string): Promise<KafkajsParts> {
  let kafkajs: typeof import('kafkajs');
  let Cluster: new (config: object) => RawCluster;
  let createProducer: (config: object) => RawProducer;
  let loggers: { createLogger(config: object): unknown };
  let socketFactory: () => unknown;
  try {
    kafkajs = (await import('kafkajs')).default;
    // Internal modules of the pinned version: see the file comment.
    Cluster = (await internal<{ default: typeof Cluster }>('cluster/index.js')).default;
    createProducer = (await internal<{ default: typeof createProducer }>('producer/index.js')).default;
    loggers = (await internal<{ default: typeof loggers }>('loggers/index.js')).default;
    socketFactory = (await internal<{ default: typeof socketFactory }>('network/socketFactory.js')).default;
  } catch (error) {
    throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'the Kafka backend needs kafkajs 2.2.4: run npm install kafkajs@2.2.4 (an optional dependency)', {
      details: { option: 'url' },
      cause: error,
    });
  }
  // kafkajs logs to the console by default; the backend reports through its events instead.
  const logger = loggers.createLogger({ level: kafkajs.logLevel.NOTHING, logCreator: () => () => undefined });
  const cluster = (): RawCluster => {
    const made = new Cluster({
      logger,
      brokers,
      clientId,
      socketFactory: socketFactory(),
      connectionTimeout: 3_000,
      requestTimeout: 30_000,
      enforceRequestTimeout: true,
      allowAutoTopicCreation: false,
      metadataMaxAge: 300_000,
      offsets: new Map(),
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2_000 },
    });
    // InitProducerId of a non-transactional producer may go to any broker (kafkajs says so), but
    // kafkajs asks the controller; a cluster that reports no valid controller (the mock reports
    // id 0) then fails. Falling back to any known broker changes nothing on a real cluster.
    const controller = made.findControllerBroker.bind(made);
    made.findControllerBroker = async () => {
      try {
        return await controller();
      } catch (error) {
        const ids = made.getNodeIds();
        if (ids.length === 0) throw error;
        return made.findBroker({ nodeId: ids[0]! });
      }
    };
    return made;
  };
  return {
    cluster,
    producer: () => createProducer({ cluster: cluster(), logger, idempotent: true, createPartitioner: kafkajs.Partitioners.DefaultPartitioner }),
    defaultPartitioner: kafkajs.Partitioners.DefaultPartitioner,
  };
}
