/**
 * One error base class for everything botqueue throws. `code` is stable and never reused,
 * `retriable` tells a caller whether trying the same call again can succeed, `cause` keeps
 * the underlying error.
 *
 * ErrorCodes is the one registry of every `BOTQUEUE_*` code botqueue throws, answers over HTTP,
 * stores in a dead letter or reports as a warning; docs/errors.md says what each means and what
 * to do, and test/unit/error-codes.test.ts fails when the source uses a code that is not here.
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
  /** The topic does not exist (create it first, or publish to it: the client creates it). */
  TOPIC_NOT_FOUND: 'BOTQUEUE_TOPIC_NOT_FOUND',
  /** The topic exists with other settings (its partition count is fixed at creation). */
  TOPIC_MISMATCH: 'BOTQUEUE_TOPIC_MISMATCH',
  /** The consumer group is not subscribed to the topic. */
  GROUP_NOT_FOUND: 'BOTQUEUE_GROUP_NOT_FOUND',
  /** The broker failed to store or read; the operation may succeed if tried again. */
  BROKER_UNAVAILABLE: 'BOTQUEUE_BROKER_UNAVAILABLE',
  /** The client, broker or worker was closed. */
  CLOSED: 'BOTQUEUE_CLOSED',
  /** A worker lost the lease of a partition; its settlement was refused (no zombie ack). */
  LEASE_LOST: 'BOTQUEUE_LEASE_LOST',
  /** A handler asked for the message to go straight to the failure policy. */
  PERMANENT_FAILURE: 'BOTQUEUE_PERMANENT_FAILURE',
  /** A handler asked for its message to come back later (RetryLater); not a failure, no attempt counted. */
  RETRY_LATER: 'BOTQUEUE_RETRY_LATER',
  /** A shutdown deadline passed with handlers still running. */
  SHUTDOWN_TIMEOUT: 'BOTQUEUE_SHUTDOWN_TIMEOUT',
  /** A driver an optional backend needs is not installed. */
  DRIVER_MISSING: 'BOTQUEUE_DRIVER_MISSING',
  /** A dead letter that was asked for does not exist. */
  NOT_FOUND: 'BOTQUEUE_NOT_FOUND',
  /** A distributed backend was opened without the shared store it needs (e.g. RabbitMQ without PostgreSQL). */
  STORE_REQUIRED: 'BOTQUEUE_STORE_REQUIRED',
  /** The error stored with a message RabbitMQ dead-lettered by itself, after `x-delivery-limit` deliveries. */
  DELIVERY_LIMIT: 'BOTQUEUE_DELIVERY_LIMIT',
  /** A listener of the SQLite change watcher threw; reported as a process warning, the watcher goes on. */
  WATCH_LISTENER: 'BOTQUEUE_WATCH_LISTENER',
  /** ctx.reply on a message that names no platform chat (no bq-platform/bq-chat headers): use bq.send. */
  NO_REPLY_ADDRESS: 'BOTQUEUE_NO_REPLY_ADDRESS',
  /** A platform refused an outbound message (a 4xx other than 429); stored in its dead letter with the platform's status and body. */
  PLATFORM_REJECTED: 'BOTQUEUE_PLATFORM_REJECTED',
  /** A platform's API failed (5xx, network, timeout); the outbound message is retried with backoff. */
  PLATFORM_UNAVAILABLE: 'BOTQUEUE_PLATFORM_UNAVAILABLE',

  // Answered only by the HTTP API of `botqueue start` (service/http-errors.ts names them HttpErrorCodes).
  /** The request body is not a message or an array of messages. */
  INVALID_BODY: 'BOTQUEUE_INVALID_BODY',
  /** More messages in one request than http.maxBatch. */
  BATCH_TOO_LARGE: 'BOTQUEUE_BATCH_TOO_LARGE',
  /** A query parameter is unknown or of the wrong type. */
  INVALID_QUERY: 'BOTQUEUE_INVALID_QUERY',
  /** Missing or wrong `Authorization: Bearer` token. */
  UNAUTHORIZED: 'BOTQUEUE_UNAUTHORIZED',
  /** The topic is over its configured maxBacklog; try again later. */
  BACKLOG_FULL: 'BOTQUEUE_BACKLOG_FULL',
  /** The topic is not declared in the config and http.allowUndeclaredTopics is false. */
  TOPIC_NOT_DECLARED: 'BOTQUEUE_TOPIC_NOT_DECLARED',
  /** No route for this method and path. */
  ROUTE_NOT_FOUND: 'BOTQUEUE_ROUTE_NOT_FOUND',
  /** The service is shutting down. */
  SHUTTING_DOWN: 'BOTQUEUE_SHUTTING_DOWN',
  /** Anything unexpected; the service log has the details. */
  INTERNAL_ERROR: 'BOTQUEUE_INTERNAL_ERROR',
  /** A platform webhook's signature (or secret token) is missing, wrong, or its timestamp outside the 5-minute window. */
  WEBHOOK_SIGNATURE_INVALID: 'BOTQUEUE_WEBHOOK_SIGNATURE_INVALID',
  /** WhatsApp's subscription handshake named another verify token. */
  WEBHOOK_VERIFY_TOKEN_INVALID: 'BOTQUEUE_WEBHOOK_VERIFY_TOKEN_INVALID',
  /** A group (or a topic's group) still has live members: stop its workers before deleting it. */
  GROUP_HAS_MEMBERS: 'BOTQUEUE_GROUP_HAS_MEMBERS',
  /** This backend does not offer the operation yet. */
  NOT_SUPPORTED: 'BOTQUEUE_NOT_SUPPORTED',
  /** A read-only command found no store at the URL in force (it never creates one). */
  STORE_NOT_FOUND: 'BOTQUEUE_STORE_NOT_FOUND',
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
