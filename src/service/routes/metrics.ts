/**
 * `GET /metrics`: Prometheus text format, behind the admin token (without a token the server
 * listens on loopback only). See docs/metrics.md for every metric and label.
 */
import type { FastifyInstance } from 'fastify';
import type { Botqueue } from '../../client.js';
import { METRICS_CONTENT_TYPE, renderMetrics, type MetricsSnapshot } from '../../observability/exposition.js';
import { metrics } from '../../observability/metrics.js';
import { StatsGauges } from '../../observability/stats-gauges.js';
import type { AuthCheck } from '../auth.js';

export interface MetricsRouteOptions {
  bq: Botqueue;
  auth: AuthCheck;
  /** The worker processes' registries, when handlers run in other processes. */
  workerMetrics?: () => Promise<MetricsSnapshot[]>;
}

export function registerMetricsRoute(app: FastifyInstance, options: MetricsRouteOptions): void {
  const gauges = new StatsGauges(() => options.bq.stats());
  const local = metrics();
  local.observeClient(options.bq);
  // Scrapes that overlap share one read of the broker.
  let running: Promise<string> | undefined;
  app.get('/metrics', { preHandler: options.auth }, async (_request, reply) => {
    running ??= renderMetrics({ local: local.registry, workers: options.workerMetrics, stats: gauges }).finally(() => (running = undefined));
    const text = await running;
    return reply.header('content-type', METRICS_CONTENT_TYPE).send(text);
  });
}
