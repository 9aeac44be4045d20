/**
 * The in-memory data model and the few operations that keep its counters consistent:
 * a message is stored once per topic, each group holds a pending entry per message, and a
 * message is deleted when no group has it pending anymore.
 */
import type { TopicInfo } from '../broker.js';
import { ExpiringMap } from './expiring-map.js';
import { MessageLog } from './message-log.js';
import { SeqIndex } from './seq-index.js';

export interface StoredMessage {
  readonly seq: number;
  readonly id: string;
  readonly key: string | null;
  readonly partition: number;
  readonly payload: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly publishedAt: number;
  /** As published; a group that joins later starts from it. */
  readonly notBefore: number;
  /** How many groups have it pending; the message is deleted when this drops to 0. */
  pendingIn: number;
  /** Its index in the topic's log (see MessageLog); -1 once deleted. */
  slot: number;
}

export interface PendingEntry {
  readonly message: StoredMessage;
  notBefore: number;
  attempts: number;
  firstFailedAt: number | null;
  parked: boolean;
}

/** Who owns one (topic, group, partition), and the fence that proves it. */
export interface Assignment {
  owner: string | null;
  /** Increases on every change of owner (acquisition). */
  fence: number;
  leaseUntil: number;
  inFlight: number;
}

export interface GroupState {
  readonly name: string;
  /** Pending entries per partition, by seq. */
  readonly pending: SeqIndex<PendingEntry>[];
  readonly assignments: Assignment[];
  /** Member id -> heartbeat expiry (epoch ms). */
  readonly members: Map<string, number>;
  /** Parked pending entries per key (keys of keyless messages are not counted). */
  readonly parkedKeys: Map<string, number>;
  controlVersion: number;
  orderViolations: number;
  /** RetryLater deferrals reported by the group's members. */
  deferrals: number;
  deadLetters: number;
  /** The last heartbeat of any member (epoch ms), or null: kept when the members leave or expire. */
  lastSeenAt: number | null;
}

export interface DedupRecord {
  partition: number;
  seq: number;
}

export interface TopicState {
  readonly info: TopicInfo;
  /** Retained messages, in seq order. */
  readonly messages: MessageLog;
  readonly groups: Map<string, GroupState>;
  readonly dedup: ExpiringMap<string, DedupRecord>;
  /** `ctx.once` results by JSON of [group, messageId, name]. */
  readonly effects: ExpiringMap<string, string | null>;
}

export function createTopic(info: TopicInfo): TopicState {
  return { info, messages: new MessageLog(), groups: new Map(), dedup: new ExpiringMap(), effects: new ExpiringMap() };
}

/**
 * Subscribes a new group: it gets a pending entry for every retained message (a message is
 * retained while a group has it pending, or, before any group exists, always).
 */
export function createGroup(topic: TopicState, name: string): GroupState {
  const partitions = topic.info.partitions;
  const group: GroupState = {
    name,
    pending: Array.from({ length: partitions }, () => new SeqIndex<PendingEntry>()),
    assignments: Array.from({ length: partitions }, () => ({ owner: null, fence: 0, leaseUntil: 0, inFlight: 0 })),
    members: new Map(),
    parkedKeys: new Map(),
    controlVersion: 0,
    orderViolations: 0,
    deferrals: 0,
    deadLetters: 0,
    lastSeenAt: null,
  };
  for (const message of topic.messages.values()) addPending(group, message, message.notBefore);
  topic.groups.set(name, group);
  return group;
}

export function addPending(group: GroupState, message: StoredMessage, notBefore: number): PendingEntry {
  const entry: PendingEntry = { message, notBefore, attempts: 0, firstFailedAt: null, parked: false };
  group.pending[message.partition]!.add(message.seq, entry);
  message.pendingIn += 1;
  return entry;
}

/** Removes a group's pending entry and deletes the message once no group has it pending. */
export function removePending(topic: TopicState, group: GroupState, entry: PendingEntry): void {
  const message = entry.message;
  if (!group.pending[message.partition]!.delete(message.seq)) return;
  if (entry.parked) setParked(group, entry, false);
  message.pendingIn -= 1;
  if (message.pendingIn <= 0) topic.messages.remove(message);
}

export function setParked(group: GroupState, entry: PendingEntry, parked: boolean): void {
  if (entry.parked === parked) return;
  entry.parked = parked;
  const key = entry.message.key;
  if (key === null) return;
  const count = (group.parkedKeys.get(key) ?? 0) + (parked ? 1 : -1);
  if (count > 0) group.parkedKeys.set(key, count);
  else group.parkedKeys.delete(key);
}

export function effectKey(group: string, messageId: string, name: string): string {
  return JSON.stringify([group, messageId, name]);
}
