/**
 * One settlement, checked against its lease's fence first: a settlement from a member that
 * no longer owns the partition (or owns it under a newer fence) writes nothing.
 */
import type { Settlement, SettleOutcome } from '../broker.js';
import type { DeadLetterStore } from './dead-letters.js';
import { removePending, setParked, type TopicState } from './state.js';

export function settleOne(topic: TopicState | undefined, deadLetters: DeadLetterStore, item: Settlement): SettleOutcome {
  const { lease } = item;
  const group = topic?.groups.get(lease.group);
  const assignment = group?.assignments[lease.partition];
  if (topic === undefined || group === undefined || assignment === undefined) return 'fenced';
  if (assignment.owner !== lease.member || assignment.fence !== lease.fence) return 'fenced';

  const entry = group.pending[lease.partition]!.get(item.seq);
  if (entry === undefined) return 'missing';

  switch (item.kind) {
    case 'ack':
      removePending(topic, group, entry);
      return 'ok';
    case 'retry':
      entry.attempts = item.attempts;
      entry.notBefore = item.notBefore;
      entry.firstFailedAt ??= item.failedAt;
      return 'ok';
    case 'dead': {
      const message = entry.message;
      deadLetters.add({
        topic: topic.info.name,
        group: group.name,
        partition: message.partition,
        seq: message.seq,
        id: message.id,
        key: message.key,
        payload: message.payload,
        headers: { ...message.headers },
        publishedAt: message.publishedAt,
        attempts: item.attempts,
        firstFailedAt: entry.firstFailedAt ?? item.failedAt,
        lastFailedAt: item.failedAt,
        error: { ...item.error },
        parked: item.park,
      });
      group.deadLetters += 1;
      if (item.park) {
        // The entry stays as the key's head, parked, and shows the attempts it failed.
        entry.attempts = item.attempts;
        entry.firstFailedAt ??= item.failedAt;
        setParked(group, entry, true);
      } else {
        removePending(topic, group, entry);
      }
      return 'ok';
    }
  }
}
