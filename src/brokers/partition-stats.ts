import type { PartitionStats } from './broker.js';

/** A group's totals from its partitions: backlog and in flight summed, the oldest age the largest. */
export function sumPartitions(partitions: PartitionStats[]): { backlog: number; inFlight: number; oldestAgeMs: number } {
  let backlog = 0;
  let inFlight = 0;
  let oldestAgeMs = 0;
  for (const stats of partitions) {
    backlog += stats.backlog;
    inFlight += stats.inFlight;
    if (stats.oldestAgeMs > oldestAgeMs) oldestAgeMs = stats.oldestAgeMs;
  }
  return { backlog, inFlight, oldestAgeMs };
}
