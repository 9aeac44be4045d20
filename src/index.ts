/**
 * botqueue: a durable, ordered, idempotent queue between chat platforms and a bot's handlers.
 * Every public name is listed here.
 */
export { connect, Botqueue, DEFAULT_URL, type ConnectOptions, type TopicOptions, type DeadLetters, type ClientEvents } from './client.js';
export type { BrokerEvents } from './brokers/events.js';
export { Worker, type Handler, type HandlerContext, type HandlerPublishReceipt, type CloseResult, type WorkerHooks } from './worker/worker.js';
export type { WorkerOptions, FailurePolicy } from './worker/options.js';
export type { WorkerEvents } from './worker/events.js';
export { BotqueueError, PermanentError, ErrorCodes, isBotqueueError, type ErrorCode, type ErrorInfo } from './core/errors.js';
export { RetryLater } from './core/retry-later.js';
export type { Envelope, PublishInput, PublishReceipt } from './core/envelope.js';
export { partitionForKey, murmur2 } from './core/partitioner.js';
export type {
  Broker,
  BrokerCapabilities,
  DeadLetter,
  DeadLetterFilter,
  DeadLetterListOptions,
  TopicInfo,
  TopicStats,
  GroupStats,
  PartitionStats,
} from './brokers/broker.js';
export { DEFAULT_IDLE_AFTER_MS, type StatsOptions } from './brokers/idle.js';
export {
  startSender,
  telegramClient,
  slackClient,
  discordClient,
  whatsappClient,
  outboundTopic,
  PLATFORMS,
  type Sender,
  type SenderOptions,
  type Platform,
  type OutboundPayload,
  type ReplyMessage,
  type SendOptions,
  type PlatformClient,
  type PlatformLimits,
  type RateLimit,
} from './outbound/index.js';
