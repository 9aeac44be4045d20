import { BotqueueError, ErrorCodes, type ErrorCode } from '../core/errors.js';

/** Exit code of a command that failed (the broker refused, a check failed, nothing found...). */
export const EXIT_FAILURE = 1;
/** Exit code of a command line botqueue could not understand (unknown command or flag, bad value). */
export const EXIT_USAGE = 2;

/**
 * An error the CLI reports as one line: `botqueue: <message> — <hint>`. `hint` says what to
 * do next; `exitCode` is 2 for a command line botqueue cannot understand, 1 otherwise.
 */
export class CliError extends Error {
  readonly hint: string;
  readonly exitCode: number;

  constructor(message: string, hint: string, options: { exitCode?: number; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CliError';
    this.hint = hint;
    this.exitCode = options.exitCode ?? EXIT_FAILURE;
  }
}

/** A command line that cannot be run as written; the hint points at the right `--help`. */
export function usageError(message: string, command?: string): CliError {
  const hint = command === undefined ? 'run botqueue --help' : `run botqueue ${command} --help (or botqueue --help for every command)`;
  return new CliError(message, hint, { exitCode: EXIT_USAGE });
}

/**
 * What to do after a library error, by its stable code (docs/errors.md says more). Codes a
 * command never meets (those only the HTTP API answers, or only a handler sees) have none and
 * get DEFAULT_HINT.
 */
const HINTS: Partial<Record<ErrorCode, string>> = {
  [ErrorCodes.INVALID_OPTION]: 'check the flags and the config file (botqueue <command> --help)',
  [ErrorCodes.INVALID_MESSAGE]: 'fix the message and publish it again (botqueue publish --help)',
  [ErrorCodes.MESSAGE_TOO_LARGE]: 'make the payload smaller or raise maxMessageBytes',
  [ErrorCodes.UNSUPPORTED_URL]: 'pass --url or set BOTQUEUE_URL to sqlite:<path> or memory:',
  [ErrorCodes.TOPIC_NOT_FOUND]: 'see the topics with botqueue topics list, or create it with botqueue topics create <name>',
  [ErrorCodes.TOPIC_MISMATCH]: 'the partition count is fixed at creation: use the existing one (botqueue topics list) or another topic name',
  [ErrorCodes.GROUP_NOT_FOUND]: 'see the groups of the topic with botqueue stats <topic>',
  [ErrorCodes.BROKER_UNAVAILABLE]: 'check the broker URL and the data directory with botqueue doctor',
  [ErrorCodes.CLOSED]: 'run the command again',
  [ErrorCodes.LEASE_LOST]: 'run the command again',
  [ErrorCodes.PERMANENT_FAILURE]: 'see botqueue dlq summary',
  [ErrorCodes.SHUTDOWN_TIMEOUT]: 'raise shutdownTimeoutMs or make handlers finish sooner',
  [ErrorCodes.DRIVER_MISSING]: 'install the driver the backend names (npm install), then run botqueue doctor',
  [ErrorCodes.NOT_FOUND]: 'list what exists with botqueue dlq list',
  [ErrorCodes.STORE_REQUIRED]: 'set BOTQUEUE_STORE_URL=postgres://user@host:5432/db (the shared store every worker sees)',
};

const DEFAULT_HINT = 'see docs/errors.md for this code, or run botqueue doctor to check the set-up';

/** Collapses whitespace and newlines so that a message fits the one-line contract. */
export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** The single stderr line for any thrown value. */
export function formatError(error: unknown): string {
  if (error instanceof CliError) return `botqueue: ${oneLine(error.message)} — ${error.hint}`;
  if (error instanceof BotqueueError) {
    const retry = error.retriable && error.code !== ErrorCodes.BROKER_UNAVAILABLE ? 'try again, or ' : error.retriable ? 'try again; if it persists, ' : '';
    return `botqueue: ${oneLine(error.message)} (${error.code}) — ${retry}${HINTS[error.code] ?? DEFAULT_HINT}`;
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  const suffix = typeof code === 'string' ? ` (${code})` : '';
  return `botqueue: ${oneLine(message)}${suffix} — run it again with --debug for the stack, or botqueue doctor to check the set-up`;
}

/** The exit code for a thrown value. */
export function exitCodeOf(error: unknown): number {
  return error instanceof CliError ? error.exitCode : EXIT_FAILURE;
}

/** Stack and causes, for `--debug`. */
export function debugDetails(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && depth < 8; depth++) {
    const text = current instanceof Error ? (current.stack ?? `${current.name}: ${current.message}`) : describeValue(current);
    parts.push(depth === 0 ? text : `caused by: ${text}`);
    current = current instanceof Error ? current.cause : undefined;
  }
  return parts.join('\n');
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value) ?? typeof value;
  } catch {
    return typeof value;
  }
}
