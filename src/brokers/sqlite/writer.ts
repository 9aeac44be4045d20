import type Database from 'better-sqlite3';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { toBrokerError } from './errors.js';
import type { WriteTx } from './transaction.js';

interface Operation {
  /** Messages or settlements it writes: the batch is capped by their sum. */
  weight: number;
  what: string;
  run: (tx: WriteTx) => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

/**
 * The one serialised writer of a connection, with group commit. Every write is queued; on
 * the next turn of the event loop the queue is written in a single `BEGIN IMMEDIATE` ...
 * `COMMIT` (one WAL sync for all of them), each operation inside its own SAVEPOINT so that
 * one failing operation rejects only its own promise. Promises settle only after COMMIT has
 * returned, so what they report is durable.
 *
 * Waiting for another process's write lock never blocks the event loop: SQLite's own busy
 * handler sleeps synchronously (in steps up to 100 ms, measured at over a second of stalled
 * event loop with three publishing processes), which would also stall handlers and lease
 * renewals. So `BEGIN IMMEDIATE` runs with busy_timeout 0, and on SQLITE_BUSY the flush is
 * retried on a short timer until `busyTimeoutMs` has passed; operations queued meanwhile join
 * the batch. Reads keep the connection's busy_timeout (WAL readers practically never wait).
 */
export class GroupCommitWriter {
  private queue: Operation[] = [];
  private queuedWeight = 0;
  private scheduled = false;
  private idleWaiters: (() => void)[] = [];
  /** performance.now() of the first failed attempt to take the write lock, while waiting for it. */
  private busySince: number | undefined;

  private readonly begin: Database.Statement<[]>;
  private readonly commit: Database.Statement<[]>;
  private readonly rollback: Database.Statement<[]>;
  private readonly savepoint: Database.Statement<[]>;
  private readonly release: Database.Statement<[]>;
  private readonly rollbackTo: Database.Statement<[]>;
  private readonly noWait: Database.Statement<[]>;
  private readonly wait: Database.Statement<[]>;

  constructor(
    private readonly db: Database.Database,
    private readonly tx: WriteTx,
    private readonly maxBatch: number,
    /** How long to keep trying to take the write lock before failing the batch, in ms. */
    private readonly busyTimeoutMs: number,
    /** Called after each COMMIT with the partitions that got messages (flat topic, partition pairs). */
    private readonly onCommit: (notes: (string | number)[]) => void,
  ) {
    this.begin = db.prepare('BEGIN IMMEDIATE');
    this.commit = db.prepare('COMMIT');
    this.rollback = db.prepare('ROLLBACK');
    this.savepoint = db.prepare('SAVEPOINT op');
    this.release = db.prepare('RELEASE op');
    this.rollbackTo = db.prepare('ROLLBACK TO op');
    this.noWait = db.prepare('PRAGMA busy_timeout = 0');
    this.wait = db.prepare(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
  }

  /** Queues `run` for the next group commit; resolves with its result once committed. */
  submit<T>(weight: number, what: string, run: (tx: WriteTx) => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ weight, what, run, resolve: resolve as (value: unknown) => void, reject });
      this.queuedWeight += weight;
      this.schedule();
    });
  }

  /** Resolves when every queued operation has been written (or has failed). */
  idle(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    if (this.queue.length > 0 && this.beginOrWait()) {
      const batch = this.takeBatch();
      if (this.queue.length > 0) this.schedule();
      this.write(batch);
    }
    if (this.queue.length === 0 && this.idleWaiters.length > 0) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const wake of waiters) wake();
    }
  };

  /** The oldest operations up to maxBatch (at least one, however heavy). */
  private takeBatch(): Operation[] {
    if (this.queuedWeight <= this.maxBatch) {
      const all = this.queue;
      this.queue = [];
      this.queuedWeight = 0;
      return all;
    }
    let weight = 0;
    let count = 0;
    for (const op of this.queue) {
      if (count > 0 && weight + op.weight > this.maxBatch) break;
      weight += op.weight;
      count++;
    }
    this.queuedWeight -= weight;
    return this.queue.splice(0, count);
  }

  /**
   * Starts the write transaction. False when another process holds the write lock: a retry
   * is scheduled (or, past busyTimeoutMs, the oldest batch is failed).
   */
  private beginOrWait(): boolean {
    let error: unknown;
    try {
      this.noWait.run();
      try {
        this.begin.run();
      } finally {
        this.wait.run();
      }
      this.busySince = undefined;
      return true;
    } catch (caught) {
      error = caught;
    }
    const code = (error as { code?: unknown }).code;
    const now = performance.now();
    if (code === 'SQLITE_BUSY' && (this.busySince === undefined || now - this.busySince < this.busyTimeoutMs)) {
      this.busySince ??= now;
      this.scheduled = true;
      // 1-2 ms with jitter, so waiting processes do not poll in step.
      setTimeout(this.flush, 1 + Math.floor(Math.random() * 2));
      return false;
    }
    const waited = this.busySince === undefined ? 0 : Math.round(now - this.busySince);
    this.busySince = undefined;
    const failure =
      code === 'SQLITE_BUSY'
        ? new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `sqlite broker could not take the write lock in ${waited} ms (busyTimeoutMs): another process holds it (SQLITE_BUSY)`, {
            retriable: true,
            cause: error,
            details: { sqliteCode: code },
          })
        : toBrokerError(error, 'start a write transaction');
    this.failAll(this.takeBatch(), failure);
    if (this.queue.length > 0) this.schedule();
    return false;
  }

  /** Runs the batch in the transaction `beginOrWait` started, and commits it. */
  private write(batch: Operation[]): void {
    const results: unknown[] = new Array<unknown>(batch.length);
    const failures: unknown[] = new Array<unknown>(batch.length);
    const failed: boolean[] = new Array<boolean>(batch.length).fill(false);
    let fatal: { error: unknown; what: string } | undefined;

    this.tx.begin();
    // A lone operation needs no savepoint: if it fails, the whole transaction is rolled back.
    const guarded = batch.length > 1;
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i]!;
      const mark = this.tx.mark();
      try {
        if (guarded) this.savepoint.run();
        results[i] = op.run(this.tx);
        if (guarded) this.release.run();
      } catch (error) {
        // Some errors (I/O, disk full, busy on a spill) make SQLite roll back the whole
        // transaction: then no operation of the batch was written.
        if (!guarded || !this.db.inTransaction) {
          fatal = { error, what: op.what };
          break;
        }
        try {
          this.rollbackTo.run();
          this.release.run();
        } catch (undoError) {
          fatal = { error: undoError, what: op.what };
          break;
        }
        this.tx.undo(mark);
        failed[i] = true;
        failures[i] = toBrokerError(error, op.what);
      }
    }
    if (fatal === undefined) {
      try {
        this.tx.beforeCommit();
        this.commit.run();
      } catch (error) {
        fatal = { error, what: 'commit a write transaction' };
      }
    }
    if (fatal !== undefined) {
      if (this.db.inTransaction) {
        try {
          this.rollback.run();
        } catch {
          // The transaction is gone either way; the error below is the one to report.
        }
      }
      this.tx.abort();
      this.failAll(batch, toBrokerError(fatal.error, fatal.what));
      return;
    }
    const notes = this.tx.takeNotes();
    for (let i = 0; i < batch.length; i++) {
      const op = batch[i]!;
      if (failed[i] === true) op.reject(failures[i]);
      else op.resolve(results[i]);
    }
    if (notes.length > 0) this.onCommit(notes);
  }

  private failAll(batch: Operation[], error: Error): void {
    for (const op of batch) op.reject(error);
  }
}
