import { BotqueueError, ErrorCodes } from '../core/errors.js';
import type { Broker } from '../brokers/broker.js';
import { assignedPartitions } from './assignment.js';
import type { Instrumentation } from './events.js';
import type { WorkerOptions } from './options.js';
import type { PartitionReader, PartitionRun } from './partition-reader.js';

/** Heartbeat while the group is settling (members changed, partitions still to take or give back). */
const FAST_TICK_MS = 100;

/**
 * The worker's place in its group: heartbeats that renew its leases, the balanced share of
 * partitions it should own, and taking, giving back and losing them. After each heartbeat it
 * reports what the group's stats show of it (in flight, order violations, deferrals).
 */
export class Membership {
  private partitions = 0;
  private members: string[] = [];
  private controlVersion = -1;
  private unreportedViolations = 0;
  private unreportedDeferrals = 0;
  /** The last report that reached the broker said nothing is in flight and counted nothing. */
  private reportedIdle = false;
  private violationsSeen = 0;
  private tickTimer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private tickAgain = false;
  private stopped = false;

  constructor(
    private readonly broker: Broker,
    private readonly topic: string,
    private readonly group: string,
    private readonly member: string,
    private readonly options: Readonly<WorkerOptions>,
    private readonly reader: PartitionReader,
    private readonly instrumentation: Instrumentation,
  ) {}

  /** Per-key order violations this worker has seen. */
  get orderViolations(): number {
    return this.violationsSeen;
  }

  /** Joins the group of a topic of `partitions` partitions: the first heartbeat. */
  join(partitions: number): Promise<void> {
    this.partitions = partitions;
    return this.tick();
  }

  /** Counts a violation; the next heartbeat adds it to the group's stats. */
  recordOrderViolation(partition: number, seq: number): void {
    this.unreportedViolations++;
    this.violationsSeen++;
    this.instrumentation.emitIfListened('order-violation', () => ({ topic: this.topic, group: this.group, partition, seq }));
  }

  /** One heartbeat: renew, release drained revoked partitions, take free assigned ones. */
  tick(): Promise<void> {
    if (this.ticking !== undefined) {
      this.tickAgain = true;
      return this.ticking;
    }
    this.ticking = this.coordinate()
      .catch((error: unknown) => this.instrumentation.reportError(error))
      .finally(() => {
        this.ticking = undefined;
        if (this.tickAgain && !this.stopped) {
          this.tickAgain = false;
          this.tick().catch((error: unknown) => this.instrumentation.reportError(error));
        }
      });
    return this.ticking;
  }

  /** A settlement was refused with the run's fence: another member owns the partition now. */
  fenced(run: PartitionRun): void {
    this.lose(run);
    void this.tick();
  }

  /** No more heartbeats: the worker is closing. */
  stop(): void {
    this.stopped = true;
    if (this.tickTimer !== undefined) clearTimeout(this.tickTimer);
  }

  /** Resolves once a heartbeat in flight is over. */
  async idle(): Promise<void> {
    await this.ticking;
  }

  /** Gives every partition back and leaves the group. On failure the leases expire on their own; nothing is lost. */
  async leave(): Promise<void> {
    // The last counters first, while the member still owns its partitions.
    await this.report({}).catch((error: unknown) => this.instrumentation.reportError(error));
    try {
      await this.broker.coordinate({
        topic: this.topic,
        group: this.group,
        member: this.member,
        leaseMs: this.options.leaseMs,
        acquire: [],
        release: [...this.reader.runs.keys()],
        leaving: true,
      });
    } catch (error) {
      this.instrumentation.reportError(error);
    }
  }

  /**
   * Reports in flight per owned partition and the counters gathered since the last report
   * (kept for the next one if this fails). Stats only: separate from the lease protocol.
   */
  private async report(inFlight: Record<number, number>): Promise<void> {
    const orderViolations = this.unreportedViolations;
    const deferrals = this.unreportedDeferrals;
    // An idle member's report changes nothing once made (backends zero in-flight counts on every
    // change of owner): one write per heartbeat saved, e.g. a SQLite transaction.
    const idle = orderViolations === 0 && deferrals === 0 && Object.values(inFlight).every((n) => n === 0);
    if (idle && this.reportedIdle) return;
    this.unreportedViolations = 0;
    this.unreportedDeferrals = 0;
    try {
      await this.broker.report({ topic: this.topic, group: this.group, member: this.member, inFlight, orderViolations, deferrals });
      this.reportedIdle = idle;
    } catch (error) {
      this.reportedIdle = false;
      this.unreportedViolations += orderViolations;
      this.unreportedDeferrals += deferrals;
      throw error;
    }
  }

  /** Counts a RetryLater deferral; the next report adds it to the group's stats. */
  recordDeferral(): void {
    this.unreportedDeferrals++;
  }

  private get heartbeatMs(): number {
    return Math.max(50, Math.floor(this.options.leaseMs / 3));
  }

  private scheduleTick(delayMs: number): void {
    if (this.stopped) return;
    if (this.tickTimer !== undefined) clearTimeout(this.tickTimer);
    this.tickTimer = setTimeout(() => {
      this.tickTimer = undefined;
      this.tick().catch((error: unknown) => this.instrumentation.reportError(error));
    }, delayMs);
  }

  private async coordinate(): Promise<void> {
    if (this.stopped) return;
    const runs = this.reader.runs;
    const desired = new Set(assignedPartitions(this.members, this.member, this.partitions));
    const release: number[] = [];
    for (const run of runs.values()) {
      if (!desired.has(run.partition) && !run.revoking) this.revoke(run);
      if (run.revoking && run.inFlight === 0) release.push(run.partition);
    }
    // The first call only announces this member, so that workers starting together do not all grab every partition.
    const joining = this.members.length === 0;
    const acquire = joining ? [] : [...desired].filter((p) => !runs.has(p));
    let result;
    // The store counts the lease from when it handles the call, which is after this moment.
    const validUntil = performance.now() + this.options.leaseMs;
    try {
      result = await this.broker.coordinate({ topic: this.topic, group: this.group, member: this.member, leaseMs: this.options.leaseMs, acquire, release });
    } catch (error) {
      this.scheduleTick(Math.min(1_000, this.heartbeatMs));
      throw error;
    }
    if (this.stopped) return;
    for (const p of release) {
      const run = runs.get(p);
      if (run !== undefined && !result.owned.has(p)) {
        run.lost = true;
        this.reader.remove(run);
        this.instrumentation.emitIfListened('released', () => ({ topic: this.topic, group: this.group, partition: p }));
      }
    }
    for (const run of [...runs.values()]) {
      const fence = result.owned.get(run.partition);
      if (fence !== run.lease.fence) this.lose(run);
      else run.leaseValidUntil = validUntil;
    }
    for (const [partition, fence] of result.owned) {
      if (!runs.has(partition)) this.adopt(partition, fence, validUntil);
    }
    const membersChanged = result.members.join('\n') !== this.members.join('\n');
    this.members = result.members;
    if (result.controlVersion !== this.controlVersion) {
      if (this.controlVersion !== -1) this.reader.refreshParkedKeys();
      this.controlVersion = result.controlVersion;
    }
    const nowDesired = assignedPartitions(this.members, this.member, this.partitions);
    const unsettled = membersChanged || nowDesired.some((p) => !runs.has(p)) || [...runs.values()].some((r) => r.revoking);
    this.scheduleTick(joining ? 0 : unsettled ? FAST_TICK_MS : this.heartbeatMs);
    this.reader.pumpFetch();
    const inFlight: Record<number, number> = {};
    for (const run of runs.values()) inFlight[run.partition] = run.inFlight;
    // The next heartbeat is already scheduled; a failed report keeps its counters for the next one.
    await this.report(inFlight);
  }

  private adopt(partition: number, fence: number, leaseValidUntil: number): void {
    this.reader.add(partition, this.member, fence, leaseValidUntil);
    this.instrumentation.emitIfListened('assigned', () => ({ topic: this.topic, group: this.group, partition, fence }));
  }

  /** Stops reading a partition another member should own; it is released once its handlers finish. */
  private revoke(run: PartitionRun): void {
    run.revoking = true;
    this.reader.dropBuffered(run);
  }

  /** The lease is gone (another member owns the partition): forget it; running handlers' settlements will be refused. */
  private lose(run: PartitionRun): void {
    if (run.lost) return;
    run.lost = true;
    this.reader.remove(run);
    this.reader.dropBuffered(run);
    run.abort.abort(new BotqueueError(ErrorCodes.LEASE_LOST, `lease on partition ${run.partition} of ${this.topic} lost`));
    this.instrumentation.emitIfListened('lease-lost', () => ({ topic: this.topic, group: this.group, partition: run.partition }));
  }
}
