/** Backlog, ownership and dead-letter figures of one topic, from counters kept as data changes. */
import type { GroupStats, PartitionStats, TopicStats } from '../broker.js';
import { isIdle } from '../idle.js';
import type { GroupState, TopicState } from './state.js';

export function topicStats(topic: TopicState, now: number, idleAfterMs: number): TopicStats {
  const groups = [...topic.groups.values()]
    .sort((a, b) => compare(a.name, b.name))
    .map((group) => groupStats(group, now, idleAfterMs));
  return { topic: topic.info.name, partitions: topic.info.partitions, retained: topic.messages.size, groups };
}

function groupStats(group: GroupState, now: number, idleAfterMs: number): GroupStats {
  const partitions: PartitionStats[] = group.pending.map((pending, partition) => {
    const assignment = group.assignments[partition]!;
    const live = assignment.owner !== null && assignment.leaseUntil > now;
    const oldest = pending.first();
    return {
      partition,
      backlog: pending.size,
      inFlight: live ? assignment.inFlight : 0,
      oldestAgeMs: oldest === undefined ? 0 : Math.max(0, now - oldest.message.publishedAt),
      owner: live ? assignment.owner : null,
    };
  });
  let members = 0;
  for (const expiresAt of group.members.values()) if (expiresAt > now) members += 1;
  return {
    group: group.name,
    backlog: partitions.reduce((sum, p) => sum + p.backlog, 0),
    inFlight: partitions.reduce((sum, p) => sum + p.inFlight, 0),
    oldestAgeMs: partitions.reduce((max, p) => Math.max(max, p.oldestAgeMs), 0),
    deadLetters: group.deadLetters,
    parkedKeys: group.parkedKeys.size,
    members,
    orderViolations: group.orderViolations,
    deferrals: group.deferrals,
    lastSeenAt: group.lastSeenAt,
    idle: isIdle(members, group.lastSeenAt, now, idleAfterMs),
    partitions,
  };
}

/** Plain code-unit order, the same for topics, groups and members everywhere. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
