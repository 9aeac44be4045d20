import { backoffDelay } from '../core/backoff.js';
import { ErrorCodes, describeError, type ErrorInfo } from '../core/errors.js';
import type { RunOutcome } from '../core/keyed-scheduler.js';
import { readDeferral, type Deferral } from '../core/retry-later.js';
import type { Broker, SettleOutcome, Settlement } from '../brokers/broker.js';
import type { Instrumentation } from './events.js';
import type { Membership } from './membership.js';
import type { WorkerOptions } from './options.js';
import type { Item, PartitionReader, PartitionRun } from './partition-reader.js';

export const DONE: RunOutcome = { kind: 'done' };
export const PARK: RunOutcome = { kind: 'park' };
/** When the broker failed a settlement, the message is tried again this much later. */
const BROKER_FAILURE_RETRY_MS = 1_000;

/**
 * A settlement waiting for its turn's batch. The ack of a handled message carries its item: the
 * flush finishes it there and resolves the run's outcome, with no promise layer in between.
 */
type QueuedSettlement =
  | { settlement: Settlement; item: null; resolve: (outcome: SettleOutcome) => void; reject: (error: unknown) => void }
  | { settlement: Settlement; item: Item; resolve: (outcome: RunOutcome) => void; reject: (error: unknown) => void };

/**
 * Settles what handlers did, with each lease's fence: acks, and for a thrown error the failure
 * policy (retry after backoff, a RetryLater's deferral, dead-letter or park). Settlements made
 * in one turn go to the broker in one call. A refused fence means the partition is lost.
 */
export class Settler {
  private settleQueue: QueuedSettlement[] = [];
  private deferralCount = 0;

  constructor(
    private readonly broker: Broker,
    private readonly topic: string,
    private readonly group: string,
    private readonly options: Readonly<WorkerOptions>,
    private readonly reader: PartitionReader,
    private readonly membership: Membership,
    private readonly instrumentation: Instrumentation,
    /** Told when an applied ack stored staged publishes (the client's `published` event). */
    private readonly onStagedStored?: (topic: string, messages: number, durationMs: number) => void,
  ) {}

  /** RetryLater deferrals this worker has settled. */
  get deferrals(): number {
    return this.deferralCount;
  }

  /** Acks a handled message; the flush finishes it (see `finishAck`) and resolves its outcome. */
  succeed(item: Item): Promise<RunOutcome> {
    const staged = item.staged;
    const settlement: Settlement =
      staged === undefined || staged.length === 0 ? { kind: 'ack', lease: item.run.lease, seq: item.delivery.seq } : { kind: 'ack', lease: item.run.lease, seq: item.delivery.seq, publish: staged };
    return new Promise<RunOutcome>((resolve, reject) => this.enqueue({ settlement, item, resolve, reject }));
  }

  /** The handler threw `thrown`: apply the failure policy. `run.inFlight` drops once the settlement is over. */
  async fail(item: Item, thrown: unknown, schedulerKey: string): Promise<RunOutcome> {
    try {
      // ctx.once refused to start a step because the lease may have passed (a late heartbeat,
      // e.g. a stalled store): not the handler's failure, so no attempt is spent and nothing is
      // settled. The message runs again here once the lease is renewed, or at its new owner.
      if (isLeaseLost(thrown)) return { kind: 'retry', at: Date.now() + BROKER_FAILURE_RETRY_MS };
      const deferral = readDeferral(thrown);
      if (deferral === undefined) return await this.failAttempt(item, thrown, schedulerKey);
      if (item.deferrals < this.options.maxDeferrals) return await this.defer(item, deferral, thrown, schedulerKey);
      return await this.exhaust(item, item.attempts + 1, deferralsExhausted(thrown, item.deferrals, this.options.maxDeferrals), schedulerKey);
    } finally {
      this.leave(item.run);
    }
  }

  private leave(run: PartitionRun): void {
    run.inFlight--;
    if (run.revoking && run.inFlight === 0) void this.membership.tick();
  }

  /** An ack's result is in: forget the message and report it; the key goes on. Leaves the run in any case. */
  private finishAck(entry: QueuedSettlement & { item: Item }, outcome: SettleOutcome): void {
    const item = entry.item;
    const { run, delivery } = item;
    try {
      this.afterSettle(outcome, item);
      if (outcome === 'ok' && item.staged !== undefined && item.staged.length > 0 && this.onStagedStored !== undefined) {
        const durationMs = performance.now() - item.started;
        for (const staged of item.staged) this.onStagedStored(staged.topic, staged.messages.length, durationMs);
      }
      this.reader.forget(run, delivery);
      if (this.instrumentation.listens('completed')) {
        const durationMs = performance.now() - item.started;
        this.instrumentation.emit('completed', { topic: this.topic, group: this.group, partition: run.partition, seq: delivery.seq, id: delivery.id, attempt: item.attempts + 1, durationMs });
      }
      entry.resolve(DONE);
    } catch (error) {
      entry.reject(error);
    } finally {
      this.leave(run);
    }
  }

  /** The broker failed the ack: the message is tried again later. */
  private failAck(entry: QueuedSettlement & { item: Item }, error: unknown): void {
    try {
      this.instrumentation.reportError(error);
      entry.resolve({ kind: 'retry', at: Date.now() + BROKER_FAILURE_RETRY_MS });
    } catch (reportFailure) {
      entry.reject(reportFailure);
    } finally {
      this.leave(entry.item.run);
    }
  }

  /** An ordinary failure: retry after backoff, or the failure policy once attempts are exhausted. */
  private async failAttempt(item: Item, thrown: unknown, schedulerKey: string): Promise<RunOutcome> {
    const { run, delivery } = item;
    const attempt = item.attempts + 1;
    const error = describeError(thrown);
    if (hasPermanentCode(thrown) || attempt >= this.options.maxAttempts) return this.exhaust(item, attempt, error, schedulerKey);
    const now = Date.now();
    const delayMs = backoffDelay(attempt, { baseMs: this.options.backoffBaseMs, capMs: this.options.backoffCapMs });
    const notBefore = now + delayMs;
    const settled = await this.settle({ kind: 'retry', lease: run.lease, seq: delivery.seq, attempts: attempt, notBefore, error, failedAt: now }, item);
    if (settled === null) return { kind: 'retry', at: Date.now() + BROKER_FAILURE_RETRY_MS };
    if (settled === 'gone') return DONE;
    item.attempts = attempt;
    this.instrumentation.emitIfListened('retried', () => ({ topic: this.topic, group: this.group, partition: run.partition, seq: delivery.seq, id: delivery.id, attempt, delayMs, error }));
    this.reader.holdKey(run, delivery.key, schedulerKey);
    return { kind: 'retry', at: notBefore };
  }

  /**
   * A RetryLater: the broker's retry settlement with the attempts unchanged, so every backend
   * keeps it (durably, with its key waiting) and no attempt is spent. The deferral count is the
   * memory item's: it restarts if the message is read again (e.g. by another worker).
   */
  private async defer(item: Item, deferral: Deferral, thrown: unknown, schedulerKey: string): Promise<RunOutcome> {
    const { run, delivery } = item;
    const now = Date.now();
    const notBefore = now + deferral.delayMs;
    const settled = await this.settle(
      { kind: 'retry', lease: run.lease, seq: delivery.seq, attempts: item.attempts, notBefore, error: describeError(thrown), failedAt: now },
      item,
    );
    // Not stored: run it again in memory, still no sooner than it asked.
    if (settled === null) return { kind: 'retry', at: Math.max(notBefore, Date.now() + BROKER_FAILURE_RETRY_MS) };
    if (settled === 'gone') return DONE;
    const deferrals = ++item.deferrals;
    this.deferralCount++;
    this.membership.recordDeferral();
    this.instrumentation.emitIfListened('deferred', () => ({
      topic: this.topic,
      group: this.group,
      partition: run.partition,
      seq: delivery.seq,
      id: delivery.id,
      delayMs: deferral.delayMs,
      deferrals,
      reason: deferral.reason,
    }));
    this.reader.holdKey(run, delivery.key, schedulerKey);
    return { kind: 'retry', at: notBefore };
  }

  /** No attempt (or deferral) left, or a PermanentError: the topic's failure policy decides. */
  private async exhaust(item: Item, attempt: number, error: ErrorInfo, schedulerKey: string): Promise<RunOutcome> {
    const { run, delivery } = item;
    const park = this.options.onExhausted === 'park-key';
    const settled = await this.settle({ kind: 'dead', lease: run.lease, seq: delivery.seq, attempts: attempt, error, failedAt: Date.now(), park }, item);
    if (settled === null) return { kind: 'retry', at: Date.now() + BROKER_FAILURE_RETRY_MS };
    if (settled === 'gone') return DONE;
    this.instrumentation.emitIfListened('dead-lettered', () => ({
      topic: this.topic,
      group: this.group,
      partition: run.partition,
      seq: delivery.seq,
      id: delivery.id,
      attempts: attempt,
      parked: park,
      error,
    }));
    if (park) {
      item.parked = true;
      this.reader.holdKey(run, delivery.key, schedulerKey);
      return PARK;
    }
    this.reader.forget(run, delivery);
    return DONE;
  }

  /**
   * Settles with the lease's fence. Returns 'ok', 'gone' when the message is no longer ours
   * (lease lost or already settled), or null when the broker failed (the item is tried again).
   */
  private async settle(settlement: Settlement, item: Item): Promise<'ok' | 'gone' | null> {
    let outcome;
    try {
      outcome = await this.settleBatched(settlement);
    } catch (error) {
      this.instrumentation.reportError(error);
      return null;
    }
    return this.afterSettle(outcome, item);
  }

  /** 'gone' when the message is no longer ours (lease lost or already settled): forget it. */
  private afterSettle(outcome: SettleOutcome, item: Item): 'ok' | 'gone' {
    if (outcome === 'ok') return 'ok';
    const run = item.run;
    this.reader.discard(run, item.delivery);
    if (outcome === 'fenced') this.membership.fenced(run);
    return 'gone';
  }

  /**
   * Settlements made in the same turn go to the broker in one call: one write for all of them
   * (a backend checks each lease once per run of settlements).
   */
  private settleBatched(settlement: Settlement): Promise<SettleOutcome> {
    return new Promise<SettleOutcome>((resolve, reject) => this.enqueue({ settlement, item: null, resolve, reject }));
  }

  private enqueue(entry: QueuedSettlement): void {
    this.settleQueue.push(entry);
    if (this.settleQueue.length === 1) queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    const batch = this.settleQueue;
    this.settleQueue = [];
    this.broker.settle(batch.map((entry) => entry.settlement)).then(
      (outcomes) => {
        for (let i = 0; i < batch.length; i++) {
          const entry = batch[i]!;
          const outcome = outcomes[i] ?? 'missing';
          if (entry.item === null) entry.resolve(outcome);
          else this.finishAck(entry, outcome);
        }
      },
      (error: unknown) => {
        for (const entry of batch) {
          if (entry.item === null) entry.reject(error);
          else this.failAck(entry, error);
        }
      },
    );
  };
}

/** A PermanentError, recognised by its code: a handler may import it from another copy of botqueue. */
function hasPermanentCode(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  // A platform's refusal of an outbound message (a 4xx) is permanent too, and keeps its own code in the dead letter.
  return code === ErrorCodes.PERMANENT_FAILURE || code === ErrorCodes.PLATFORM_REJECTED;
}

/** The error a dead letter keeps when a message ran out of deferrals: the last RetryLater, saying so. */
function deferralsExhausted(thrown: unknown, deferrals: number, maxDeferrals: number): ErrorInfo {
  const info = describeError(thrown);
  return { ...info, message: `deferred ${deferrals} times (maxDeferrals ${maxDeferrals}) and asked again: ${info.message}` };
}

function isLeaseLost(thrown: unknown): boolean {
  return typeof thrown === 'object' && thrown !== null && (thrown as { code?: unknown }).code === ErrorCodes.LEASE_LOST;
}
