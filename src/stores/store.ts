/**
 * The shared coordination store a distributed backend composes (RabbitMQ today, Kafka next):
 * everything every worker and publisher of a distributed deployment must see the same way,
 * which the message broker itself does not keep. It imports no backend.
 *
 * With RabbitMQ, the broker holds the messages (one quorum queue per topic, group and
 * partition) and decides, with single active consumer, which connection receives a partition.
 * The store holds the rest: topics and groups, membership and partition leases (who should
 * consume what, for balancing), dedup records (atomic with respect to concurrent publishers on
 * any host), the `ctx.once` effect journal, failed attempts of messages held for a retry,
 * parked messages and the dead letters themselves.
 *
 * A local file cannot be this store: workers on other hosts would each dedup against their
 * own copy, so a platform's retry arriving at another gateway would be handled twice.
 *
 * Times: every method that compares or stores a time uses the store's clock: the injected
 * `now` when a test gives one, otherwise the database server's clock, so that hosts compare
 * times through one clock (docs/rabbitmq.md, "Why a shared store").
 *
 * The PostgreSQL implementation: `postgres/index.ts`.
 */
import type { MemberReport, CoordinateRequest, CoordinateResult, DeadLetter, DeadLetterFilter, DeadLetterListOptions, TopicInfo, TopicSettings } from '../brokers/broker.js';

/** What the owner of a partition holds unacked in memory, reported at each heartbeat for stats. */
export interface HeldReport {
  /** Deliveries received and not yet acked. */
  count: number;
  /** `publishedAt` of the oldest of them (epoch ms), 0 when none. */
  oldestPublishedAt: number;
}

export interface DedupEntry {
  id: string;
  partition: number;
  seq: number;
}

export type DedupOutcome =
  /** The id is new (or its earlier reservation went stale and was taken over): publish it, then `confirmIds`. */
  | { status: 'reserved' }
  /** The id was published and confirmed inside the window: a duplicate of that message. */
  | { status: 'duplicate'; partition: number; seq: number }
  /** Another publish of the id is under way (reserved, not yet confirmed nor stale): ask again soon. */
  | { status: 'in-progress' };

/** The persisted state of a message of a group that failed at least once, or was parked. */
export interface MessageState {
  id: string;
  attempts: number;
  firstFailedAt: number | null;
  /** Epoch ms before which it must not run again; 0 for none. */
  notBefore: number;
  /** The message is parked (failure policy park-key): its key waits. */
  parked: boolean;
  /** An operator purged the parked message: it must be acked and skipped. */
  skip: boolean;
}

export interface MessageFailure {
  id: string;
  attempts: number;
  failedAt: number;
  notBefore: number;
}

/** A dead letter as it is added: everything but its id. */
export type NewDeadLetter = Omit<DeadLetter, 'dlqId'>;

export interface StoredGroup {
  group: string;
  controlVersion: number;
  orderViolations: number;
  deferrals: number;
}

export interface StoredLease {
  partition: number;
  /** Null when nobody holds it or the lease expired. */
  owner: string | null;
  inFlight: number;
  held: HeldReport;
}

export interface GroupSnapshot extends StoredGroup {
  /** Live members (heartbeat not expired). */
  members: number;
  leases: StoredLease[];
  deadLetters: number;
  /** Distinct keys with a parked message. */
  parkedKeys: number;
  /** The last heartbeat of a member of the group (epoch ms, store's clock), or null when none ever came. */
  lastSeenAt: number | null;
  /** The store's time when the snapshot was read (to age lastSeenAt by the same clock). */
  now: number;
}

export interface CoordinationStore {
  /** The store's clock, epoch ms (the injected one, or the database server's). */
  now(): Promise<number>;

  /** Creates the topic, or checks that an existing one has the same partition count (BOTQUEUE_TOPIC_MISMATCH otherwise). */
  ensureTopic(name: string, settings: TopicSettings): Promise<TopicInfo>;
  getTopic(name: string): Promise<TopicInfo | undefined>;
  listTopics(): Promise<TopicInfo[]>;
  /**
   * Subscribes a group (idempotent). `created` is true for exactly one caller, the one that
   * created it; `backfillPending` while the group has not yet been given its copy of the
   * unclaimed backlog (set at creation, cleared by `finishBackfill`).
   */
  ensureGroup(topic: string, group: string): Promise<{ created: boolean; backfillPending: boolean }>;
  /** Whether the group still waits for its copy of the unclaimed backlog. */
  backfillPending(topic: string, group: string): Promise<boolean>;
  /** Of these ids, the ones already copied to the group by a backfill. */
  copiedIds(topic: string, group: string, ids: string[]): Promise<Set<string>>;
  /**
   * Announces a batch of copies before they are published. `clean` is false when the backfill
   * is carried on after a copier died mid-batch (see `unrecordedBatches`).
   */
  beginCopyBatch(topic: string, group: string, batch: string, clean: boolean): Promise<void>;
  /** Batches begun and never recorded: a copier died between their publish and their record. */
  unrecordedBatches(topic: string, group: string): Promise<number>;
  /**
   * Records ids copied to the group by one batch (after RabbitMQ confirmed the copies), and the
   * batch as recorded, in one transaction.
   */
  recordCopied(topic: string, group: string, ids: string[], batch: string): Promise<void>;
  /** Of these batches, the ones recorded and clean: their copies have no twin. */
  cleanBatches(topic: string, group: string, batches: string[]): Promise<Set<string>>;
  /**
   * Claims each id for the copy of it in `batch` (first claim wins, atomically). Returns the
   * ids whose claim belongs to another batch: those copies are twins to drop.
   */
  claimCopies(topic: string, group: string, claims: Array<{ id: string; batch: string }>): Promise<Set<string>>;
  /** The group has its copy of everything: clears the flag and forgets the copied ids. */
  finishBackfill(topic: string, group: string): Promise<void>;
  listGroups(topic: string): Promise<string[]>;
  /**
   * Deletes the group's rows in one transaction that locks the group, refuses live members
   * (BOTQUEUE_GROUP_HAS_MEMBERS) and runs `dropBrokerObjects` before deleting: a crash leaves
   * the rows, and calling again finishes. False when the topic or group does not exist.
   */
  deleteGroup(topic: string, group: string, dropBrokerObjects: (partitions: number) => Promise<void>): Promise<boolean>;
  /** As deleteGroup, for the topic with all its groups, dedup records and dead letters. */
  deleteTopic(topic: string, dropBrokerObjects: (partitions: number, groups: string[]) => Promise<void>): Promise<boolean>;

  /**
   * Heartbeat, lease renewal, release and acquisition, in one transaction, with exactly the
   * semantics of the SQLite backend's coordinate: a lease whose time passed is only taken over
   * by another member's acquire, never revoked by time alone; the fence grows on every change
   * of owner; `leaving` removes the member after releasing everything. `held` is stored on the
   * member's owned leases for stats.
   */
  coordinate(request: CoordinateRequest, held: Record<number, HeldReport>): Promise<CoordinateResult>;

  /**
   * The owner and fence of these partitions' leases now (a lease past its time keeps its owner
   * until another member takes it). A backend whose broker cannot fence a stale member itself
   * (Kafka offsets committed by botqueue) checks settlements against it.
   */
  currentFences(topic: string, group: string, partitions: number[]): Promise<Map<number, { owner: string | null; fence: number }>>;

  /** A member's report for stats (Broker.report): in flight on the leases it owns, counters added to the group's. */
  reportMember(report: MemberReport): Promise<void>;

  /**
   * Stores what the member holds unacked per partition, on the leases it still owns (others are
   * left alone): between heartbeats, so stats read a backlog at most one report period old.
   */
  reportHeld(topic: string, group: string, member: string, held: Record<number, HeldReport>): Promise<void>;

  /**
   * Reserves ids for publishing, in one transaction, in input order (ids are distinct within a
   * call). A reservation older than `staleAfterMs` whose publish never confirmed is taken over.
   */
  reserveIds(topic: string, entries: DedupEntry[], windowMs: number, staleAfterMs: number): Promise<DedupOutcome[]>;
  /**
   * The publish of these reserved ids was confirmed by the broker: later publishes are
   * duplicates until the window ends. `publishedSeqs` (in entry order), when the broker assigned
   * the seqs at publish (Kafka offsets), replace the seqs reserved with.
   */
  confirmIds(topic: string, entries: DedupEntry[], windowMs: number, publishedSeqs?: number[]): Promise<void>;
  /** The publish failed: forget the reservations (only those still holding these seqs). */
  releaseIds(topic: string, entries: DedupEntry[]): Promise<void>;

  getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined>;
  putEffect(topic: string, group: string, messageId: string, name: string, result: string | null, windowMs: number): Promise<void>;

  /** States of these messages of the group that have one (failed before, parked or skipped). */
  getMessageStates(topic: string, group: string, ids: string[]): Promise<Map<string, MessageState>>;
  /** Records failed attempts (a retry is scheduled); kept `windowMs`. */
  recordFailures(topic: string, group: string, failures: MessageFailure[], windowMs: number): Promise<void>;
  /** Forgets the states of these messages (they were acked or dead-lettered without parking). */
  clearMessageStates(topic: string, group: string, ids: string[]): Promise<void>;

  /**
   * Adds dead letters in one transaction and returns their ids in input order. A parked one
   * (`parked: true`) also marks its message state parked (attempts kept).
   */
  addDeadLetters(letters: NewDeadLetter[]): Promise<number[]>;
  /** Matching dead letters with `dlqId > afterDlqId`, by dlqId, at most `limit` (default 100). */
  listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]>;
  /**
   * Deletes these dead letters in one transaction. For a parked one, its message state becomes
   * unparked with attempts reset (`redrive`) or `skip` (`purge`), and its group's control
   * version grows, so the worker holding the message learns of it at its next heartbeat.
   * Returns the dead letters that were still there (others were taken by a concurrent call).
   */
  removeDeadLetters(dlqIds: number[], action: 'redrive' | 'purge'): Promise<DeadLetter[]>;
  /** Matching dead letters' ids (for redrive and purge by filter), by dlqId, after `afterDlqId`, at most `limit`. */
  matchDeadLetterIds(filter: DeadLetterFilter, afterDlqId: number, limit: number): Promise<number[]>;

  /** Groups of a topic with counts, leases (owners only while their lease is live) and members, in one snapshot. */
  groupSnapshots(topic: string): Promise<GroupSnapshot[]>;

  /**
   * Runs `work` while holding a lock named `name` that every process of the deployment sees
   * (one holder at a time; released when work ends or the holder's connection dies).
   */
  withLock<T>(name: string, work: () => Promise<T>): Promise<T>;
  /** `withLock` when the lock is free now; `ran: false` at once when another holder has it. */
  tryWithLock<T>(name: string, work: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;

  /** Deletes expired dedup records, effects and message states. */
  housekeeping(): Promise<void>;

  close(): Promise<void>;
}
