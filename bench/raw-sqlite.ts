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
import Database from 'better-sqlite3';
import { tempDb } from './lib.js';

const SCHEMA = 'CREATE TABLE queue (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, payload TEXT NOT NULL)';

function openRaw(path: string): Database.Database {
  const db = new Database(path);
  const mode = db.pragma('journal_mode = WAL', { simple: true });
  if (mode !== 'wal') throw new Error(`raw bench: could not switch to WAL (got ${String(mode)})`);
  db.pragma('synchronous = FULL');
  db.exec(SCHEMA);
  return db;
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
