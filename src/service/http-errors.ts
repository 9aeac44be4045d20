/**
 * How errors become HTTP answers. Bodies have Fastify's shape, `{ statusCode, error, code,
 * message }`, where `code` is botqueue's stable code (`BOTQUEUE_...`) or Fastify's (`FST_...`)
 * and `message` says what to change.
 */
import { STATUS_CODES } from 'node:http';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { redactSecrets } from '../core/redact.js';

/** The codes only the HTTP API answers with; like every code, they live in core/errors.ts. */
export const HttpErrorCodes = {
  INVALID_BODY: ErrorCodes.INVALID_BODY,
  BATCH_TOO_LARGE: ErrorCodes.BATCH_TOO_LARGE,
  INVALID_QUERY: ErrorCodes.INVALID_QUERY,
  UNAUTHORIZED: ErrorCodes.UNAUTHORIZED,
  BACKLOG_FULL: ErrorCodes.BACKLOG_FULL,
  TOPIC_NOT_DECLARED: ErrorCodes.TOPIC_NOT_DECLARED,
  NOT_FOUND: ErrorCodes.ROUTE_NOT_FOUND,
  SHUTTING_DOWN: ErrorCodes.SHUTTING_DOWN,
  INTERNAL: ErrorCodes.INTERNAL_ERROR,
} as const;

/** Seconds a client should wait before retrying when storage failed or is closing. */
export const RETRY_AFTER_UNAVAILABLE_S = 1;
/** Seconds a client should wait before retrying when a topic is over its backlog limit. */
export const RETRY_AFTER_BACKLOG_S = 5;

export class HttpError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export interface HttpErrorAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: { statusCode: number; error: string; code: string; message: string };
  /** A 5xx the operator should see in the logs. */
  serverSide: boolean;
}

/** Maps any thrown value to its answer; never a 2xx. */
export function toHttpAnswer(error: unknown, limits: { bodyLimitBytes?: number } = {}): HttpErrorAnswer {
  let statusCode = 500;
  let code: string = HttpErrorCodes.INTERNAL;
  let message = 'internal error; see the service log';
  let headers: Record<string, string> = {};
  if (error instanceof HttpError) {
    ({ statusCode, code, message, headers } = error);
  } else if (error instanceof BotqueueError) {
    code = error.code;
    // The message goes to whoever sent the request: no URL of the set-up leaves with a password.
    message = redactSecrets(error.message);
    switch (error.code) {
      case ErrorCodes.INVALID_MESSAGE:
      case ErrorCodes.INVALID_OPTION:
        statusCode = 400;
        break;
      case ErrorCodes.MESSAGE_TOO_LARGE:
        statusCode = 413;
        break;
      case ErrorCodes.NOT_FOUND:
      case ErrorCodes.TOPIC_NOT_FOUND:
      case ErrorCodes.GROUP_NOT_FOUND:
        statusCode = 404;
        break;
      case ErrorCodes.TOPIC_MISMATCH:
      case ErrorCodes.GROUP_HAS_MEMBERS:
        statusCode = 409;
        break;
      case ErrorCodes.NOT_SUPPORTED:
        statusCode = 501;
        break;
      case ErrorCodes.BROKER_UNAVAILABLE:
      case ErrorCodes.CLOSED:
        statusCode = 503;
        message = `${message}; nothing was stored, try again`;
        headers = { 'retry-after': String(RETRY_AFTER_UNAVAILABLE_S) };
        break;
      default:
        statusCode = 500;
    }
  } else if (isFastifyError(error)) {
    statusCode = error.statusCode;
    code = error.code;
    message = fastifyMessage(error, limits.bodyLimitBytes);
    if (statusCode === 503) headers = { 'retry-after': String(RETRY_AFTER_UNAVAILABLE_S) };
  }
  return { statusCode, headers, body: { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', code, message }, serverSide: statusCode >= 500 };
}

interface FastifyLikeError {
  statusCode: number;
  code: string;
  message: string;
}

function isFastifyError(error: unknown): error is FastifyLikeError {
  const e = error as Partial<FastifyLikeError> | null;
  return (
    typeof e === 'object' && e !== null && typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 600 && typeof e.code === 'string' && typeof e.message === 'string'
  );
}

/** Fastify's messages, made to say what to change. */
function fastifyMessage(error: FastifyLikeError, bodyLimitBytes: number | undefined): string {
  switch (error.code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return 'the body is not valid JSON; send a JSON object { key, id, payload, headers?, delayMs? } or an array of them';
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return 'the body is empty; send a JSON object { key, id, payload, headers?, delayMs? } or an array of them';
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return 'unsupported content-type; send the body as JSON with the header content-type: application/json';
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return `the request body is over the limit of ${bodyLimitBytes === undefined ? 'http.bodyLimitBytes' : `${bodyLimitBytes} bytes (http.bodyLimitBytes)`}; send fewer or smaller messages per request`;
    default:
      return error.message;
  }
}
