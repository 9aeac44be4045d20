import type Database from 'better-sqlite3';

/** Kinds of journal entries; each entry is four slots: kind, a, b, delta. */
const BACKLOG = 0; // a = gid, b = partition
const RETAINED = 1; // a = tid
const DEAD = 2; // a = topic name, b = group name
const FORGET_GROUP = 3; // a = gid: its backlog counts were deleted or set absolutely
const FORGET_TOPIC = 4; // a = tid
const FORGET_DEAD = 5; // a = topic name, b = group name, or null for every group of the topic

type Slot = number | string | null;

/**
 * Keeps `backlog_counts`, `topic_counts` and `dead_letter_counts` equal to the row counts of
 * pending, messages and dead_letters, without per-row triggers (measured at 10-30 % of
 * throughput). Every write path records what it inserted or deleted (`.changes`, so a
 * statement that touched nothing counts nothing) in this journal; the journal is summed per
 * (group, partition), topic and (topic, group) and written once per key just before COMMIT.
 *
 * The journal follows the transaction: `mark`/`undo` drop what a rolled-back savepoint
 * recorded, `abort` drops everything. Deleting a group or topic (or giving a new group its
 * backfilled counts absolutely) records a "forget" entry, so deltas recorded earlier in the
 * same transaction for those keys are not written on top of the deleted or reset rows (an id
 * freed by a deletion may even be given to a new group or topic in the same transaction).
 */
export class Counts {
  private readonly journal: Slot[] = [];
  private readonly addBacklog: Database.Statement<[number, number, number]>;
  private readonly addRetained: Database.Statement<[number, number]>;
  private readonly addDead: Database.Statement<[string, string, number]>;

  constructor(db: Database.Database) {
    this.addBacklog = db.prepare(
      'INSERT INTO backlog_counts (gid, partition, n) VALUES (?, ?, ?) ON CONFLICT (gid, partition) DO UPDATE SET n = n + excluded.n',
    );
    this.addRetained = db.prepare('INSERT INTO topic_counts (tid, n) VALUES (?, ?) ON CONFLICT (tid) DO UPDATE SET n = n + excluded.n');
    this.addDead = db.prepare(
      'INSERT INTO dead_letter_counts (topic, grp, n) VALUES (?, ?, ?) ON CONFLICT (topic, grp) DO UPDATE SET n = n + excluded.n',
    );
  }

  /** Pending rows of a group's partition inserted (delta > 0) or deleted (delta < 0). */
  backlog(gid: number, partition: number, delta: number): void {
    if (delta !== 0) this.journal.push(BACKLOG, gid, partition, delta);
  }

  /** Messages of a topic inserted or deleted. */
  retained(tid: number, delta: number): void {
    if (delta !== 0) this.journal.push(RETAINED, tid, 0, delta);
  }

  /** Dead letters of a (topic, group) inserted or deleted. */
  deadLetters(topic: string, group: string, delta: number): void {
    if (delta !== 0) this.journal.push(DEAD, topic, group, delta);
  }

  /** The group's backlog counts were deleted or written absolutely: earlier deltas no longer apply. */
  forgetGroup(gid: number): void {
    this.journal.push(FORGET_GROUP, gid, 0, 0);
  }

  forgetTopic(tid: number): void {
    this.journal.push(FORGET_TOPIC, tid, 0, 0);
  }

  /** `group` null: every group of the topic. */
  forgetDeadLetters(topic: string, group: string | null): void {
    this.journal.push(FORGET_DEAD, topic, group, 0);
  }

  mark(): number {
    return this.journal.length;
  }

  undo(mark: number): void {
    this.journal.length = mark;
  }

  abort(): void {
    this.journal.length = 0;
  }

  /** Writes the summed deltas; inside the transaction, just before COMMIT. */
  flush(): void {
    const journal = this.journal;
    if (journal.length === 0) return;
    const backlog = new Map<number, Map<number, number>>();
    const retained = new Map<number, number>();
    const dead = new Map<string, Map<string, number>>();
    for (let i = 0; i < journal.length; i += 4) {
      const kind = journal[i] as number;
      const a = journal[i + 1]!;
      const b = journal[i + 2]!;
      const delta = journal[i + 3] as number;
      switch (kind) {
        case BACKLOG: {
          let partitions = backlog.get(a as number);
          if (partitions === undefined) backlog.set(a as number, (partitions = new Map<number, number>()));
          partitions.set(b as number, (partitions.get(b as number) ?? 0) + delta);
          break;
        }
        case RETAINED:
          retained.set(a as number, (retained.get(a as number) ?? 0) + delta);
          break;
        case DEAD: {
          let groups = dead.get(a as string);
          if (groups === undefined) dead.set(a as string, (groups = new Map<string, number>()));
          groups.set(b as string, (groups.get(b as string) ?? 0) + delta);
          break;
        }
        case FORGET_GROUP:
          backlog.delete(a as number);
          break;
        case FORGET_TOPIC:
          retained.delete(a as number);
          break;
        case FORGET_DEAD:
          if (b === null) dead.delete(a as string);
          else dead.get(a as string)?.delete(b as string);
          break;
      }
    }
    journal.length = 0;
    for (const [gid, partitions] of backlog) {
      for (const [partition, delta] of partitions) if (delta !== 0) this.addBacklog.run(gid, partition, delta);
    }
    for (const [tid, delta] of retained) if (delta !== 0) this.addRetained.run(tid, delta);
    for (const [topic, groups] of dead) {
      for (const [group, delta] of groups) if (delta !== 0) this.addDead.run(topic, group, delta);
    }
  }
}
