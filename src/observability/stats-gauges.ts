/**
 * Gauges read from the broker at scrape time (one `stats()` call per scrape): backlog per
 * partition, lag (oldest unsettled age), in flight, DLQ depth, parked keys, live members,
 * retained messages and the durable order-violation count. Every backend answers stats from
 * counters or per-partition lookups (SQLite keeps count tables in its write transactions; RabbitMQ
 * asks each partition queue), so a scrape costs O(topics × groups × partitions), never a
 * scan of the backlog. Only the gateway process exposes these: the worker processes share
 * the same broker, so summing their views would count each message N times.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { TopicStats } from '../brokers/broker.js';

export class StatsGauges {
  readonly registry = new Registry();
  private readonly backlog: Gauge<'topic' | 'group' | 'partition'>;
  private readonly lag: Gauge<'topic' | 'group'>;
  private readonly inFlight: Gauge<'topic' | 'group'>;
  private readonly deadLetters: Gauge<'topic' | 'group'>;
  private readonly parkedKeys: Gauge<'topic' | 'group'>;
  private readonly members: Gauge<'topic' | 'group'>;
  private readonly retained: Gauge<'topic'>;
  private readonly waiting: Gauge<'topic'>;
  private readonly orderViolations: Counter<'topic' | 'group'>;
  private readonly up: Gauge;
  private readonly duration: Gauge;

  private readonly topics: Gauge;

  constructor(private readonly stats: () => Promise<TopicStats[]>) {
    const registers = [this.registry];
    this.backlog = new Gauge({ name: 'botqueue_backlog_messages', help: 'Messages not yet settled by the group, per partition (parked ones included).', labelNames: ['topic', 'group', 'partition'], registers });
    this.lag = new Gauge({ name: 'botqueue_oldest_unsettled_age_seconds', help: "Age of the group's oldest unsettled message (the lag); 0 when none.", labelNames: ['topic', 'group'], registers });
    this.inFlight = new Gauge({ name: 'botqueue_in_flight_messages', help: 'Messages being handled now, as reported by the owners at their heartbeats.', labelNames: ['topic', 'group'], registers });
    this.deadLetters = new Gauge({ name: 'botqueue_dead_letters', help: 'Dead letters stored (DLQ depth).', labelNames: ['topic', 'group'], registers });
    this.parkedKeys = new Gauge({ name: 'botqueue_parked_keys', help: 'Keys waiting for an operator (failure policy park-key).', labelNames: ['topic', 'group'], registers });
    this.members = new Gauge({ name: 'botqueue_group_members', help: 'Live members of the group (heartbeat not expired).', labelNames: ['topic', 'group'], registers });
    this.retained = new Gauge({ name: 'botqueue_retained_messages', help: 'Messages stored for the topic, not yet settled by every group.', labelNames: ['topic'], registers });
    this.waiting = new Gauge({ name: 'botqueue_topic_without_groups_messages', help: 'Messages stored for a topic that has no group yet (they wait for one).', labelNames: ['topic'], registers });
    this.orderViolations = new Counter({ name: 'botqueue_order_violations_total', help: 'Per-key order violations detected by workers (must stay 0).', labelNames: ['topic', 'group'], registers });
    this.up = new Gauge({ name: 'botqueue_stats_up', help: '1 when the last scrape could read the broker stats, 0 when it failed.', registers });
    this.duration = new Gauge({ name: 'botqueue_stats_scrape_duration_seconds', help: 'How long reading the broker stats took at the last scrape.', registers });
    this.topics = new Gauge({ name: 'botqueue_topics', help: 'Topics the broker holds.', registers });
  }

  /** Reads the broker once and sets every gauge; call before rendering the registry. A failed read keeps no stale series. */
  async refresh(): Promise<void> {
    const started = performance.now();
    let topics: TopicStats[] = [];
    try {
      topics = await this.stats();
      this.up.set(1);
    } catch {
      this.up.set(0);
    }
    this.duration.set((performance.now() - started) / 1000);
    this.topics.set(topics.length);
    this.apply(topics);
  }

  private apply(topics: TopicStats[]): void {
    for (const gauge of [this.backlog, this.lag, this.inFlight, this.deadLetters, this.parkedKeys, this.members, this.retained, this.waiting]) gauge.reset();
    this.orderViolations.reset();
    for (const topic of topics) {
      this.retained.set({ topic: topic.topic }, topic.retained);
      this.waiting.set({ topic: topic.topic }, topic.groups.length === 0 ? topic.retained : 0);
      for (const group of topic.groups) {
        const labels = { topic: topic.topic, group: group.group };
        this.lag.set(labels, group.oldestAgeMs / 1000);
        this.inFlight.set(labels, group.inFlight);
        this.deadLetters.set(labels, group.deadLetters);
        this.parkedKeys.set(labels, group.parkedKeys);
        this.members.set(labels, group.members);
        this.orderViolations.inc(labels, group.orderViolations);
        for (const p of group.partitions) this.backlog.set({ ...labels, partition: String(p.partition) }, p.backlog);
      }
    }
  }
}
