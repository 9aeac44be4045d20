import type Database from 'better-sqlite3';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { CoordinateRequest, CoordinateResult, MemberReport } from '../broker.js';
import type { Catalog } from './catalog.js';
import { unknownTopic } from './errors.js';
import type { Clock } from './options.js';
import type { Topics } from './topics.js';
import type { WriteTx } from './transaction.js';

function invalid(where: string, message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: ${message}`, { details: { option } });
}

/**
 * Heartbeat, lease renewal, release and acquisition of one member, in one write transaction,
 * so that two members racing for a partition see each other's result. A lease whose time has
 * passed is only taken over, never revoked by time alone: the fence changes when the owner
 * changes, not when the clock moves. Times come from the broker's clock; every process on
 * one machine shares it.
 */
export class Coordinator {
  private readonly upsertMember: Database.Statement<[number, string, number]>;
  private readonly deleteExpiredMembers: Database.Statement<[number, number]>;
  private readonly deleteMember: Database.Statement<[number, string]>;
  private readonly releaseOne: Database.Statement<[number, number, string]>;
  private readonly releaseAll: Database.Statement<[number, string]>;
  private readonly renew: Database.Statement<[number, number, number, string]>;
  private readonly take: Database.Statement<[string, number, number, number, string, number]>;
  private readonly reportInFlight: Database.Statement<[number, number, number, string]>;
  private readonly addCounters: Database.Statement<[number, number, number]>;
  private readonly markSeen: Database.Statement<[number, number]>;
  private readonly readMembers: Database.Statement<[number, number], string>;
  private readonly readOwned: Database.Statement<[number, string], [number, number]>;
  private readonly readControlVersion: Database.Statement<[number], number>;

  constructor(
    db: Database.Database,
    private readonly catalog: Catalog,
    private readonly topics: Topics,
    private readonly now: Clock,
  ) {
    this.upsertMember = db.prepare(
      'INSERT INTO members (gid, member, expires_at) VALUES (?, ?, ?) ON CONFLICT (gid, member) DO UPDATE SET expires_at = excluded.expires_at',
    );
    this.deleteExpiredMembers = db.prepare('DELETE FROM members WHERE gid = ? AND expires_at <= ?');
    this.markSeen = db.prepare('UPDATE groups SET last_seen_at = ? WHERE gid = ?');
    this.deleteMember = db.prepare('DELETE FROM members WHERE gid = ? AND member = ?');
    this.releaseOne = db.prepare('UPDATE assignments SET owner = NULL, lease_until = 0, in_flight = 0 WHERE gid = ? AND partition = ? AND owner = ?');
    this.releaseAll = db.prepare('UPDATE assignments SET owner = NULL, lease_until = 0, in_flight = 0 WHERE gid = ? AND owner = ?');
    this.renew = db.prepare('UPDATE assignments SET lease_until = ? WHERE gid = ? AND partition = ? AND owner = ?');
    // The member's own partitions were renewed just before, so they never match here: taking
    // back an expired lease nobody else took keeps its fence.
    this.take = db.prepare(
      `UPDATE assignments SET owner = ?, fence = fence + 1, lease_until = ?, in_flight = 0
       WHERE gid = ? AND partition = ? AND (owner IS NULL OR (owner <> ? AND lease_until <= ?))`,
    );
    this.reportInFlight = db.prepare('UPDATE assignments SET in_flight = ? WHERE gid = ? AND partition = ? AND owner = ?');
    this.addCounters = db.prepare('UPDATE groups SET order_violations = order_violations + ?, deferrals = deferrals + ? WHERE gid = ?');
    this.readMembers = db.prepare<[number, number], string>('SELECT member FROM members WHERE gid = ? AND expires_at > ?').pluck();
    this.readOwned = db.prepare<[number, string], [number, number]>('SELECT partition, fence FROM assignments WHERE gid = ? AND owner = ?').raw();
    this.readControlVersion = db.prepare<[number], number>('SELECT control_version FROM groups WHERE gid = ?').pluck();
  }

  coordinate(tx: WriteTx, request: CoordinateRequest): CoordinateResult {
    const topic = this.catalog.topic(request.topic);
    if (topic === undefined) throw unknownTopic(request.topic);
    const where = `coordinate ${request.topic}/${request.group}`;
    for (const partition of [...request.acquire, ...request.release]) {
      if (!Number.isInteger(partition) || partition < 0 || partition >= topic.partitions) {
        throw invalid(where, `partition ${String(partition)} is outside 0-${topic.partitions - 1}`, 'partition');
      }
    }
    // A member may coordinate before anyone called ensureGroup: the group is created then.
    const gid = this.topics.ensureGroup(tx, request.topic, request.group).gid;
    const member = request.member;
    const now = this.now();
    const until = now + request.leaseMs;

    this.upsertMember.run(gid, member, until);
    this.markSeen.run(now, gid);
    this.deleteExpiredMembers.run(gid, now);
    for (const partition of request.release) this.releaseOne.run(gid, partition, member);
    for (const [partition] of this.readOwned.all(gid, member)) {
      this.renew.run(until, gid, partition, member);
    }
    if (request.leaving !== true) {
      for (const partition of request.acquire) this.take.run(member, until, gid, partition, member, now);
    }
    if (request.leaving === true) {
      this.releaseAll.run(gid, member);
      this.deleteMember.run(gid, member);
    }

    const members = this.readMembers.all(gid, now).sort(compare);
    const owned = new Map<number, number>();
    for (const [partition, fence] of this.readOwned.all(gid, member)) owned.set(partition, fence);
    return { members, owned, controlVersion: this.readControlVersion.get(gid)!, partitions: topic.partitions };
  }

  /** A member's report for stats: in flight on the partitions it owns, counters added to the group's. */
  report(_tx: WriteTx, report: MemberReport): void {
    const gid = this.catalog.group(report.topic, report.group)?.gid;
    if (gid === undefined) return;
    for (const [partition, count] of Object.entries(report.inFlight)) this.reportInFlight.run(count, gid, Number(partition), report.member);
    if (report.orderViolations > 0 || report.deferrals > 0) this.addCounters.run(report.orderViolations, report.deferrals, gid);
  }
}

/** Plain code-unit order, as every backend sorts members. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
