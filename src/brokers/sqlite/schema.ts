import Database from 'better-sqlite3';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { ResolvedSqliteOptions } from './options.js';

/**
 * The whole broker state lives in this file, so that the gateway and any number of worker
 * processes can share it. Why it differs from the plain names-everywhere layout:
 *
 * - Topics and groups get small integer ids (`tid`, `gid`). The hot tables (pending,
 *   assignments, members, effects, dedup) are keyed by them, which keeps their B-trees small
 *   and their comparisons cheap. Ids never change and nothing is ever deleted from `topics`
 *   or `groups`, so a process may cache name -> id (and the partition count).
 * - `messages.seq` is the rowid, so seq is global and increasing in commit order, hence
 *   per partition too. SQLite would reuse the highest rowid after it is deleted (all
 *   messages acked), so seqs come from `meta.next_seq`, read and written once per
 *   group-commit transaction instead of paying for AUTOINCREMENT on every insert.
 * - `messages.refs` counts the pending rows (one per subscribed group) still pointing at the
 *   message; the message row is deleted when it reaches zero. This is "delete the message
 *   when no group still has it pending" without a second index on pending(seq). A message
 *   published while the topic has no group keeps refs = 0 and stays until a group arrives
 *   (that group then receives it).
 * - `messages.not_before` keeps the publisher's delay so a group created later gets it too.
 * - dead_letters keeps topic and group names (it is what operators filter on and it
 *   outlives nothing else), plus `error_message` next to the error JSON so filtering by error
 *   text needs no JSON parsing.
 * - `effects` is keyed by topic id and group *name*: a step may be recorded for a group
 *   before (or without) its subscription, as the port allows.
 * - `dedup` and `effects` have an index on `expires_at` so housekeeping deletes expired
 *   rows in small batches without scanning the table (inserts land at the index's end).
 * - Records expire at `expires_at`: alive while now < expires_at, the same boundary for
 *   dedup records, effects, member heartbeats and leases.
 * - `dead_letters.dlq_id` is AUTOINCREMENT: an id an operator saw is never given to another
 *   dead letter after a purge.
 * - `backlog_counts`, `topic_counts` and `dead_letter_counts` hold the row counts of pending
 *   (per group and partition), messages (per topic) and dead letters (per topic and group),
 *   so stats (and a Prometheus scrape) cost a lookup per partition, not a count over a
 *   backlog of millions of rows. The code keeps them (counts.ts: summed per transaction and
 *   written once per key before COMMIT), not triggers: version 3 had per-row triggers, which
 *   cost 10-30 % of throughput.
 */
const SCHEMA_VERSION = 4;

const DDL = `
CREATE TABLE IF NOT EXISTS meta (
  name TEXT PRIMARY KEY,
  value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('next_seq', 1);

CREATE TABLE IF NOT EXISTS topics (
  tid INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  partitions INTEGER NOT NULL,
  dedup_window_ms INTEGER NOT NULL,
  created_at INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS groups (
  gid INTEGER PRIMARY KEY,
  tid INTEGER NOT NULL,
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  control_version INTEGER NOT NULL DEFAULT 0,
  order_violations INTEGER NOT NULL DEFAULT 0,
  deferrals INTEGER NOT NULL DEFAULT 0,
  last_seen_at INTEGER,
  UNIQUE (tid, name)
);

-- Small columns first: they stay in the row's first page when the payload overflows.
CREATE TABLE IF NOT EXISTS messages (
  seq INTEGER PRIMARY KEY,
  tid INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  refs INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  published_at INTEGER NOT NULL,
  id TEXT NOT NULL,
  key TEXT,
  headers TEXT,
  payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_topic ON messages (tid);

CREATE TABLE IF NOT EXISTS pending (
  gid INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  not_before INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at INTEGER,
  parked INTEGER NOT NULL,
  PRIMARY KEY (gid, partition, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_parked ON pending (gid) WHERE parked = 1;

CREATE TABLE IF NOT EXISTS dedup (
  tid INTEGER NOT NULL,
  id TEXT NOT NULL,
  partition INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (tid, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dedup_expiry ON dedup (expires_at);

CREATE TABLE IF NOT EXISTS assignments (
  gid INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  owner TEXT,
  fence INTEGER NOT NULL,
  lease_until INTEGER NOT NULL,
  in_flight INTEGER NOT NULL,
  PRIMARY KEY (gid, partition)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS members (
  gid INTEGER NOT NULL,
  member TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (gid, member)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
  dlq_id INTEGER PRIMARY KEY AUTOINCREMENT,
  topic TEXT NOT NULL,
  grp TEXT NOT NULL,
  partition INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  id TEXT NOT NULL,
  key TEXT,
  published_at INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  first_failed_at INTEGER NOT NULL,
  last_failed_at INTEGER NOT NULL,
  parked INTEGER NOT NULL,
  error_message TEXT NOT NULL,
  error TEXT NOT NULL,
  headers TEXT,
  payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_by_group ON dead_letters (topic, grp);
CREATE INDEX IF NOT EXISTS dead_letters_by_key ON dead_letters (key) WHERE key IS NOT NULL;

CREATE TABLE IF NOT EXISTS effects (
  tid INTEGER NOT NULL,
  grp TEXT NOT NULL,
  message_id TEXT NOT NULL,
  name TEXT NOT NULL,
  result TEXT,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (tid, grp, message_id, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS effects_expiry ON effects (expires_at);

CREATE TABLE IF NOT EXISTS backlog_counts (
  gid INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (gid, partition)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS topic_counts (
  tid INTEGER PRIMARY KEY,
  n INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS dead_letter_counts (
  topic TEXT NOT NULL,
  grp TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (topic, grp)
) WITHOUT ROWID;
`;

/** Version 3 → 4: the code keeps the counts now. */
const DROP_TRIGGERS = `
DROP TRIGGER IF EXISTS pending_counted;
DROP TRIGGER IF EXISTS pending_uncounted;
DROP TRIGGER IF EXISTS message_counted;
DROP TRIGGER IF EXISTS message_uncounted;
DROP TRIGGER IF EXISTS dead_letter_counted;
DROP TRIGGER IF EXISTS dead_letter_uncounted;
`;

/**
 * Version 1, 2 or 3 → 4: the counts as they stand, counted once (version 3's triggers kept them
 * exact, but counting again costs one scan at the upgrade and trusts nothing).
 */
const COUNT_EXISTING = `
DELETE FROM backlog_counts;
DELETE FROM topic_counts;
DELETE FROM dead_letter_counts;
INSERT OR REPLACE INTO backlog_counts (gid, partition, n) SELECT gid, partition, count(*) FROM pending GROUP BY gid, partition;
INSERT OR REPLACE INTO topic_counts (tid, n) SELECT tid, count(*) FROM messages GROUP BY tid;
INSERT OR REPLACE INTO dead_letter_counts (topic, grp, n) SELECT topic, grp, count(*) FROM dead_letters GROUP BY topic, grp;
`;

/** Version 1 → 2: RetryLater deferrals counted per group. */
const UPGRADE_FROM_1 = 'ALTER TABLE groups ADD COLUMN deferrals INTEGER NOT NULL DEFAULT 0';
/** Version 1, 2 or 3 → 4: when a member of the group last sent a heartbeat (stats' idle flag). */
const UPGRADE_TO_4 = 'ALTER TABLE groups ADD COLUMN last_seen_at INTEGER';

function migrate(db: Database.Database): void {
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version === SCHEMA_VERSION) return;
  if (version > SCHEMA_VERSION) {
    throw new BotqueueError(
      ErrorCodes.BROKER_UNAVAILABLE,
      `the sqlite file has schema version ${version}, newer than this botqueue understands (${SCHEMA_VERSION}); upgrade botqueue`,
    );
  }
  // BEGIN IMMEDIATE: two processes opening a new file at once create the tables one after the other.
  db.exec('BEGIN IMMEDIATE');
  try {
    // Read again under the lock: another process may have migrated meanwhile.
    const current = db.pragma('user_version', { simple: true }) as number;
    if (current === SCHEMA_VERSION) {
      db.exec('COMMIT');
      return;
    }
    if (current === 1) db.exec(UPGRADE_FROM_1);
    if (current !== 0 && current < 4) db.exec(UPGRADE_TO_4);
    db.exec(DROP_TRIGGERS);
    db.exec(DDL);
    if (current !== 0) db.exec(COUNT_EXISTING);
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    db.exec('COMMIT');
  } catch (error) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw error;
  }
}

/** `PRAGMA synchronous` levels as SQLite reports them. */
const SYNCHRONOUS_LEVELS = { NORMAL: 1, FULL: 2 } as const;

/** Opens (creating when missing) the file with botqueue's settings and schema. */
export function openDatabase(path: string, options: ResolvedSqliteOptions): Database.Database {
  const db = new Database(path, { timeout: options.busyTimeoutMs });
  try {
    db.pragma(`busy_timeout = ${options.busyTimeoutMs}`);
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal' && path !== ':memory:') {
      throw new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `could not switch ${path} to WAL mode (got ${String(mode)}); is it on a network file system?`);
    }
    // FULL syncs the WAL at every commit, so a resolved publish survives a power loss.
    // NORMAL (opt-in) syncs only at checkpoints: it may lose the last commits on a power loss,
    // but never on a process crash or kill -9, since the WAL is already in the OS.
    db.pragma(`synchronous = ${options.synchronous}`);
    // Read back: better-sqlite3 is built with SQLITE_DEFAULT_WAL_SYNCHRONOUS=1 (NORMAL), so a
    // setting that silently did not apply would weaken "stored before acknowledged" unseen.
    const level = Number(db.pragma('synchronous', { simple: true }));
    if (level !== SYNCHRONOUS_LEVELS[options.synchronous]) {
      throw new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `SQLite did not apply synchronous=${options.synchronous} on ${path} (it reports level ${level})`);
    }
    db.pragma('foreign_keys = OFF');
    db.pragma('temp_store = MEMORY');
    db.pragma('cache_size = -32768');
    migrate(db);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}
