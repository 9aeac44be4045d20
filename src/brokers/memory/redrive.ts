/**
 * Operator actions on dead letters. A parked dead letter still has its pending entry (its key
 * waits on it): redrive unparks it in place, purge removes it so the key goes on without it.
 * Any other dead letter is redriven as a new message, pending for its group only.
 */
import type { DeadLetter, DeadLetterFilter } from '../broker.js';
import type { DeadLetterStore } from './dead-letters.js';
import { storeMessage } from './publish.js';
import { removePending, setParked, type GroupState, type PendingEntry, type TopicState } from './state.js';

/** Topics and partitions that received messages, for watchers. */
export type Touched = Map<string, Set<number>>;

export function redriveDeadLetters(
  topics: ReadonlyMap<string, TopicState>,
  store: DeadLetterStore,
  filter: DeadLetterFilter,
  now: number,
  nextSeq: () => number,
): { count: number; touched: Touched } {
  const touched: Touched = new Map();
  let count = 0;
  for (const letter of store.find(filter)) {
    const found = locate(topics, letter);
    store.delete(letter.dlqId);
    count += 1;
    if (found === undefined) continue;
    const { topic, group, entry } = found;
    group.deadLetters -= 1;
    if (letter.parked) group.controlVersion += 1;
    if (letter.parked && entry !== undefined) {
      entry.attempts = 0;
      entry.notBefore = 0;
      entry.firstFailedAt = null;
      setParked(group, entry, false);
    } else {
      storeMessage(topic, { ...letter, notBefore: 0 }, now, nextSeq(), [group]);
    }
    let partitions = touched.get(topic.info.name);
    if (partitions === undefined) {
      partitions = new Set();
      touched.set(topic.info.name, partitions);
    }
    partitions.add(letter.partition);
  }
  return { count, touched };
}

export function purgeDeadLetters(topics: ReadonlyMap<string, TopicState>, store: DeadLetterStore, filter: DeadLetterFilter): number {
  let count = 0;
  for (const letter of store.find(filter)) {
    const found = locate(topics, letter);
    store.delete(letter.dlqId);
    count += 1;
    if (found === undefined) continue;
    const { topic, group, entry } = found;
    group.deadLetters -= 1;
    if (!letter.parked) continue;
    if (entry !== undefined) removePending(topic, group, entry);
    group.controlVersion += 1;
  }
  return count;
}

function locate(
  topics: ReadonlyMap<string, TopicState>,
  letter: DeadLetter,
): { topic: TopicState; group: GroupState; entry: PendingEntry | undefined } | undefined {
  const topic = topics.get(letter.topic);
  const group = topic?.groups.get(letter.group);
  if (topic === undefined || group === undefined) return undefined;
  return { topic, group, entry: group.pending[letter.partition]?.get(letter.seq) };
}
