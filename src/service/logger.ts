/**
 * JSON logs with Elastic Common Schema field names (`@timestamp`, `log.level`, `message`,
 * `error.*`, `process.pid`), one line each, on stdout. Payloads, keys and chat ids are never
 * logged at info level or above: events carry topic, group, partition, seq and message id.
 * Every line is redacted as a whole before it is written, so an error's message, stack or
 * cause never carries a password out, whatever field it sits in.
 */
import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';
import { redactSecrets } from '../core/redact.js';

export type { Logger } from 'pino';

export interface LoggerOptions {
  level: string;
  /** `gateway` (the HTTP server and supervisor) or `worker` (a process running handlers). */
  role: 'gateway' | 'worker';
  /** Where the lines go. Default: stdout, written synchronously so that nothing is lost at exit. */
  destination?: pino.DestinationStream;
  /** Extra fields on every line. */
  base?: Record<string, unknown>;
  /** Secrets masked wherever they appear (service/secrets.ts); URL passwords are masked anyway. */
  secrets?: readonly string[];
}

export function createLogger(options: LoggerOptions): Logger {
  const secrets = options.secrets ?? [];
  return pino(
    {
      level: options.level,
      messageKey: 'message',
      errorKey: 'error',
      timestamp: () => `,"@timestamp":"${new Date().toISOString()}"`,
      formatters: {
        level: (label) => ({ 'log.level': label }),
      },
      base: {
        'ecs.version': '8.11.0',
        'service.name': 'botqueue',
        'botqueue.role': options.role,
        'process.pid': process.pid,
        'host.hostname': hostname(),
        ...options.base,
      },
      serializers: { error: serializeError },
      hooks: { streamWrite: (line) => redactSecrets(line, ...secrets) },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** ECS `error.*` fields: message, type, code and stack trace. */
export function serializeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) {
    // Already in ECS shape (a worker event's stored error info).
    if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') return error as Record<string, unknown>;
    return { message: String(error) };
  }
  const out: Record<string, unknown> = { message: error.message, type: error.name };
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') out.code = code;
  if (error.stack !== undefined) out.stack_trace = error.stack;
  return out;
}

/**
 * Logs an error at most once per `everyMs` (with how many were dropped), so a broker outage
 * that makes a worker report the same failure on every tick does not flood the log.
 */
export function throttledErrorLog(logger: Logger, message: string, everyMs = 5_000): (error: Error, fields?: Record<string, unknown>) => void {
  let last = 0;
  let dropped = 0;
  return (error, fields = {}) => {
    const now = Date.now();
    if (now - last < everyMs) {
      dropped++;
      return;
    }
    last = now;
    logger.error({ ...fields, error, 'botqueue.suppressed': dropped }, message);
    dropped = 0;
  };
}
