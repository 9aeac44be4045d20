/**
 * What the PostgreSQL store throws: pg's errors mapped to BOTQUEUE_BROKER_UNAVAILABLE
 * (retriable when the server was out of reach or a transaction kept conflicting), and the
 * store's own errors (closed, invalid arguments).
 */
import { BotqueueError, ErrorCodes } from '../../core/errors.js';

export function closedError(): BotqueueError {
  return new BotqueueError(ErrorCodes.CLOSED, 'the PostgreSQL store is closed; open a new one to go on');
}

export function invalid(where: string, message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: ${message}`, { details: { option } });
}

/** Node socket errors and PostgreSQL codes (57P01-03 shutdown, class 08 connection) meaning the server is out of reach. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', '57P01', '57P02', '57P03']);
/** pg reports a dropped or never-made connection with these messages and no code. */
const UNREACHABLE_MESSAGE = /connection terminated|timeout exceeded when trying to connect|connection timeout|client has encountered a connection error/i;
/** Serialization failure and deadlock: the transaction can simply run again. */
const CONFLICT_CODES = new Set(['40001', '40P01']);

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isConflict(error: unknown): boolean {
  const code = errorCode(error);
  return code !== undefined && CONFLICT_CODES.has(code);
}

function isUnreachable(error: unknown): boolean {
  const code = errorCode(error);
  if (code !== undefined && (UNREACHABLE_CODES.has(code) || code.startsWith('08'))) return true;
  if (error instanceof AggregateError) return error.errors.some(isUnreachable);
  return error instanceof Error && UNREACHABLE_MESSAGE.test(error.message);
}

/**
 * Wraps what pg threw into BOTQUEUE_BROKER_UNAVAILABLE: retriable when the server was out of
 * reach or the transaction kept conflicting; botqueue's own errors go through unchanged.
 */
export function toStoreError(error: unknown, what: string): Error {
  if (error instanceof BotqueueError) return error;
  const code = errorCode(error);
  const text = error instanceof Error && error.message !== '' ? error.message : String(error);
  const suffix = code === undefined ? '' : ` (${code})`;
  const details = code === undefined ? undefined : { pgCode: code };
  if (isUnreachable(error)) {
    return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `PostgreSQL store could not ${what}: ${text}${suffix} — is PostgreSQL running?`, {
      retriable: true,
      cause: error,
      details,
    });
  }
  const retriable = isConflict(error) || (code !== undefined && code.startsWith('53'));
  return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `PostgreSQL store could not ${what}: ${text}${suffix}`, { retriable, cause: error, details });
}
