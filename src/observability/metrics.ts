/**
 * The process's own Prometheus instruments: counters and histograms fed by the client's and
 * the workers' events (never called inline on the hot path), plus the small functions the
 * gateway and the outbound sender call (`recordWebhook`, `recordOutboundSend`,
 * `recordOutboundRateLimited`). One registry per process: `botqueue start --workers N`
 * gathers every worker process's registry over IPC and sums them (see ./exposition.ts).
 *
 * Labels are topic, group, outcome, platform and connection: names an operator chose or a
 * fixed vocabulary, never a chat id, message id, key, payload or secret. Values that do not
 * look like a short name are replaced by `other`, so a caller's mistake cannot grow the series.
 *
 * @example
 * observeClient(bq);             // published_total, broker connection state
 * observeWorker(worker);         // delivered, settled, durations, lease losses…
 * recordWebhook('telegram', 'accepted');
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Botqueue } from '../client.js';
import type { Worker } from '../worker/worker.js';

/** Handler durations and queue times, in seconds: 1 ms to 5 min. */
const SECONDS_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export const WEBHOOK_OUTCOMES = ['accepted', 'duplicate', 'rejected', 'unauthorized', 'unavailable', 'error'] as const;
export const OUTBOUND_OUTCOMES = ['sent', 'rate_limited', 'failed', 'permanent_failure'] as const;
export type WebhookOutcome = (typeof WEBHOOK_OUTCOMES)[number];
export type OutboundOutcome = (typeof OUTBOUND_OUTCOMES)[number];

/** A label value that is a short name (platform, connection); anything else becomes `other`. */
function nameLabel(value: string): string {
  return /^[a-z][a-z0-9_. -]{0,31}$/i.test(value) ? value : 'other';
}

function oneOf<T extends string>(value: string, allowed: readonly T[]): T | 'other' {
  return (allowed as readonly string[]).includes(value) ? (value as T) : 'other';
}

export class ProcessMetrics {
  readonly registry = new Registry();
  readonly published = new Counter({
    name: 'botqueue_messages_published_total',
    help: 'Messages given to publish, by topic and outcome (stored, duplicate: dropped by deduplication, failed).',
    labelNames: ['topic', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly delivered = new Counter({
    name: 'botqueue_messages_delivered_total',
    help: 'Handler runs started (every attempt).',
    labelNames: ['topic', 'group'] as const,
    registers: [this.registry],
  });
  readonly redelivered = new Counter({
    name: 'botqueue_messages_redelivered_total',
    help: 'Handler runs of a message that had failed before (attempt 2 and later).',
    labelNames: ['topic', 'group'] as const,
    registers: [this.registry],
  });
  readonly settled = new Counter({
    name: 'botqueue_messages_settled_total',
    help: 'Handler runs settled, by outcome: ack, retry (failed, tried again after backoff), retry_later (RetryLater), dead_letter.',
    labelNames: ['topic', 'group', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly handlerDuration = new Histogram({
    name: 'botqueue_handler_duration_seconds',
    help: 'Time from handler start to its successful end.',
    labelNames: ['topic', 'group'] as const,
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly queueTime = new Histogram({
    name: 'botqueue_queue_time_seconds',
    help: "Time from publish to the handler's first start on the message.",
    labelNames: ['topic', 'group'] as const,
    buckets: SECONDS_BUCKETS,
    registers: [this.registry],
  });
  readonly leaseLosses = new Counter({
    name: 'botqueue_lease_losses_total',
    help: "Partitions whose lease a worker lost (another member took them; the worker's settlements were refused).",
    labelNames: ['topic', 'group'] as const,
    registers: [this.registry],
  });
  readonly brokerConnected = new Gauge({
    name: 'botqueue_broker_connected',
    help: '1 while the connection is up, 0 after it dropped (until it is back); summed over processes as the minimum.',
    labelNames: ['connection'] as const,
    aggregator: 'min',
    registers: [this.registry],
  });
  readonly webhooks = new Counter({
    name: 'botqueue_webhook_requests_total',
    help: 'Webhook requests by platform and outcome.',
    labelNames: ['platform', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly outboundSends = new Counter({
    name: 'botqueue_outbound_sends_total',
    help: 'Outbound platform API calls by platform and outcome (rate_limited: the platform answered 429).',
    labelNames: ['platform', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly outboundRateLimited = new Counter({
    name: 'botqueue_outbound_rate_limited_total',
    help: 'Outbound calls the platform answered with 429 (Too Many Requests).',
    labelNames: ['platform'] as const,
    registers: [this.registry],
  });

  private readonly clients = new WeakSet<Botqueue>();
  private readonly workers = new WeakSet<object>();

  /** Counts publishes and follows the broker connection state of a client (once per client). */
  observeClient(bq: Botqueue): void {
    if (this.clients.has(bq)) return;
    this.clients.add(bq);
    bq.events.on('published', (e) => {
      if (e.messages > e.duplicates) this.published.inc({ topic: e.topic, outcome: 'stored' }, e.messages - e.duplicates);
      if (e.duplicates > 0) this.published.inc({ topic: e.topic, outcome: 'duplicate' }, e.duplicates);
    });
    bq.events.on('publish-failed', (e) => this.published.inc({ topic: e.topic, outcome: 'failed' }, e.messages));
    bq.events.on('connection-lost', (e) => this.brokerConnected.set({ connection: nameLabel(e.connection) }, 0));
    bq.events.on('connection-restored', (e) => this.brokerConnected.set({ connection: nameLabel(e.connection) }, 1));
  }

  /** Counts a worker's deliveries and settlements, and times its handlers (once per worker). */
  observeWorker(worker: Worker<any>): void { // eslint-disable-line @typescript-eslint/no-explicit-any -- only events are read, never payloads
    if (this.workers.has(worker)) return;
    this.workers.add(worker);
    worker.on('delivered', (e) => {
      const labels = { topic: e.topic, group: e.group };
      this.delivered.inc(labels);
      if (e.attempt > 1) this.redelivered.inc(labels);
      else this.queueTime.observe(labels, e.queuedMs / 1000);
    });
    worker.on('completed', (e) => {
      this.settled.inc({ topic: e.topic, group: e.group, outcome: 'ack' });
      this.handlerDuration.observe({ topic: e.topic, group: e.group }, e.durationMs / 1000);
    });
    worker.on('retried', (e) => this.settled.inc({ topic: e.topic, group: e.group, outcome: 'retry' }));
    worker.on('deferred', (e) => this.settled.inc({ topic: e.topic, group: e.group, outcome: 'retry_later' }));
    worker.on('dead-lettered', (e) => this.settled.inc({ topic: e.topic, group: e.group, outcome: 'dead_letter' }));
    worker.on('lease-lost', (e) => this.leaseLosses.inc({ topic: e.topic, group: e.group }));
  }

  recordWebhook(platform: string, outcome: WebhookOutcome): void {
    this.webhooks.inc({ platform: nameLabel(platform), outcome: oneOf(outcome, WEBHOOK_OUTCOMES) });
  }

  recordOutboundSend(platform: string, outcome: OutboundOutcome): void {
    const label = nameLabel(platform);
    this.outboundSends.inc({ platform: label, outcome: oneOf(outcome, OUTBOUND_OUTCOMES) });
    if (outcome === 'rate_limited') this.outboundRateLimited.inc({ platform: label });
  }
}

let processMetrics: ProcessMetrics | undefined;

/** This process's instruments (created on first use). */
export function metrics(): ProcessMetrics {
  processMetrics ??= new ProcessMetrics();
  return processMetrics;
}

/** A webhook request's outcome, e.g. `recordWebhook('telegram', 'accepted')`. */
export function recordWebhook(platform: string, outcome: WebhookOutcome): void {
  metrics().recordWebhook(platform, outcome);
}

/** An outbound API call's outcome; `rate_limited` (a 429) also counts in botqueue_outbound_rate_limited_total. */
export function recordOutboundSend(platform: string, outcome: OutboundOutcome): void {
  metrics().recordOutboundSend(platform, outcome);
}
