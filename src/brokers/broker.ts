/**
 * The broker port: the few storage operations a backend provides. Ordering, retries, backoff,
 * failure policies, order checking and partition balancing are written once, in `worker/`,
 * on top of these.
 *
 * Model every backend keeps:
 * - A topic has P partitions. Every published message gets a `seq` that increases per
 *   partition in publish order.
 * - Every group subscribed to a topic has its own copy of each message's state ("pending"
 *   until settled). A group created after messages were published receives every message
 *   still retained (not yet settled by all existing groups), like Kafka's `earliest`.
 * - Each (topic, group, partition) is owned by at most one member at a time, through a lease
 *   with a fencing token (`fence`) that increases on every change of owner. Settlements carry
 *   the fence; a settlement whose fence is no longer current is refused ("fenced").
 * - Everything a method writes is durable when its promise resolves (for durable backends).
 */
import type { ErrorInfo } from '../core/errors.js';
import type { PreparedMessage, PublishReceipt } from '../core/envelope.js';
import type { BrokerEventEmitter } from './events.js';
import type { StatsOptions } from './idle.js';

export interface BrokerCapabilities {
  /** The backend assigns `seq` at publish, so the worker can check per-key order. */
  readonly assignsSeq: boolean;
  /** Several processes may open the same broker and share its data. */
  readonly multiProcess: boolean;
  /** Published messages survive a kill -9 of every botqueue process. */
  readonly durable: boolean;
  /**
   * An ack may carry messages to publish (`StagedPublish`), stored in the same transaction as
   * the ack: both or neither. Handlers' ctx.publish and ctx.reply are then staged until the
   * handler succeeds. Without it they are published at once, deduplicated by their derived ids.
   */
  readonly publishWithAck?: boolean;
}

/** Messages a handler published, stored with its message's ack (see `publishWithAck`). */
export interface StagedPublish {
  topic: string;
  messages: PreparedMessage[];
}

export interface TopicSettings {
  partitions: number;
  /** How long a message id is remembered for deduplication, in ms. */
  dedupWindowMs: number;
}

export interface TopicInfo extends TopicSettings {
  name: string;
  createdAt: number;
}

/** One (topic, group, partition) owned by one member, with the fence that proves it. */
export interface Lease {
  topic: string;
  group: string;
  partition: number;
  member: string;
  fence: number;
}

export interface CoordinateRequest {
  topic: string;
  group: string;
  member: string;
  /** The member's heartbeat and its leases are valid this long from now. */
  leaseMs: number;
  /** Partitions to take when they are free (no owner, or the owner's lease has expired). */
  acquire: number[];
  /** Partitions to give up (only if this member owns them). */
  release: number[];
  /** True when the member is leaving: its heartbeat row is removed after releasing. */
  leaving?: boolean;
}

export interface CoordinateResult {
  /** Live members of the group (heartbeat not expired), sorted. Includes the caller unless leaving. */
  members: string[];
  /** The partitions this member owns after the call, with their fences. */
  owned: Map<number, number>;
  /** Increases whenever an operator redrives or skips a parked message of this topic and group. */
  controlVersion: number;
  partitions: number;
}

/**
 * What a member reports about itself for stats, apart from the lease protocol: a backend keeps
 * it for `stats()` and never decides anything by it.
 */
export interface MemberReport {
  topic: string;
  group: string;
  member: string;
  /** Messages being handled now, per partition the member owns (others are ignored). */
  inFlight: Record<number, number>;
  /** Per-key order violations seen since the last report, added to the group's total (must stay 0). */
  orderViolations: number;
  /** RetryLater deferrals settled since the last report, added to the group's total. */
  deferrals: number;
}

/** A pending message of a group, as `fetch` returns it. */
export interface Delivery {
  seq: number;
  id: string;
  key: string | null;
  partition: number;
  /** JSON text (see `payloadMayBeText`). */
  payload: string;
  /**
   * The payload is a record's text as read, not checked (Kafka: a plain producer may write any
   * text). The worker hands text that is not JSON over as a string; checking it here would
   * parse every payload twice.
   */
  payloadMayBeText?: boolean;
  headers: Record<string, string>;
  publishedAt: number;
  /** Epoch ms before which it must not run (a delay, or a retry's backoff); 0 for none. */
  notBefore: number;
  /** Failed attempts so far (persisted). */
  attempts: number;
  firstFailedAt: number | null;
  /** True when the message is parked: its key must wait until an operator redrives or skips it. */
  parked: boolean;
}

export type Settlement =
  /** Handled: the message is done for this group. */
  | { kind: 'ack'; lease: Lease; seq: number; publish?: StagedPublish[] }
  /** Failed, will be tried again: persist the attempt count and when. */
  | { kind: 'retry'; lease: Lease; seq: number; attempts: number; notBefore: number; error: ErrorInfo; failedAt: number }
  /**
   * Failed for good: copy to the dead-letter store. With `park`, the message also stays pending
   * and parked (its key waits); without, it is removed from the group's pending messages.
   */
  | { kind: 'dead'; lease: Lease; seq: number; attempts: number; error: ErrorInfo; failedAt: number; park: boolean };

/** `ok`: written. `fenced`: the lease's fence is no longer current, nothing written. `missing`: no such pending message. */
export type SettleOutcome = 'ok' | 'fenced' | 'missing';

export interface DeadLetter {
  /** The dead letter's own id in the store. */
  dlqId: number;
  topic: string;
  group: string;
  partition: number;
  seq: number;
  id: string;
  key: string | null;
  payload: string;
  headers: Record<string, string>;
  publishedAt: number;
  attempts: number;
  firstFailedAt: number;
  lastFailedAt: number;
  error: ErrorInfo;
  /** The key waits for this message (failure policy park-key). */
  parked: boolean;
}

export interface DeadLetterFilter {
  topic?: string;
  group?: string;
  key?: string;
  /** Only these dead letters. */
  dlqIds?: number[];
  /** Case-insensitive substring of the last error's message. */
  errorContains?: string;
}

export interface DeadLetterListOptions extends DeadLetterFilter {
  limit?: number;
  /** Return dead letters with `dlqId` greater than this (paging). */
  afterDlqId?: number;
}

export interface PartitionStats {
  partition: number;
  /** Pending messages not yet settled (parked ones included). */
  backlog: number;
  /** Messages being handled, as reported by the owner (at each of its heartbeats). */
  inFlight: number;
  /** Age in ms of the oldest pending message, 0 when none. */
  oldestAgeMs: number;
  owner: string | null;
}

export interface GroupStats {
  group: string;
  backlog: number;
  inFlight: number;
  oldestAgeMs: number;
  deadLetters: number;
  parkedKeys: number;
  members: number;
  orderViolations: number;
  /** RetryLater deferrals settled in this group (not failures: they count toward no attempt). */
  deferrals: number;
  /** When a member of the group last sent a heartbeat (epoch ms), or null when none ever did. */
  lastSeenAt: number | null;
  /** No live member, and none seen for `idleAfterMs` (see idle.ts): nobody consumes its messages. */
  idle: boolean;
  partitions: PartitionStats[];
}

export interface TopicStats {
  topic: string;
  partitions: number;
  /** Messages stored for the topic, settled or not by every group. */
  retained: number;
  groups: GroupStats[];
}

export interface Broker {
  readonly capabilities: BrokerCapabilities;
  /** Connection changes and failures of background work (see events.ts). */
  readonly events: BrokerEventEmitter;

  /** Creates the topic, or checks an existing one has the same partition count. */
  ensureTopic(topic: string, settings: TopicSettings): Promise<TopicInfo>;
  /** Returns the topic, or undefined when it does not exist. */
  getTopic(topic: string): Promise<TopicInfo | undefined>;
  /** Subscribes a group to a topic (idempotent); a new group receives every retained message. */
  ensureGroup(topic: string, group: string): Promise<void>;

  /**
   * Stores the messages atomically and durably, deduplicating by id within the topic's window
   * (a duplicate returns the first message's partition and seq with `duplicate: true`; an id
   * repeated inside one call counts as a duplicate of its first occurrence). Receipts are in
   * input order. Concurrent calls may be committed together (group commit).
   */
  publish(topic: string, messages: PreparedMessage[]): Promise<PublishReceipt[]>;

  /** Heartbeat, lease renewal, acquisition and release for one member, in one step. */
  coordinate(request: CoordinateRequest): Promise<CoordinateResult>;

  /** Stores a member's report for stats (in flight per owned partition; counters added to the group's totals). */
  report(report: MemberReport): Promise<void>;

  /** Pending messages of the group's partition with seq > afterSeq, in seq order, at most `limit`. */
  fetch(topic: string, group: string, partition: number, afterSeq: number, limit: number): Promise<Delivery[]>;

  /** Applies settlements, each checked against its lease's fence. Outcomes are in input order. */
  settle(settlements: Settlement[]): Promise<SettleOutcome[]>;

  /** The recorded result (JSON text, or null) of a completed `ctx.once` step, or undefined. */
  getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined>;
  /** Records a completed step durably; kept for the topic's dedup window. */
  putEffect(topic: string, group: string, messageId: string, name: string, result: string | null): Promise<void>;

  listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]>;
  /**
   * Sends matching dead letters back: a parked one is unparked in place (its key goes on from
   * it, attempts reset); any other is published again to its topic for its group only, with its
   * id and key (at the end of the key's queue). Returns how many were redriven.
   */
  redriveDeadLetters(filter: DeadLetterFilter): Promise<number>;
  /** Deletes matching dead letters; a parked one is skipped (its key goes on without it). */
  purgeDeadLetters(filter: DeadLetterFilter): Promise<number>;

  stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]>;

  /**
   * Unsubscribes a group: its pending messages, leases, members, dead letters and recorded
   * steps go; a message no other group has pending is deleted. Returns false when the group
   * did not exist. The caller (the client) refuses a group with live members first.
   */
  deleteGroup(topic: string, group: string): Promise<boolean>;
  /** Deletes a topic with its messages, groups (as deleteGroup), dedup records and dead letters. False when it did not exist. */
  deleteTopic(topic: string): Promise<boolean>;

  /**
   * Calls `listener` soon after new messages may be available for the topic (partition, or -1
   * when unknown). Returns a function that stops the calls.
   */
  watch(topic: string, listener: (partition: number) => void): () => void;

  close(): Promise<void>;
}
