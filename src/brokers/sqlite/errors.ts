import { BotqueueError, ErrorCodes } from '../../core/errors.js';

/**
 * SQLite result codes after which the same call can succeed later: the file is locked by
 * another process past busy_timeout, the disk is full, or an I/O call failed.
 */
const TRANSIENT = /^SQLITE_(BUSY|LOCKED|IOERR|FULL|CANTOPEN|PROTOCOL|NOMEM|READONLY_DBMOVED)/;

function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** True when `error` was thrown by SQLite (it has a SQLITE_* code). */
export function isSqliteError(error: unknown): boolean {
  return sqliteCode(error) !== undefined;
}

/**
 * Wraps what SQLite threw into BOTQUEUE_BROKER_UNAVAILABLE (retriable when it can pass);
 * botqueue's own errors go through unchanged so their codes reach the caller.
 */
export function toBrokerError(error: unknown, what: string): Error {
  if (error instanceof BotqueueError) return error;
  const code = sqliteCode(error);
  const text = error instanceof Error ? error.message : String(error);
  return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `sqlite broker could not ${what}: ${text}${code === undefined ? '' : ` (${code})`}`, {
    retriable: code === undefined ? false : TRANSIENT.test(code),
    cause: error,
    details: code === undefined ? undefined : { sqliteCode: code },
  });
}

export function closedError(): BotqueueError {
  return new BotqueueError(ErrorCodes.CLOSED, 'the sqlite broker is closed; open a new one with open(url) to go on');
}

/** The topic or group a call names was never created on this file. */
export function unknownTopic(topic: string): BotqueueError {
  return new BotqueueError(ErrorCodes.TOPIC_NOT_FOUND, `topic "${topic}" does not exist; create it with ensureTopic first`, { details: { topic } });
}

export function unknownGroup(topic: string, group: string): BotqueueError {
  return new BotqueueError(ErrorCodes.GROUP_NOT_FOUND, `group "${group}" is not subscribed to topic "${topic}"; call ensureGroup first`, {
    details: { topic, group },
  });
}
