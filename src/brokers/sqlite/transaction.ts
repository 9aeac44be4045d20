import type Database from 'better-sqlite3';
import type { Counts } from './counts.js';

/**
 * State of one group-commit transaction, shared by the operations that run in it:
 * the seq counter, the groups of each topic, and which partitions got new messages.
 * Nothing here outlives the transaction; every value is read from the file inside it.
 */
export class WriteTx {
  private readonly readSeq: Database.Statement<[], number>;
  private readonly writeSeq: Database.Statement<[number]>;
  private readonly readGroupIds: Database.Statement<[number], number>;

  /** Next seq to hand out; 0 until read in this transaction. */
  private seq = 0;
  private seqAtStart = 0;
  private readonly groupIds = new Map<number, number[]>();
  /** Flat [topic, partition, topic, partition, ...] of partitions that got messages. */
  private readonly notes: (string | number)[] = [];
  /** Where the counts journal stood when the running operation began. */
  private countsMark = 0;

  constructor(
    db: Database.Database,
    /** The count tables' journal, written at `beforeCommit`. */
    private readonly counts: Counts,
    private readonly wantsNotes: (topic: string) => boolean,
    /** Called when writes are rolled back, so caches filled from them are dropped. */
    private readonly onUndo: () => void,
  ) {
    this.readSeq = db.prepare<[], number>("SELECT value FROM meta WHERE name = 'next_seq'").pluck();
    this.writeSeq = db.prepare<[number]>("UPDATE meta SET value = ? WHERE name = 'next_seq'");
    this.readGroupIds = db.prepare<[number], number>('SELECT gid FROM groups WHERE tid = ? ORDER BY gid').pluck();
    this.readCatalogVersion = db.prepare<[], number>("SELECT value FROM meta WHERE name = 'catalog_version'").pluck();
  }

  private readonly readCatalogVersion: Database.Statement<[], number>;
  private catalogVersion = 0;

  begin(): void {
    // A topic or group deleted (by any process) since the last transaction: cached ids may be gone.
    const version = this.readCatalogVersion.get() ?? 0;
    if (version !== this.catalogVersion) {
      this.catalogVersion = version;
      this.onUndo();
    }
    this.seq = 0;
    this.seqAtStart = 0;
    this.groupIds.clear();
    this.notes.length = 0;
    this.counts.abort();
  }

  /** The seq the next stored message gets; call `takeSeq` once it is stored. */
  peekSeq(): number {
    if (this.seq === 0) {
      this.seq = this.readSeq.get()!;
      this.seqAtStart = this.seq;
    }
    return this.seq;
  }

  takeSeq(): number {
    const seq = this.peekSeq();
    this.seq = seq + 1;
    return seq;
  }

  /**
   * The groups subscribed to a topic, read inside this transaction (never across
   * transactions: another process may add a group at any time).
   */
  groupsOf(tid: number): number[] {
    let ids = this.groupIds.get(tid);
    if (ids === undefined) {
      ids = this.readGroupIds.all(tid);
      this.groupIds.set(tid, ids);
    }
    return ids;
  }

  /** Called when an operation added a group or was rolled back. */
  forgetGroups(): void {
    this.groupIds.clear();
  }

  notify(topic: string, partition: number): void {
    if (this.wantsNotes(topic)) this.notes.push(topic, partition);
  }

  /** A point to return to when the next operation is rolled back to its savepoint. */
  mark(): number {
    this.countsMark = this.counts.mark();
    return this.notes.length;
  }

  /** The operation since `mark` was rolled back to its savepoint. */
  undo(mark: number): void {
    this.notes.length = mark;
    this.counts.undo(this.countsMark);
    this.groupIds.clear();
    this.onUndo();
  }

  /** The whole transaction was rolled back. */
  abort(): void {
    this.notes.length = 0;
    this.counts.abort();
    this.groupIds.clear();
    this.onUndo();
  }

  /** Persists the seq counter and the counts; runs inside the transaction, just before COMMIT. */
  beforeCommit(): void {
    if (this.seq !== this.seqAtStart) this.writeSeq.run(this.seq);
    this.counts.flush();
  }

  /** Takes the notes of the committed transaction. */
  takeNotes(): (string | number)[] {
    return this.notes.splice(0, this.notes.length);
  }
}
