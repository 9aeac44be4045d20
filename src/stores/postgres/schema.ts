import { BotqueueError, ErrorCodes } from '../../core/errors.js';

/** Lower-case names only, so the quoted name is the one an operator types unquoted in psql. */
const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** Checks the schema name and returns it quoted for SQL (the name can only hold safe characters). */
export function quoteSchema(schema: string): string {
  if (typeof schema !== 'string' || !SCHEMA_NAME.test(schema)) {
    throw new BotqueueError(
      ErrorCodes.INVALID_OPTION,
      `the PostgreSQL store's schema must match ${String(SCHEMA_NAME)} (lower-case letters, digits and _, at most 63), got ${JSON.stringify(schema)}`,
      { details: { option: 'schema' } },
    );
  }
  return `"${schema}"`;
}

/**
 * The tables of the shared store, every one inside the schema `s` (already quoted). Every
 * time is epoch ms in a BIGINT. Every statement is idempotent: several processes run them at
 * first open, one after the other under an advisory lock.
 */
export function schemaStatements(s: string): string[] {
  return [
    `CREATE SCHEMA IF NOT EXISTS ${s}`,
    `CREATE TABLE IF NOT EXISTS ${s}.topics (
       name TEXT PRIMARY KEY,
       partitions INTEGER NOT NULL,
       dedup_window_ms BIGINT NOT NULL,
       created_at BIGINT NOT NULL
     )`,
    // control_version grows when an operator redrives or purges a parked message of the group.
    `CREATE TABLE IF NOT EXISTS ${s}.groups (
       topic TEXT NOT NULL REFERENCES ${s}.topics (name),
       name TEXT NOT NULL,
       control_version BIGINT NOT NULL DEFAULT 0,
       order_violations BIGINT NOT NULL DEFAULT 0,
       created_at BIGINT NOT NULL,
       PRIMARY KEY (topic, name)
     )`,
    `CREATE TABLE IF NOT EXISTS ${s}.members (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       member TEXT NOT NULL,
       expires_at BIGINT NOT NULL,
       PRIMARY KEY (topic, grp, member)
     )`,
    // One row per partition of every group, created with the group: coordinate only updates.
    `CREATE TABLE IF NOT EXISTS ${s}.leases (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       partition INTEGER NOT NULL,
       owner TEXT,
       fence BIGINT NOT NULL DEFAULT 0,
       lease_until BIGINT NOT NULL DEFAULT 0,
       in_flight INTEGER NOT NULL DEFAULT 0,
       held_count INTEGER NOT NULL DEFAULT 0,
       held_oldest BIGINT NOT NULL DEFAULT 0,
       PRIMARY KEY (topic, grp, partition)
     )`,
    `CREATE TABLE IF NOT EXISTS ${s}.dedup (
       topic TEXT NOT NULL,
       id TEXT NOT NULL,
       partition INTEGER NOT NULL,
       seq BIGINT NOT NULL,
       state TEXT NOT NULL CHECK (state IN ('reserved', 'confirmed')),
       reserved_at BIGINT NOT NULL,
       expires_at BIGINT NOT NULL,
       PRIMARY KEY (topic, id)
     )`,
    `CREATE INDEX IF NOT EXISTS dedup_expires_at ON ${s}.dedup (expires_at)`,
    `CREATE TABLE IF NOT EXISTS ${s}.effects (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       message_id TEXT NOT NULL,
       name TEXT NOT NULL,
       result TEXT,
       expires_at BIGINT NOT NULL,
       PRIMARY KEY (topic, grp, message_id, name)
     )`,
    `CREATE INDEX IF NOT EXISTS effects_expires_at ON ${s}.effects (expires_at)`,
    // expires_at is NULL while the message is parked or skipped: an operator's decision waits
    // for as long as it takes, and only clearMessageStates removes it.
    `CREATE TABLE IF NOT EXISTS ${s}.message_states (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       id TEXT NOT NULL,
       attempts INTEGER NOT NULL DEFAULT 0,
       first_failed_at BIGINT,
       not_before BIGINT NOT NULL DEFAULT 0,
       parked BOOLEAN NOT NULL DEFAULT FALSE,
       skip BOOLEAN NOT NULL DEFAULT FALSE,
       expires_at BIGINT,
       PRIMARY KEY (topic, grp, id)
     )`,
    `CREATE INDEX IF NOT EXISTS message_states_expires_at ON ${s}.message_states (expires_at)`,
    // error is the ErrorInfo as JSON; error_message is its message alone, for errorContains.
    `CREATE TABLE IF NOT EXISTS ${s}.dead_letters (
       dlq_id BIGSERIAL PRIMARY KEY,
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       partition INTEGER NOT NULL,
       seq BIGINT NOT NULL,
       id TEXT NOT NULL,
       key TEXT,
       payload TEXT NOT NULL,
       headers TEXT,
       published_at BIGINT NOT NULL,
       attempts INTEGER NOT NULL,
       first_failed_at BIGINT NOT NULL,
       last_failed_at BIGINT NOT NULL,
       error TEXT NOT NULL,
       error_message TEXT NOT NULL,
       parked BOOLEAN NOT NULL
     )`,
    `CREATE INDEX IF NOT EXISTS dead_letters_topic_grp ON ${s}.dead_letters (topic, grp, dlq_id)`,
    `CREATE INDEX IF NOT EXISTS dead_letters_key ON ${s}.dead_letters (key) WHERE key IS NOT NULL`,
    // A group created while messages waited unclaimed is "backfilling" until it has a copy of
    // each; `backfill_copied` names the ids copied so far, so a copier that died is carried on
    // without copying twice (src/brokers/rabbitmq/backfill.ts). Groups of earlier versions: false.
    `ALTER TABLE ${s}.groups ADD COLUMN IF NOT EXISTS backfill_pending BOOLEAN NOT NULL DEFAULT false`,
    // RetryLater deferrals reported by the group's members (stats).
    `ALTER TABLE ${s}.groups ADD COLUMN IF NOT EXISTS deferrals BIGINT NOT NULL DEFAULT 0`,
    // When a member of the group last sent a heartbeat (stats' idle flag); kept after members leave.
    `ALTER TABLE ${s}.groups ADD COLUMN IF NOT EXISTS last_seen_at BIGINT`,
    `CREATE TABLE IF NOT EXISTS ${s}.backfill_copied (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       id TEXT NOT NULL,
       PRIMARY KEY (topic, grp, id)
     )`,
    // The batches of a backfill, written before their copies are published and marked
    // `recorded` with the ledger. A copy carries its batch. A copy of a batch that is not
    // recorded, or that a copier made after another died mid-batch (not `clean`), may have a
    // twin, so a consumer claims it in `backfill_claims` first: the first copy of an id to claim
    // it is handled, any other is dropped (src/brokers/rabbitmq/copy-claims.ts).
    `CREATE TABLE IF NOT EXISTS ${s}.backfill_batches (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       batch TEXT NOT NULL,
       clean BOOLEAN NOT NULL,
       recorded BOOLEAN NOT NULL,
       started_at BIGINT NOT NULL,
       PRIMARY KEY (topic, grp, batch)
     )`,
    `CREATE TABLE IF NOT EXISTS ${s}.backfill_claims (
       topic TEXT NOT NULL,
       grp TEXT NOT NULL,
       id TEXT NOT NULL,
       batch TEXT NOT NULL,
       claimed_at BIGINT NOT NULL,
       PRIMARY KEY (topic, grp, id)
     )`,
  ];
}
