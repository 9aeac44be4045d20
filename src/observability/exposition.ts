/**
 * One `/metrics` answer for the whole service: this process's instruments summed with those of
 * every worker process (asked over IPC at scrape time; counters and histograms add up, the
 * connection gauge takes the minimum), then the broker-wide gauges read once by this process.
 */
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client';
import type { StatsGauges } from './stats-gauges.js';

export type MetricsSnapshot = MetricObjectWithValues<MetricValue<string>>[];

export const METRICS_CONTENT_TYPE = Registry.PROMETHEUS_CONTENT_TYPE;

export interface ExpositionSources {
  /** This process's registry. */
  local: Registry;
  /** The worker processes' registries, as JSON (none when handlers run in this process). */
  workers?: () => Promise<MetricsSnapshot[]>;
  stats: StatsGauges;
}

export async function renderMetrics(sources: ExpositionSources): Promise<string> {
  const [local, workers] = await Promise.all([sources.local.getMetricsAsJSON(), sources.workers?.() ?? Promise.resolve([])]);
  const summed = workers.length === 0 ? sources.local : AggregatorRegistry.aggregate([local as MetricsSnapshot, ...workers]);
  await sources.stats.refresh();
  const own = await summed.metrics();
  const broker = await sources.stats.registry.metrics();
  return `${own.trimEnd()}\n${broker}`.replace(/^\n/, '');
}
