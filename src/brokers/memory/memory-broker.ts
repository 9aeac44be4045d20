/**
 * The in-memory reference backend: the broker port's semantics with nothing in the way, for
 * tests and single-process experiments. Not durable, one process only.
 *
 * Every method does its whole work synchronously when called, before its promise settles, so
 * each call is atomic (as one transaction would be) and callers never see a half-applied
 * write. Results are copies: nothing a caller holds aliases the broker's state.
 */
import { resolveIdleAfterMs, type StatsOptions } from '../idle.js';
import { BrokerEventEmitter } from '../events.js';
import type {
  Broker,
  BrokerCapabilities,
  CoordinateRequest,
  CoordinateResult,
  MemberReport,
  DeadLetter,
  DeadLetterFilter,
  DeadLetterListOptions,
  Delivery,
  Settlement,
  SettleOutcome,
  TopicInfo,
  TopicSettings,
  TopicStats,
} from '../broker.js';
import type { PreparedMessage, PublishReceipt } from '../../core/envelope.js';
import { checkName } from '../../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { validateOptions } from '../../core/options.js';
import { checkCoordinate, checkFilter, checkListOptions, checkPartition } from './checks.js';
import { coordinateGroup, reportMember } from './coordinate.js';
import { DeadLetterStore } from './dead-letters.js';
import { publishMessages } from './publish.js';
import { purgeDeadLetters, redriveDeadLetters } from './redrive.js';
import { settleOne } from './settle.js';
import { createGroup, createTopic, effectKey, removePending, type PendingEntry, type TopicState } from './state.js';
import { compare, topicStats } from './stats.js';
import { Watchers } from '../watchers.js';

export interface MemoryBrokerOptions {
  /** The clock (epoch ms), so tests can drive time. Default `Date.now`. */
  now?: () => number;
}

export class MemoryBroker implements Broker {
  readonly capabilities: BrokerCapabilities = Object.freeze({ assignsSeq: true, multiProcess: false, durable: false, publishWithAck: true });
  /** Nothing runs in the background in memory: present for the port, never emitted. */
  readonly events = new BrokerEventEmitter();

  private readonly now: () => number;
  private readonly topics = new Map<string, TopicState>();
  private readonly deadLetters = new DeadLetterStore();
  private readonly watchers = new Watchers();
  private lastSeq = 0;
  private closed = false;
  private readonly nextSeq = (): number => (this.lastSeq += 1);

  constructor(options: MemoryBrokerOptions = {}) {
    const checked = validateOptions<Required<MemoryBrokerOptions>>('MemoryBroker', { now: { type: 'function' } }, options, { now: Date.now });
    this.now = checked.now;
  }

  ensureTopic(topic: string, settings: TopicSettings): Promise<TopicInfo> {
    return this.run(() => {
      checkName('topic', topic);
      // The settings were checked by the client (core/limits.ts).
      const existing = this.topics.get(topic);
      if (existing !== undefined) {
        if (existing.info.partitions !== settings.partitions) {
          throw new BotqueueError(
            ErrorCodes.TOPIC_MISMATCH,
            `topic "${topic}" exists with ${existing.info.partitions} partitions, not ${settings.partitions}; the partition count is fixed at creation, so use ${existing.info.partitions} or another topic`,
            { details: { topic, existing: existing.info.partitions, requested: settings.partitions } },
          );
        }
        return { ...existing.info };
      }
      const state = createTopic({ name: topic, partitions: settings.partitions, dedupWindowMs: settings.dedupWindowMs, createdAt: this.now() });
      this.topics.set(topic, state);
      return { ...state.info };
    });
  }

  getTopic(topic: string): Promise<TopicInfo | undefined> {
    return this.run(() => {
      const state = this.topics.get(topic);
      return state === undefined ? undefined : { ...state.info };
    });
  }

  deleteGroup(topic: string, group: string): Promise<boolean> {
    return this.run(() => {
      const state = this.topics.get(topic);
      const found = state?.groups.get(group);
      if (state === undefined || found === undefined) return false;
      for (const partition of found.pending) for (const entry of [...partition.values()]) removePending(state, found, entry);
      state.groups.delete(group);
      for (const letter of this.deadLetters.find({ topic, group })) this.deadLetters.delete(letter.dlqId);
      return true;
    });
  }

  deleteTopic(topic: string): Promise<boolean> {
    return this.run(() => {
      const state = this.topics.get(topic);
      if (state === undefined) return false;
      for (const letter of this.deadLetters.find({ topic })) this.deadLetters.delete(letter.dlqId);
      this.topics.delete(topic);
      return true;
    });
  }

  ensureGroup(topic: string, group: string): Promise<void> {
    return this.run(() => {
      checkName('group', group);
      const state = this.topic(topic, 'subscribe a group to');
      if (!state.groups.has(group)) createGroup(state, group);
    });
  }

  publish(topic: string, messages: PreparedMessage[]): Promise<PublishReceipt[]> {
    return this.run(() => {
      const state = this.topic(topic, 'publish to');
      const { receipts, partitions } = publishMessages(state, messages, this.now(), this.nextSeq);
      this.watchers.notify(topic, partitions);
      return receipts;
    });
  }

  coordinate(request: CoordinateRequest): Promise<CoordinateResult> {
    return this.run(() => {
      const state = this.topic(request.topic, 'coordinate on');
      checkCoordinate(request, state.info.partitions);
      // A member may coordinate before anyone called ensureGroup: the group is created then.
      const group = state.groups.get(request.group) ?? createGroup(state, checkName('group', request.group));
      return coordinateGroup(group, request, this.now());
    });
  }

  report(report: MemberReport): Promise<void> {
    return this.run(() => {
      const group = this.topic(report.topic, 'report on').groups.get(report.group);
      if (group !== undefined) reportMember(group, report);
    });
  }

  fetch(topic: string, group: string, partition: number, afterSeq: number, limit: number): Promise<Delivery[]> {
    return this.run(() => {
      const state = this.topic(topic, 'fetch from');
      checkPartition(`fetch ${topic}/${group}`, partition, state.info.partitions);
      const pending = state.groups.get(group)?.pending[partition];
      if (pending === undefined) return [];
      return pending.after(afterSeq, Math.floor(limit)).map(toDelivery);
    });
  }

  settle(settlements: Settlement[]): Promise<SettleOutcome[]> {
    return this.run(() => {
      return settlements.map((item) => {
        // An ack's staged publishes are stored with it, in the same synchronous step (their
        // topics looked up first, so a missing one fails the call before anything changes).
        const staged = item.kind === 'ack' ? (item.publish ?? []).map((p) => ({ name: p.topic, state: this.topic(p.topic, 'publish to'), messages: p.messages })) : [];
        const outcome = settleOne(this.topics.get(item.lease.topic), this.deadLetters, item);
        if (outcome !== 'ok') return outcome;
        for (const target of staged) {
          const { partitions } = publishMessages(target.state, target.messages, this.now(), this.nextSeq);
          this.watchers.notify(target.name, partitions);
        }
        return outcome;
      });
    });
  }

  getEffect(topic: string, group: string, messageId: string, name: string): Promise<string | null | undefined> {
    return this.run(() => {
      return this.topics.get(topic)?.effects.get(effectKey(group, messageId, name), this.now());
    });
  }

  putEffect(topic: string, group: string, messageId: string, name: string, result: string | null): Promise<void> {
    return this.run(() => {
      const state = this.topic(topic, 'record an effect on');
      const now = this.now();
      state.effects.set(effectKey(group, messageId, name), result, now + state.info.dedupWindowMs);
      state.effects.sweep(now);
    });
  }

  listDeadLetters(options: DeadLetterListOptions): Promise<DeadLetter[]> {
    return this.run(() => {
      return this.deadLetters.list(checkListOptions(options));
    });
  }

  redriveDeadLetters(filter: DeadLetterFilter): Promise<number> {
    return this.run(() => {
      const { count, touched } = redriveDeadLetters(this.topics, this.deadLetters, checkFilter('redriveDeadLetters', filter), this.now(), this.nextSeq);
      for (const [topic, partitions] of touched) this.watchers.notify(topic, partitions);
      return count;
    });
  }

  purgeDeadLetters(filter: DeadLetterFilter): Promise<number> {
    return this.run(() => {
      return purgeDeadLetters(this.topics, this.deadLetters, checkFilter('purgeDeadLetters', filter));
    });
  }

  stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]> {
    return this.run(() => {
      const idleAfterMs = resolveIdleAfterMs(options);
      const now = this.now();
      const states = topic === undefined ? [...this.topics.values()] : [this.topics.get(topic)].filter((t) => t !== undefined);
      return states.sort((a, b) => compare(a.info.name, b.info.name)).map((state) => topicStats(state, now, idleAfterMs));
    });
  }

  watch(topic: string, listener: (partition: number) => void): () => void {
    this.open();
    if (typeof listener !== 'function') {
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'watch: listener must be a function', { details: { option: 'listener' } });
    }
    return this.watchers.add(topic, listener);
  }

  /** Drops everything. Closing twice is fine; any other call after close rejects with BOTQUEUE_CLOSED. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.watchers.clear();
      this.deadLetters.clear();
      this.topics.clear();
    }
    return Promise.resolve();
  }

  /**
   * Runs a call's whole body now, atomically, and hands its result (or error) back as a
   * promise: a throw becomes a rejection, never a synchronous exception.
   */
  private run<T>(body: () => T): Promise<T> {
    try {
      this.open();
      return Promise.resolve(body());
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private open(): void {
    if (this.closed) throw new BotqueueError(ErrorCodes.CLOSED, 'the memory broker is closed; open a new one with open("memory:")');
  }

  private topic(name: string, action: string): TopicState {
    const state = this.topics.get(name);
    if (state === undefined) {
      throw new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `cannot ${action} topic "${name}": it does not exist; create it first with ensureTopic`, {
        details: { topic: name },
      });
    }
    return state;
  }
}

function toDelivery(entry: PendingEntry): Delivery {
  const m = entry.message;
  return {
    seq: m.seq,
    id: m.id,
    key: m.key,
    partition: m.partition,
    payload: m.payload,
    headers: { ...m.headers },
    publishedAt: m.publishedAt,
    notBefore: entry.notBefore,
    attempts: entry.attempts,
    firstFailedAt: entry.firstFailedAt,
    parked: entry.parked,
  };
}
