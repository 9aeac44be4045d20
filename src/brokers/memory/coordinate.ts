/**
 * One member's heartbeat, lease renewal, acquisition and release, applied to a group in one
 * step. A lease whose time has passed is only taken over, never revoked by time alone: the
 * fence changes when the owner changes, not when the clock moves.
 */
import type { CoordinateRequest, CoordinateResult, MemberReport } from '../broker.js';
import type { GroupState } from './state.js';

export function coordinateGroup(group: GroupState, request: CoordinateRequest, now: number): CoordinateResult {
  const { member, leaseMs } = request;
  const leaseUntil = now + leaseMs;
  const assignments = group.assignments;

  group.members.set(member, leaseUntil);
  group.lastSeenAt = now;
  for (const [name, expiresAt] of group.members) {
    if (expiresAt <= now) group.members.delete(name);
  }

  for (const partition of request.release) {
    const assignment = assignments[partition];
    if (assignment?.owner === member) release(assignment);
  }

  for (const assignment of assignments) {
    if (assignment.owner !== member) continue;
    assignment.leaseUntil = leaseUntil;
  }

  for (const partition of request.acquire) {
    const assignment = assignments[partition];
    if (assignment === undefined || assignment.owner === member) continue;
    if (assignment.owner !== null && assignment.leaseUntil > now) continue;
    assignment.owner = member;
    assignment.fence += 1;
    assignment.leaseUntil = leaseUntil;
    assignment.inFlight = 0;
  }

  if (request.leaving === true) {
    for (const assignment of assignments) {
      if (assignment.owner === member) release(assignment);
    }
    group.members.delete(member);
  }

  const owned = new Map<number, number>();
  for (const [partition, assignment] of assignments.entries()) {
    if (assignment.owner === member) owned.set(partition, assignment.fence);
  }
  const members = [...group.members.keys()].sort();
  return { members, owned, controlVersion: group.controlVersion, partitions: assignments.length };
}

function release(assignment: GroupState['assignments'][number]): void {
  assignment.owner = null;
  assignment.leaseUntil = 0;
  assignment.inFlight = 0;
}

/** A member's report for stats: in flight on the partitions it owns, counters added to the group's. */
export function reportMember(group: GroupState, report: MemberReport): void {
  for (const [partition, assignment] of group.assignments.entries()) {
    if (assignment.owner === report.member) assignment.inFlight = report.inFlight[partition] ?? 0;
  }
  group.orderViolations += report.orderViolations;
  group.deferrals += report.deferrals;
}
