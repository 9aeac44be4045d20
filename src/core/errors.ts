/**
 * One error base class for everything botqueue throws. `code` is stable and never reused,
 * `retriable` tells a caller whether trying the same call again can succeed, `cause` keeps
 * the underlying error.
 */
export const ErrorCodes = {
  /** An option is unknown, missing or of the wrong type. */
  INVALID_OPTION: 'BOTQUEUE_INVALID_OPTION',
  /** A message (key, id, payload, headers, delay) is not acceptable. */
  INVALID_MESSAGE: 'BOTQUEUE_INVALID_MESSAGE',
  /** A message is over the configured size limit. */
  MESSAGE_TOO_LARGE: 'BOTQUEUE_MESSAGE_TOO_LARGE',
  /** The connection URL names a scheme botqueue has no backend for. */
  UNSUPPORTED_URL: 'BOTQUEUE_UNSUPPORTED_URL',
  /** The topic does not exist, or exists with other settings. */
  TOPIC_MISMATCH: 'BOTQUEUE_TOPIC_MISMATCH',
  /** The broker failed to store or read; the operation may succeed if tried again. */
  BROKER_UNAVAILABLE: 'BOTQUEUE_BROKER_UNAVAILABLE',
  /** The client, broker or worker was closed. */
  CLOSED: 'BOTQUEUE_CLOSED',
  /** A worker lost the lease of a partition; its settlement was refused (no zombie ack). */
  LEASE_LOST: 'BOTQUEUE_LEASE_LOST',
  /** A handler asked for the message to go straight to the failure policy. */
  PERMANENT_FAILURE: 'BOTQUEUE_PERMANENT_FAILURE',
  /** A shutdown deadline passed with handlers still running. */
  SHUTDOWN_TIMEOUT: 'BOTQUEUE_SHUTDOWN_TIMEOUT',
  /** A driver an optional backend needs is not installed. */
  DRIVER_MISSING: 'BOTQUEUE_DRIVER_MISSING',
  /** A dead letter that was asked for does not exist. */
  NOT_FOUND: 'BOTQUEUE_NOT_FOUND',
  /** A distributed backend was opened without the shared store it needs (e.g. RabbitMQ without PostgreSQL). */
  STORE_REQUIRED: 'BOTQUEUE_STORE_REQUIRED',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

export interface BotqueueErrorOptions {
  retriable?: boolean;
  cause?: unknown;
  details?: Record<string, unknown>;
}

export class BotqueueError extends Error {
  readonly code: ErrorCode;
  readonly retriable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, options: BotqueueErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.details = options.details;
  }
}

/**
 * Throw it from a handler to skip the remaining attempts: the message goes to the topic's
 * failure policy (dead-letter or park-key) at once.
 *
 * @example
 * if (!isValid(msg.payload)) throw new PermanentError('payload has no chat id');
 */
export class PermanentError extends BotqueueError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(ErrorCodes.PERMANENT_FAILURE, message, { retriable: false, cause: options.cause });
  }
}

export function isBotqueueError(error: unknown, code?: ErrorCode): error is BotqueueError {
  return error instanceof BotqueueError && (code === undefined || error.code === code);
}

/** Message, stack and code of any thrown value, in a form that can be stored. */
export interface ErrorInfo {
  message: string;
  stack?: string;
  code?: string;
  name?: string;
}

export function describeError(error: unknown): ErrorInfo {
  if (error instanceof Error) {
    const info: ErrorInfo = { message: error.message, name: error.name };
    if (error.stack !== undefined) info.stack = error.stack.slice(0, 8192);
    const code = (error as { code?: unknown }).code;
    if (typeof code === 'string') info.code = code;
    return info;
  }
  let text: string;
  try {
    text = typeof error === 'string' ? error : JSON.stringify(error) ?? String(error);
  } catch {
    text = String(error);
  }
  return { message: text };
}
