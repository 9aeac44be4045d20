/**
 * The raw limit: a minimal queue written directly on better-sqlite3 with the same durability
 * settings as botqueue's default (journal_mode WAL, synchronous FULL), on the same disk.
 *
 * - loop: insert a batch of 1,000 rows in one transaction; then, in one transaction, read the
 *   head of the queue (SELECT ... ORDER BY seq LIMIT 1000), parse each payload for a no-op
 *   handler and delete each row by its primary key (one ack per message). Two durable commits
 *   per 1,000 messages.
 * - single: one INSERT per transaction (autocommit), i.e. one WAL sync per message.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDb } from './lib.js';

const SCHEMA = 'CREATE TABLE queue (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, payload TEXT NOT NULL)';

function openRaw(path: string): Database.Database {
  const db = new Database(path);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') throw new Error(`raw bench: could not switch to WAL (got ${String(mode)})`);
  db.pragma('synchronous = FULL');
  assertFullSync(db, 'raw bench');
  db.exec(SCHEMA);
  return db;
}

/** Every raw loop reads `synchronous` back: 2 is FULL (better-sqlite3 defaults WAL databases to NORMAL). */
function assertFullSync(db: Database.Database, what: string): void {
  const level = db.pragma('synchronous', { simple: true });
  if (level !== 2) throw new Error(`${what}: synchronous reads back ${String(level)}, not 2 (FULL)`);
}

/** Messages per second through insert-batch / read+delete-batch, `total` messages. */
export function rawLoop(dir: string, total: number, batch: number, payloadOf: (i: number) => { key: string; payload: unknown }): number {
  const file = tempDb(dir, 'raw-loop');
  const db = openRaw(file.path);
  try {
    const insert = db.prepare<[string, string]>('INSERT INTO queue (key, payload) VALUES (?, ?)');
    // The head of the table: what was read is deleted in the same transaction.
    const read = db.prepare<[number], [number, string, string]>('SELECT seq, key, payload FROM queue ORDER BY seq LIMIT ?').raw();
    const remove = db.prepare<[number]>('DELETE FROM queue WHERE seq = ?');
    const produce = db.transaction((rows: { key: string; payload: string }[]) => {
      for (const row of rows) insert.run(row.key, row.payload);
    });
    // Like botqueue's worker, hand each message's parsed payload to a (no-op) handler before its ack.
    let handled = 0;
    const handler = (payload: unknown): void => {
      if (payload !== null) handled++;
    };
    const consume = db.transaction((limit: number): number => {
      const rows = read.all(limit);
      for (const row of rows) {
        handler(JSON.parse(row[2]));
        remove.run(row[0]);
      }
      return rows.length;
    });
    let consumed = 0;
    const started = performance.now();
    for (let i = 0; i < total; i += batch) {
      const count = Math.min(batch, total - i);
      const rows = new Array<{ key: string; payload: string }>(count);
      for (let j = 0; j < count; j++) {
        const m = payloadOf(i + j);
        rows[j] = { key: m.key, payload: JSON.stringify(m.payload) };
      }
      produce(rows);
      consumed += consume(count);
    }
    const elapsed = (performance.now() - started) / 1000;
    if (consumed !== total || handled !== total) throw new Error(`raw loop consumed ${consumed} and handled ${handled} of ${total}`);
    return total / elapsed;
  } finally {
    db.close();
    file.dispose();
  }
}

/** Commits per second with one INSERT transaction per message, for `durationMs`. */
export function rawSingleCommits(dir: string, durationMs: number, payloadOf: (i: number) => { key: string; payload: unknown }): number {
  const file = tempDb(dir, 'raw-single');
  const db = openRaw(file.path);
  try {
    const insert = db.prepare<[string, string]>('INSERT INTO queue (key, payload) VALUES (?, ?)');
    let count = 0;
    const started = performance.now();
    let now = started;
    while (now - started < durationMs) {
      const m = payloadOf(count);
      insert.run(m.key, JSON.stringify(m.payload));
      count++;
      now = performance.now();
    }
    return count / ((now - started) / 1000);
  } finally {
    db.close();
    file.dispose();
  }
}

/** Raw loops with the same durability settings and the schema given. */
function openWith(path: string, schema: string): Database.Database {
  const db = new Database(path);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') throw new Error(`raw bench: could not switch to WAL (got ${String(mode)})`);
  db.pragma('synchronous = FULL');
  assertFullSync(db, 'raw bench');
  db.exec(schema);
  return db;
}

/** botqueue's own message and pending tables (src/brokers/sqlite/schema.ts), one group. */
const BOTQUEUE_SCHEMA = `
CREATE TABLE messages (seq INTEGER PRIMARY KEY, tid INTEGER NOT NULL, partition INTEGER NOT NULL, refs INTEGER NOT NULL,
  not_before INTEGER NOT NULL, published_at INTEGER NOT NULL, id TEXT NOT NULL, key TEXT, headers TEXT, payload TEXT NOT NULL);
CREATE INDEX messages_by_topic ON messages (tid);
CREATE TABLE pending (gid INTEGER NOT NULL, partition INTEGER NOT NULL, seq INTEGER NOT NULL, not_before INTEGER NOT NULL,
  attempts INTEGER NOT NULL, first_failed_at INTEGER, parked INTEGER NOT NULL, PRIMARY KEY (gid, partition, seq)) WITHOUT ROWID;`;

/**
 * The raw loop on botqueue's own schema: a publish transaction of `batch` messages writes each
 * message row and its pending row (partition = seq mod `partitions`); the consumer fetches
 * `fetchBatch` pending rows per partition joined to their messages and acks in transactions of
 * `ackBatch` (botqueue's group commit gathers about `concurrency` acks per commit), deleting the
 * pending row and the message (its last reference). No key order, leases or fences: still an upper bound.
 */
export function rawBotqueueSchemaLoop(dir: string, total: number, batch: number, partitions: number, fetchBatch: number, ackBatch: number, payloadOf: (i: number) => { key: string; payload: unknown }): number {
  const file = tempDb(dir, 'raw-schema');
  const db = openWith(file.path, BOTQUEUE_SCHEMA);
  try {
    const insertMessage = db.prepare('INSERT INTO messages (seq, tid, partition, refs, not_before, published_at, id, key, headers, payload) VALUES (?, 1, ?, 1, 0, ?, ?, ?, NULL, ?)');
    const insertPending = db.prepare('INSERT INTO pending (gid, partition, seq, not_before, attempts, first_failed_at, parked) VALUES (1, ?, ?, 0, 0, NULL, 0)');
    const fetch = db
      .prepare<[number, number], [number, string | null, string]>(
        'SELECT p.seq, m.key, m.payload FROM pending p JOIN messages m ON m.seq = p.seq WHERE p.gid = 1 AND p.partition = ? ORDER BY p.seq LIMIT ?',
      )
      .raw();
    const deletePending = db.prepare('DELETE FROM pending WHERE gid = 1 AND partition = ? AND seq = ?');
    const deleteMessage = db.prepare('DELETE FROM messages WHERE seq = ?');
    let seq = 0;
    const produce = db.transaction((count: number, from: number) => {
      const now = Date.now();
      for (let j = 0; j < count; j++) {
        const m = payloadOf(from + j);
        seq++;
        insertMessage.run(seq, seq % partitions, now, `id-${seq}`, m.key, JSON.stringify(m.payload));
        insertPending.run(seq % partitions, seq);
      }
    });
    const ack = db.transaction((acks: Array<[number, number]>) => {
      for (const [partition, s] of acks) {
        deletePending.run(partition, s);
        deleteMessage.run(s);
      }
    });
    let handled = 0;
    const started = performance.now();
    for (let i = 0; i < total; i += batch) {
      const count = Math.min(batch, total - i);
      produce(count, i);
      for (let partition = 0; partition < partitions; partition++) {
        for (;;) {
          const rows = fetch.all(partition, fetchBatch);
          if (rows.length === 0) break;
          let acks: Array<[number, number]> = [];
          for (const row of rows) {
            if (JSON.parse(row[2]) !== null) handled++;
            acks.push([partition, row[0]]);
            if (acks.length === ackBatch) {
              ack(acks);
              acks = [];
            }
          }
          if (acks.length > 0) ack(acks);
        }
      }
    }
    const elapsed = (performance.now() - started) / 1000;
    if (handled !== total) throw new Error(`raw schema loop handled ${handled} of ${total}`);
    return total / elapsed;
  } finally {
    db.close();
    file.dispose();
  }
}

/**
 * The queue a user would write instead: a claim-based ordered queue. Producers insert in
 * transactions of `batch`; a consumer claims, in one transaction, the head message of up to
 * `claimBatch` keys that have nothing in flight (lease 30 s), handles them and deletes each
 * claimed row on ack, `ackBatch` per transaction. Per-key order holds because a key's next message
 * can be claimed only once its head is deleted.
 */
export function rawClaimQueueLoop(dir: string, total: number, batch: number, claimBatch: number, ackBatch: number, payloadOf: (i: number) => { key: string; payload: unknown }): number {
  const file = tempDb(dir, 'raw-claim');
  const db = openWith(
    file.path,
    `CREATE TABLE jobs (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, payload TEXT NOT NULL, claimed_until INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX jobs_by_key ON jobs (key, seq);`,
  );
  try {
    const insert = db.prepare<[string, string]>('INSERT INTO jobs (key, payload) VALUES (?, ?)');
    // The head of each key, when that head is not claimed (a claimed head = the key is in flight).
    const heads = db
      .prepare<[number, number], [number, string, string]>(
        `SELECT j.seq, j.key, j.payload FROM jobs j
         WHERE j.seq = (SELECT min(seq) FROM jobs h WHERE h.key = j.key) AND j.claimed_until < ?
         ORDER BY j.seq LIMIT ?`,
      )
      .raw();
    const claim = db.prepare<[number, number]>('UPDATE jobs SET claimed_until = ? WHERE seq = ?');
    const remove = db.prepare<[number]>('DELETE FROM jobs WHERE seq = ?');
    const produce = db.transaction((rows: Array<{ key: string; payload: string }>) => {
      for (const row of rows) insert.run(row.key, row.payload);
    });
    const claimHeads = db.transaction((now: number): Array<[number, string, string]> => {
      const rows = heads.all(now, claimBatch);
      for (const row of rows) claim.run(now + 30_000, row[0]);
      return rows;
    });
    const ack = db.transaction((seqs: number[]) => {
      for (const s of seqs) remove.run(s);
    });
    let handled = 0;
    const started = performance.now();
    for (let i = 0; i < total; i += batch) {
      const count = Math.min(batch, total - i);
      const rows = new Array<{ key: string; payload: string }>(count);
      for (let j = 0; j < count; j++) {
        const m = payloadOf(i + j);
        rows[j] = { key: m.key, payload: JSON.stringify(m.payload) };
      }
      produce(rows);
      for (;;) {
        const claimed = claimHeads(Date.now());
        if (claimed.length === 0) break;
        let acks: number[] = [];
        for (const row of claimed) {
          if (JSON.parse(row[2]) !== null) handled++;
          acks.push(row[0]);
          if (acks.length === ackBatch) {
            ack(acks);
            acks = [];
          }
        }
        if (acks.length > 0) ack(acks);
      }
    }
    const elapsed = (performance.now() - started) / 1000;
    if (handled !== total) throw new Error(`raw claim queue handled ${handled} of ${total}`);
    return total / elapsed;
  } finally {
    db.close();
    file.dispose();
  }
}

/** Rows per second when each transaction commits `perTx` single-row INSERTs (the raw twin of group commit), for `durationMs`. */
export function rawGroupCommits(dir: string, durationMs: number, perTx: number, payloadOf: (i: number) => { key: string; payload: unknown }): number {
  const file = tempDb(dir, 'raw-group');
  const db = openRaw(file.path);
  try {
    const insert = db.prepare<[string, string]>('INSERT INTO queue (key, payload) VALUES (?, ?)');
    const commit = db.transaction((from: number) => {
      for (let j = 0; j < perTx; j++) {
        const m = payloadOf(from + j);
        insert.run(m.key, JSON.stringify(m.payload));
      }
    });
    let count = 0;
    const started = performance.now();
    let now = started;
    while (now - started < durationMs) {
      commit(count);
      count += perTx;
      now = performance.now();
    }
    return count / ((now - started) / 1000);
  } finally {
    db.close();
    file.dispose();
  }
}

/** The disk under `dir`: median latency of a 4 KiB write + fdatasync (ms), and the filesystem type. */
export function diskFacts(dir: string): { fsyncMedianMs: number; fsyncP99Ms: number; filesystem: string } {
  const path = join(dir, `fsync-probe-${process.pid}`);
  const fd = openSync(path, 'w');
  const block = Buffer.alloc(4096, 1);
  const times: number[] = [];
  try {
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      writeSync(fd, block, 0, block.length, (i % 16) * 4096);
      fdatasyncSync(fd);
      times.push(performance.now() - t0);
    }
  } finally {
    closeSync(fd);
    rmSync(path, { force: true });
  }
  times.sort((a, b) => a - b);
  let filesystem = 'unknown';
  try {
    filesystem = execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim();
    const mount = execFileSync('findmnt', ['-n', '-o', 'SOURCE,FSTYPE,TARGET', '-T', dir], { encoding: 'utf8' }).trim();
    filesystem = `${filesystem} (${mount.replace(/\s+/g, ' ')})`;
  } catch {
    // stat/findmnt missing: the type stays unknown.
  }
  return { fsyncMedianMs: times[Math.floor(times.length / 2)]!, fsyncP99Ms: times[Math.floor(times.length * 0.99)]!, filesystem };
}
