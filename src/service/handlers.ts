/**
 * Runs the configured handlers on a client: one Worker per handler entry, each with its
 * options, with its events logged. Used in the main process (`--workers 0`) and in each
 * worker process.
 */
import { basename } from 'node:path';
import type { Botqueue } from '../client.js';
import { BotqueueError, ErrorCodes, PermanentError } from '../core/errors.js';
import type { Handler, Worker } from '../worker/worker.js';
import type { BotqueueConfig, HandlerConfig } from './config.js';
import type { Logger } from './logger.js';
import { throttledErrorLog } from './logger.js';
import { exportNames, importModule, namedExport } from './module-loader.js';
import { metrics } from '../observability/metrics.js';

/** `handlers.ts#onUpdate`: how a handler is named in output and logs. */
export function handlerName(handler: HandlerConfig): string {
  return `${basename(handler.module)}#${handler.export}`;
}

/** Imports every handler module (each once) and returns the handler functions in config order. */
export async function loadHandlers(handlers: readonly HandlerConfig[]): Promise<Handler[]> {
  const modules = new Map<string, Promise<Record<string, unknown>>>();
  const loaded: Handler[] = [];
  for (const [index, handler] of handlers.entries()) {
    let namespace = modules.get(handler.module);
    if (namespace === undefined) {
      namespace = importModule(handler.module);
      modules.set(handler.module, namespace);
    }
    let resolved: Record<string, unknown>;
    try {
      resolved = await namespace;
    } catch (error) {
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, `handlers[${index}].module ${handler.module} could not be loaded: ${(error as Error).message}`, {
        cause: error,
        details: { option: `handlers[${index}].module` },
      });
    }
    const fn = namedExport(resolved, handler.export);
    if (typeof fn !== 'function') {
      const names = exportNames(resolved);
      throw new BotqueueError(
        ErrorCodes.INVALID_OPTION,
        fn === undefined
          ? `handlers[${index}].export: ${handler.module} has no export "${handler.export}" (it exports: ${names.length === 0 ? 'nothing' : names.join(', ')})`
          : `handlers[${index}].export: "${handler.export}" of ${handler.module} must be a function (message, ctx) => ..., got a ${typeof fn}`,
        { details: { option: `handlers[${index}].export` } },
      );
    }
    loaded.push(keepPermanentErrors(fn as Handler));
  }
  return loaded;
}

/**
 * A handler module may import botqueue through another module instance than the service's
 * (the built package while the service runs from source, two installed copies...): its
 * PermanentError is then not an instance of ours. Recognise it by its stable code so that
 * it still skips the retries.
 */
function keepPermanentErrors(handler: Handler): Handler {
  return async (message, ctx) => {
    try {
      return await handler(message, ctx);
    } catch (error) {
      if (!(error instanceof PermanentError) && error instanceof Error && (error as { code?: unknown }).code === ErrorCodes.PERMANENT_FAILURE) {
        const permanent = new PermanentError(error.message, { cause: error });
        if (error.stack !== undefined) permanent.stack = error.stack;
        throw permanent;
      }
      throw error;
    }
  };
}

export interface RunningHandlers {
  readonly workers: readonly Worker[];
  /** Resolves when every worker joined its group; rejects with the first that could not start. */
  readonly ready: Promise<void>;
  /** Closes every worker (each within its shutdownTimeoutMs). */
  close(): Promise<{ timedOut: boolean }>;
}

/**
 * Creates the handlers' topics with their configured settings (idempotent) and starts one
 * worker per handler.
 */
export async function startHandlers(bq: Botqueue, config: BotqueueConfig, functions: readonly Handler[], logger: Logger): Promise<RunningHandlers> {
  for (const handler of config.handlers) {
    const topic = config.topics[handler.topic];
    await bq.createTopic(handler.topic, topic === undefined ? undefined : { partitions: topic.partitions, dedupWindowMs: topic.dedupWindowMs });
  }
  const workers = config.handlers.map((handler, index) => {
    const worker = bq.worker(handler.topic, functions[index]!, handler.options);
    metrics().observeWorker(worker);
    observe(worker, logger.child({ 'botqueue.handler': handlerName(handler), 'botqueue.topic': handler.topic, 'botqueue.group': worker.group }));
    return worker;
  });
  const ready = Promise.all(workers.map((w) => w.ready)).then(() => undefined);
  ready.catch(() => undefined);
  return {
    workers,
    ready,
    close: async () => {
      const results = await Promise.all(workers.map((w) => w.close()));
      return { timedOut: results.some((r) => r.timedOut) };
    },
  };
}

/** Logs a worker's rare events. `completed` is not listened to: the worker then builds no event per message. */
function observe(worker: Worker, logger: Logger): void {
  const logError = throttledErrorLog(logger, 'worker error; it keeps trying');
  worker.on('error', (error) => logError(error));
  worker.on('retried', (e) =>
    logger.warn(
      { 'botqueue.partition': e.partition, 'botqueue.seq': e.seq, 'botqueue.message_id': e.id, 'botqueue.attempt': e.attempt, 'botqueue.retry_in_ms': e.delayMs, error: { message: e.error.message, type: e.error.name } },
      'handler failed; retrying later',
    ),
  );
  worker.on('dead-lettered', (e) =>
    logger.warn(
      { 'botqueue.partition': e.partition, 'botqueue.seq': e.seq, 'botqueue.message_id': e.id, 'botqueue.attempts': e.attempts, 'botqueue.parked': e.parked, error: { message: e.error.message, type: e.error.name } },
      e.parked ? 'message dead-lettered; its key is parked until redriven or purged' : 'message dead-lettered',
    ),
  );
  worker.on('lease-lost', (e) => logger.warn({ 'botqueue.partition': e.partition }, 'lost the lease of a partition; another worker handles it now'));
  worker.on('order-violation', (e) => logger.error({ 'botqueue.partition': e.partition, 'botqueue.seq': e.seq }, 'per-key order violation (must never happen)'));
  worker.on('assigned', (e) => logger.debug({ 'botqueue.partition': e.partition, 'botqueue.fence': e.fence }, 'partition assigned'));
  worker.on('released', (e) => logger.debug({ 'botqueue.partition': e.partition }, 'partition released'));
  worker.on('deferred', (e) => logger.debug({ 'botqueue.partition': e.partition, 'botqueue.delay_ms': e.delayMs, 'botqueue.deferrals': e.deferrals }, 'message deferred (RetryLater)'));
}
