import type { KeyedScheduler } from '../core/keyed-scheduler.js';
import type { Broker, Delivery, Lease, StagedPublish } from '../brokers/broker.js';
import type { Instrumentation } from './events.js';
import { OrderCheck } from './order-check.js';
import type { WorkerOptions } from './options.js';

/** One owned partition: what has been read from it, and what of it is in memory. */
export interface PartitionRun {
  partition: number;
  lease: Lease;
  /** Highest seq read by the forward scan. */
  fetchedUpTo: number;
  /** While set, the scan re-reads from here (after a key's overflow) until it reaches `fetchedUpTo`. */
  rewindFrom: number | null;
  /**
   * Keys the running re-read serves. Every other row it passes is in memory or belongs to a key
   * with a mark, so once all of these are full again (marked anew) the re-read can stop early.
   */
  rewindKeys: Set<string>;
  /** Overflow marks released by draining keys; applied when no fetch is in flight. */
  pendingRewind: { from: number; keys: string[] } | null;
  /** Seqs held in memory (buffered, running or being settled). */
  inMemory: Set<number>;
  /** Seqs settled while a fetch was in flight: that fetch may still return them. */
  settledDuringFetch: Set<number> | null;
  /** Keys whose later messages were not kept in memory, with the first seq not kept. */
  overflowed: Map<string, number>;
  /** Keys whose head waits (retry, deferral, delay, park): they keep one message in memory. */
  waiting: Set<string>;
  fetching: boolean;
  caughtUp: boolean;
  revoking: boolean;
  lost: boolean;
  inFlight: number;
  order: OrderCheck;
  abort: AbortController;
  /**
   * Until when (performance.now()) the lease is surely ours: the send time of the coordinate call
   * that granted or renewed it, plus leaseMs. Past it another member may own the partition even
   * though no heartbeat has said so yet (a process paused by GC, SIGSTOP or a starved CPU).
   */
  leaseValidUntil: number;
}

/** A message in memory, from its fetch until it leaves this worker's hands. */
export interface Item {
  run: PartitionRun;
  delivery: Delivery;
  /** Failed attempts so far, persisted. */
  attempts: number;
  /**
   * RetryLater deferrals of this message on this worker. Kept in memory only (the broker's
   * retry settlement has no field for it): the count restarts if the message is read again,
   * e.g. after its partition moves to another worker.
   */
  deferrals: number;
  parked: boolean;
  /** When the current attempt's handler started (performance.now()). */
  started: number;
  /** The current attempt's ctx.publish/ctx.reply messages, stored with its ack (publishWithAck backends). */
  staged?: StagedPublish[] | undefined;
}

/**
 * Reads the owned partitions into the keyed scheduler within the prefetch: the forward scan,
 * the per-key share (a key over its share is marked and read again once it drains), and the
 * bookkeeping of what is in memory.
 */
export class PartitionReader {
  private readonly partitionRuns = new Map<number, PartitionRun>();
  /** Room promised to fetches in flight, so that concurrent fetches cannot overfill the prefetch. */
  private reservedRoom = 0;
  private fetchCursor = 0;
  private pumpQueued = false;
  private stopped = false;

  constructor(
    private readonly broker: Broker,
    private readonly topic: string,
    private readonly group: string,
    private readonly options: Readonly<WorkerOptions>,
    private readonly scheduler: KeyedScheduler<Item>,
    private readonly instrumentation: Instrumentation,
  ) {}

  /** The partitions owned now, by number. */
  get runs(): ReadonlyMap<number, PartitionRun> {
    return this.partitionRuns;
  }

  /** Whether `run` is still this worker's current run of its partition. */
  owns(run: PartitionRun): boolean {
    return !run.lost && this.partitionRuns.get(run.partition) === run;
  }

  /** Starts reading a partition this worker now owns under `fence`. */
  add(partition: number, member: string, fence: number, leaseValidUntil: number): PartitionRun {
    const run: PartitionRun = {
      partition,
      lease: { topic: this.topic, group: this.group, partition, member, fence },
      fetchedUpTo: 0,
      rewindFrom: null,
      rewindKeys: new Set(),
      pendingRewind: null,
      inMemory: new Set(),
      settledDuringFetch: null,
      overflowed: new Map(),
      waiting: new Set(),
      fetching: false,
      caughtUp: false,
      revoking: false,
      lost: false,
      inFlight: 0,
      order: new OrderCheck(),
      abort: new AbortController(),
      leaseValidUntil,
    };
    this.partitionRuns.set(partition, run);
    return run;
  }

  /** Stops reading `run`'s partition (a newer run of the same partition is left alone). */
  remove(run: PartitionRun): void {
    if (this.partitionRuns.get(run.partition) === run) this.partitionRuns.delete(run.partition);
  }

  /** No more fetches: the worker is closing. */
  stop(): void {
    this.stopped = true;
  }

  clear(): void {
    this.partitionRuns.clear();
  }

  /** Drops the run's messages that are waiting (not running) from memory. */
  dropBuffered(run: PartitionRun): void {
    for (const item of this.scheduler.drop((candidate) => candidate.run === run)) run.inMemory.delete(item.delivery.seq);
  }

  /** An operator redrove or skipped a parked message: read parked keys again from the broker. */
  refreshParkedKeys(): void {
    for (const run of this.partitionRuns.values()) {
      const parked = this.scheduler.drop((item) => item.run === run && item.parked);
      if (parked.length === 0) continue;
      // drop() took each parked key's whole queue: read those keys again from the parked message on.
      let from = Number.POSITIVE_INFINITY;
      const keys = new Set<string>();
      for (const item of parked) {
        run.inMemory.delete(item.delivery.seq);
        from = Math.min(from, item.delivery.seq);
        if (item.delivery.key !== null) keys.add(item.delivery.key);
      }
      for (const key of keys) {
        run.waiting.delete(key);
        this.scheduler.unpark(key);
      }
      this.requestRewind(run, from - 1, [...keys]);
    }
  }

  /** The broker says new messages may be there (partition, or -1 when unknown). */
  onPublished(partition: number): void {
    if (partition === -1) {
      for (const run of this.partitionRuns.values()) run.caughtUp = false;
    } else {
      const run = this.partitionRuns.get(partition);
      if (run !== undefined) run.caughtUp = false;
    }
    this.pumpFetch();
  }

  /** A key's head waits: keep only it in memory so a waiting key cannot fill the prefetch. */
  holdKey(run: PartitionRun, key: string | null, schedulerKey: string): void {
    if (key === null) return;
    run.waiting.add(key);
    const trimmed = this.scheduler.trimKey(schedulerKey, 1);
    if (trimmed.length === 0) return;
    const first = trimmed[0]!.delivery.seq;
    for (const dropped of trimmed) run.inMemory.delete(dropped.delivery.seq);
    const mark = run.overflowed.get(key);
    run.overflowed.set(key, Math.min(mark ?? first, first));
  }

  /** The message is no longer ours (lease lost, or already settled elsewhere): only its in-memory mark goes. */
  discard(run: PartitionRun, delivery: Delivery): void {
    run.inMemory.delete(delivery.seq);
  }

  /** The message left this worker's hands: free its slot and, if its key had overflowed, read the key again. */
  forget(run: PartitionRun, delivery: Delivery): void {
    run.inMemory.delete(delivery.seq);
    run.settledDuringFetch?.add(delivery.seq);
    const key = delivery.key;
    if (key !== null) {
      const mark = run.overflowed.get(key);
      // The running head still counts in keyLength; refill once the key is down to half its share.
      if (mark !== undefined && this.scheduler.keyLength(key) - 1 <= this.options.perKeyBuffer / 2) {
        this.requestRewind(run, mark - 1, [key]);
      }
    }
    if (!this.pumpQueued) {
      // Once per turn, however many messages were settled in it; after the turn's microtasks,
      // so that the scheduler has freed the settled messages' room (it does so when the run's
      // promise resolves, after this call): with a microtask the pump saw a full prefetch and,
      // with many distinct keys, nothing fetched again until the next heartbeat.
      this.pumpQueued = true;
      setImmediate(this.pumpFetch);
    }
  }

  /** Starts fetches for the partitions that may have more, within the prefetch's free room. */
  readonly pumpFetch = (): void => {
    this.pumpQueued = false;
    if (this.stopped || this.options.prefetch - this.scheduler.size - this.reservedRoom <= 0) return;
    const runs = [...this.partitionRuns.values()];
    // Start where the last pump stopped, so that with a full buffer no partition starves.
    for (let i = 0; i < runs.length; i++) {
      const run = runs[(this.fetchCursor + i) % runs.length]!;
      if (run.fetching || run.revoking || run.lost) continue;
      if (run.caughtUp && run.pendingRewind === null) continue;
      const room = this.options.prefetch - this.scheduler.size - this.reservedRoom;
      if (room <= 0) {
        this.fetchCursor = (this.fetchCursor + i) % runs.length;
        return;
      }
      void this.fetchPartition(run, Math.min(room, this.options.fetchBatch));
    }
  };

  private requestRewind(run: PartitionRun, from: number, keys: string[]): void {
    if (run.pendingRewind === null) run.pendingRewind = { from, keys };
    else {
      run.pendingRewind.from = Math.min(run.pendingRewind.from, from);
      run.pendingRewind.keys.push(...keys);
    }
    run.caughtUp = false;
  }

  private async fetchPartition(run: PartitionRun, limit: number): Promise<void> {
    run.fetching = true;
    if (run.pendingRewind !== null) {
      // Applied only here, with no fetch in flight, so no older read can slip a key's later message past its mark.
      for (const key of run.pendingRewind.keys) {
        run.overflowed.delete(key);
        run.rewindKeys.add(key);
      }
      run.rewindFrom = Math.min(run.rewindFrom ?? Number.POSITIVE_INFINITY, run.pendingRewind.from);
      run.pendingRewind = null;
    }
    const rewinding = run.rewindFrom !== null;
    // A re-read serves a few drained keys: read about what they can take, so it stays cheap.
    const take = rewinding ? Math.min(limit, Math.max(this.options.perKeyBuffer, 2 * this.rewindRoom(run))) : limit;
    const after = run.rewindFrom ?? run.fetchedUpTo;
    this.reservedRoom += take;
    run.settledDuringFetch = new Set();
    let deliveries: Delivery[];
    try {
      deliveries = await this.broker.fetch(this.topic, this.group, run.partition, after, take);
    } catch (error) {
      this.instrumentation.reportError(error);
      run.settledDuringFetch = null;
      run.fetching = false;
      this.reservedRoom -= take;
      setTimeout(this.pumpFetch, 500).unref();
      return;
    }
    const recentlySettled = run.settledDuringFetch;
    run.settledDuringFetch = null;
    run.fetching = false;
    this.reservedRoom -= take;
    if (run.lost || run.revoking || this.stopped) return;
    const now = Date.now();
    let last = after;
    for (const delivery of deliveries) {
      last = delivery.seq;
      if (run.inMemory.has(delivery.seq) || recentlySettled.has(delivery.seq)) continue;
      this.accept(run, delivery, now);
    }
    if (rewinding) {
      if (deliveries.length < take || last >= run.fetchedUpTo || run.rewindKeys.size === 0) {
        run.rewindFrom = null;
        run.rewindKeys.clear();
        run.fetchedUpTo = Math.max(run.fetchedUpTo, last);
        run.caughtUp = deliveries.length < take && run.pendingRewind === null;
      } else {
        run.rewindFrom = last;
      }
    } else {
      run.fetchedUpTo = Math.max(run.fetchedUpTo, last);
      run.caughtUp = deliveries.length < take && run.pendingRewind === null;
    }
    this.pumpFetch();
  }

  /** How many messages the keys a re-read serves can still take. */
  private rewindRoom(run: PartitionRun): number {
    let room = 0;
    for (const key of run.rewindKeys) room += Math.max(0, this.options.perKeyBuffer - this.scheduler.keyLength(key));
    return room;
  }

  /** Puts a fetched message in memory, unless its key already holds its share. */
  private accept(run: PartitionRun, delivery: Delivery, now: number): void {
    const key = delivery.key;
    const schedulerKey = key ?? `\u0000${run.partition}:${delivery.seq}`;
    if (key !== null) {
      const mark = run.overflowed.get(key);
      if (mark !== undefined && delivery.seq >= mark) return;
      const share = run.waiting.has(key) ? 1 : this.options.perKeyBuffer;
      if (this.scheduler.keyLength(key) >= share) {
        run.overflowed.set(key, Math.min(mark ?? delivery.seq, delivery.seq));
        run.rewindKeys.delete(key);
        return;
      }
      if (delivery.parked || delivery.notBefore > now) run.waiting.add(key);
    }
    run.inMemory.add(delivery.seq);
    const item: Item = { run, delivery, attempts: delivery.attempts, deferrals: 0, parked: delivery.parked, started: 0 };
    this.scheduler.push(schedulerKey, item, delivery.notBefore);
  }
}
