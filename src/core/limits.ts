/**
 * The one set of limits on what goes into a backend. The client (src/client.ts) checks every
 * call against them before it reaches a backend, and the CLI and the config file use the same
 * numbers, so a value one entry point accepts is never refused by another; backends keep only
 * the checks their own integrity needs (a partition inside the stored topic, SQL safety).
 */
import type { OptionSpec } from './options.js';

/**
 * Partitions of a topic, fixed at creation. Each is a unit of ordering and ownership (on
 * RabbitMQ a quorum queue per group and partition), so the bound keeps a topic's state, and a
 * worker's per-partition bookkeeping, small; 16 is plenty for most bots.
 */
export const MIN_PARTITIONS = 1;
export const MAX_PARTITIONS = 4096;
export const DEFAULT_PARTITIONS = 16;

/** How long a message id is remembered to drop duplicates, in ms. 0 turns deduplication off. */
export const MIN_DEDUP_WINDOW_MS = 0;
export const DEFAULT_DEDUP_WINDOW_MS = 24 * 60 * 60 * 1000;

/** The largest `maxMessageBytes` a client may set: bigger payloads belong in a blob store. */
export const MAX_MESSAGE_BYTES_LIMIT = 64 * 1024 * 1024;

/** A topic's settings, as createTopic takes them. */
export const TOPIC_SETTINGS_SPEC: OptionSpec = {
  partitions: { type: 'integer', min: MIN_PARTITIONS, max: MAX_PARTITIONS },
  dedupWindowMs: { type: 'integer', min: MIN_DEDUP_WINDOW_MS },
};

/** The options of connect(): the size limit and the settings of topics created on first use. */
export const CONNECT_OPTIONS_SPEC: OptionSpec = {
  maxMessageBytes: { type: 'integer', min: 1, max: MAX_MESSAGE_BYTES_LIMIT },
  defaultPartitions: { type: 'integer', min: MIN_PARTITIONS, max: MAX_PARTITIONS },
  defaultDedupWindowMs: { type: 'integer', min: MIN_DEDUP_WINDOW_MS },
};
