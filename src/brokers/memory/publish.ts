/**
 * Stores prepared messages on a topic, all or nothing: every message is checked before the
 * first one is written. Deduplicates by id within the topic's window.
 */
import type { PreparedMessage, PublishReceipt } from '../../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { addPending, type GroupState, type StoredMessage, type TopicState } from './state.js';

export interface PublishOutcome {
  receipts: PublishReceipt[];
  /** Partitions that received a new message. */
  partitions: Set<number>;
}

export function publishMessages(topic: TopicState, messages: readonly PreparedMessage[], now: number, nextSeq: () => number): PublishOutcome {
  const list: unknown = messages;
  if (!Array.isArray(list)) {
    throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, `publish to "${topic.info.name}" takes an array of prepared messages`);
  }
  messages.forEach((message, index) => {
    checkPartition(topic, message.partition, index);
  });

  const name = topic.info.name;
  const window = topic.info.dedupWindowMs;
  const receipts: PublishReceipt[] = [];
  const partitions = new Set<number>();
  const groups = [...topic.groups.values()];
  for (const prepared of messages) {
    if (prepared.dedup) {
      const first = topic.dedup.get(prepared.id, now);
      if (first !== undefined) {
        receipts.push({ id: prepared.id, topic: name, partition: first.partition, seq: first.seq, duplicate: true });
        continue;
      }
    }
    const message = storeMessage(topic, prepared, now, nextSeq(), groups);
    if (prepared.dedup) topic.dedup.set(prepared.id, { partition: message.partition, seq: message.seq }, now + window);
    partitions.add(message.partition);
    receipts.push({ id: message.id, topic: name, partition: message.partition, seq: message.seq, duplicate: false });
  }
  topic.dedup.sweep(now);
  return { receipts, partitions };
}

/** Stores one message, pending for the given groups. */
export function storeMessage(
  topic: TopicState,
  source: Pick<PreparedMessage, 'id' | 'key' | 'partition' | 'payload' | 'headers' | 'notBefore'>,
  now: number,
  seq: number,
  groups: readonly GroupState[],
): StoredMessage {
  const message: StoredMessage = {
    seq,
    id: source.id,
    key: source.key,
    partition: source.partition,
    payload: source.payload,
    headers: { ...source.headers },
    publishedAt: now,
    notBefore: source.notBefore,
    pendingIn: 0,
    slot: -1,
  };
  topic.messages.append(message);
  for (const group of groups) addPending(group, message, message.notBefore);
  return message;
}

function checkPartition(topic: TopicState, partition: unknown, index: number): void {
  const count = topic.info.partitions;
  if (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0 || partition >= count) {
    throw new BotqueueError(
      ErrorCodes.INVALID_MESSAGE,
      `message #${index}: partition ${String(partition)} is outside topic "${topic.info.name}" (partitions 0-${count - 1})`,
      { details: { field: 'partition', index } },
    );
  }
}
