/**
 * A worker process of `botqueue start --workers N`, forked by the supervisor. It receives the
 * resolved config over IPC (never in argv, where `ps` would show the broker URL's password),
 * runs every configured handler on its own connection to the shared broker, and reports on
 * IPC: `ready`, `fatal` (could not start) or `stopped`.
 * SIGTERM or SIGINT, or the parent going away: stop taking messages, let running handlers
 * finish within their shutdownTimeoutMs, release the partitions, exit 0.
 */
import { logClientEvents } from './client-log.js';
import { connect, type Botqueue } from '../client.js';
import { redactSecrets } from '../core/redact.js';
import type { BotqueueConfig } from './config.js';
import { loadHandlers, startHandlers, type RunningHandlers } from './handlers.js';
import { createLogger, type Logger } from './logger.js';
import { settingsSecrets } from './secrets.js';
import type { MetricsSnapshot } from '../observability/exposition.js';
import { metrics } from '../observability/metrics.js';

/** Parent → child. */
export interface StartMessage {
  type: 'start';
  /** 1-based, stable across restarts of the same slot. */
  index: number;
  config: BotqueueConfig;
}

/** Parent → child: send this process's metrics (answered with a `metrics` message of the same id). */
export interface MetricsRequest {
  type: 'metrics';
  requestId: number;
}

/** Child → parent. */
export type WorkerProcessMessage =
  | { type: 'ready' }
  | { type: 'fatal'; message: string }
  | { type: 'stopped'; timedOut: boolean }
  | { type: 'metrics'; requestId: number; metrics: MetricsSnapshot };

/** Sends to the supervisor; resolves once the message is handed to the channel (so exiting next does not drop it). */
const send = (message: WorkerProcessMessage): Promise<void> =>
  new Promise((resolve) => {
    if (!process.connected || process.send === undefined) resolve();
    else process.send(message, undefined, undefined, () => resolve());
  });

if (process.send === undefined) {
  process.stderr.write('worker-process is started by `botqueue start --workers N`, not directly\n');
  process.exit(2);
}

let logger: Logger | undefined;
let bq: Botqueue | undefined;
let handlers: RunningHandlers | undefined;
let starting: Promise<void> | undefined;
let stopping: Promise<void> | undefined;

process.on('message', (message: StartMessage | MetricsRequest) => {
  if (message.type === 'metrics') {
    void metrics()
      .registry.getMetricsAsJSON()
      .then((snapshot) => send({ type: 'metrics', requestId: message.requestId, metrics: snapshot }));
    return;
  }
  if (message.type !== 'start' || starting !== undefined || stopping !== undefined) return;
  starting = start(message);
});
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
// The supervisor died without stopping us: stop on our own rather than run unsupervised.
process.on('disconnect', () => stop('supervisor gone'));

async function start({ index, config }: StartMessage): Promise<void> {
  const secrets = settingsSecrets(process.env, config);
  logger = createLogger({ level: config.logLevel, role: 'worker', base: { 'botqueue.worker': index }, secrets });
  try {
    bq = await connect(config.url, { maxMessageBytes: config.maxMessageBytes });
    logClientEvents(bq, logger);
    metrics().observeClient(bq);
    const functions = await loadHandlers(config.handlers);
    handlers = await startHandlers(bq, config, functions, logger);
    await handlers.ready;
    logger.info({ 'botqueue.handlers': config.handlers.length }, 'worker process ready');
    await send({ type: 'ready' });
  } catch (error) {
    logger.error({ error }, 'worker process could not start');
    await send({ type: 'fatal', message: redactSecrets((error as Error).message, ...secrets) });
    await handlers?.close().catch(() => undefined);
    await bq?.close().catch(() => undefined);
    process.exit(1);
  }
}

function stop(reason: string): void {
  stopping ??= (async () => {
    logger?.info({ 'botqueue.reason': reason }, 'worker process stopping');
    await starting?.catch(() => undefined);
    const result = (await handlers?.close()) ?? { timedOut: false };
    await bq?.close().catch((error: unknown) => logger?.error({ error }, 'closing the broker failed'));
    if (result.timedOut) logger?.warn('handlers were still running at the shutdown deadline; their messages will be redelivered');
    await send({ type: 'stopped', timedOut: result.timedOut });
    process.exit(0);
  })();
}
