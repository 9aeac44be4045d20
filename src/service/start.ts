/**
 * `botqueue start`: loads the config, starts the service, prints where everything is, runs
 * until SIGTERM or SIGINT, then stops within the shutdown deadline. Resolves to the exit
 * code: 0 after a clean stop, 1 when it could not start or the deadline passed. After a stop
 * that interrupted handlers or passed the deadline, the process exits on its own a second
 * later if something (a stuck handler) would keep it alive.
 *
 * @example
 * process.exitCode = await runStart({ workers: 2 });
 */
import { resolve } from 'node:path';
import { redactSecrets } from '../core/redact.js';
import { loadConfig, type BotqueueConfig } from './config.js';
import { createLogger, type Logger } from './logger.js';
import { settingsSecrets } from './secrets.js';
import { Service } from './service.js';
import { duration, summaryLines } from './summary.js';

export interface RunStartOptions {
  /** Default `process.cwd()`. */
  cwd?: string;
  /** An explicit config file; by default botqueue.config.{ts,mjs,js,json} in cwd. */
  configPath?: string;
  /** 0 (the default): handlers run in this process. N: in N worker processes sharing the broker. */
  workers?: number;
  /** Default `process.env`. Worker processes get it too. */
  env?: NodeJS.ProcessEnv;
  /** Human-readable lines (the banner, supervisor notes). Default: stderr, so that stdout carries only JSON log lines. */
  out?: (line: string) => void;
  /** Error lines. Default: stderr. */
  err?: (line: string) => void;
}

/** Worker processes at most (each opens the broker; more rarely helps on one machine). */
const MAX_WORKERS = 64;

export async function runStart(options: RunStartOptions = {}): Promise<number> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;
  // Every printed line (the banner, supervisor notes, errors) goes through the redactor; the
  // config file's secrets join those of the environment once it is loaded.
  let secrets = settingsSecrets(env);
  const write = options.out ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const writeErr = options.err ?? ((line: string) => void process.stderr.write(`${line}\n`));
  const out = (line: string): void => write(redactSecrets(line, ...secrets));
  const err = (line: string): void => writeErr(redactSecrets(line, ...secrets));
  const workers = options.workers ?? 0;
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_WORKERS) {
    err(`botqueue start: --workers must be an integer from 0 to ${MAX_WORKERS}, got ${String(workers)}`);
    return 1;
  }

  // Listen for signals first: one that arrives while starting stops the start.
  const stop = stopSignal();
  try {
    let config: BotqueueConfig;
    try {
      config = await loadConfig({ cwd, path: options.configPath, env });
    } catch (error) {
      err(`botqueue start: ${(error as Error).message}`);
      return 1;
    }
    secrets = settingsSecrets(env, config);
    const logger = createLogger({ level: config.logLevel, role: 'gateway', secrets });
    const service = new Service({ config, workers, logger, out, cwd, env });

    const started = await Promise.race([service.start().then((s) => ({ kind: 'started' as const, ...s })), stop.received.then((signal) => ({ kind: 'signal' as const, signal }))]).catch(
      (error: unknown) => ({ kind: 'failed' as const, error }),
    );
    if (started.kind !== 'started') {
      if (started.kind === 'failed') {
        err(`botqueue start: ${(started.error as Error).message}`);
        logger.error({ error: started.error }, 'could not start');
      } else out(`botqueue: ${started.signal} received while starting; stopping`);
      await service.stop();
      return started.kind === 'failed' ? 1 : 0;
    }
    for (const line of summaryLines(config, started, workers, cwd)) out(line);
    logger.info({ 'url.full': started.url, 'botqueue.workers': workers, 'botqueue.handlers': config.handlers.length }, 'botqueue started');

    const signal = await stop.received;
    stop.onRepeat((again) => out(`botqueue: ${again} received; already stopping (everything stops within ${duration(config.shutdownTimeoutMs)} of the first signal)`));
    out(`botqueue: ${signal} received; stopping (running handlers get to finish; deadline ${duration(config.shutdownTimeoutMs)})`);
    logger.info({ 'botqueue.signal': signal }, 'stopping');
    return await shutDown(service, config, logger, out, err);
  } finally {
    stop.dispose();
  }
}

async function shutDown(service: Service, config: BotqueueConfig, logger: Logger, out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const result = await service.stop();
  if (!result.clean) {
    err(
      `botqueue: the shutdown deadline of ${duration(config.shutdownTimeoutMs)} passed while closing ${result.pending.join(', ')}; exiting anyway (messages being handled are redelivered after their lease expires)`,
    );
    logger.error({ 'botqueue.pending': result.pending }, 'shutdown deadline passed');
    exitSoon(1);
    return 1;
  }
  if (result.handlersTimedOut) {
    out('botqueue: stopped; handlers still running at their deadline were interrupted, their messages will be handled again');
    exitSoon(0);
  } else out('botqueue: stopped');
  logger.info('stopped');
  return 0;
}

/**
 * After an unclean stop something still runs (a stuck handler's timer or socket): it must not
 * keep the process alive past its deadline. The timer is unref'd, so it fires only if the
 * process would otherwise go on; the caller gets the exit code first.
 */
function exitSoon(code: number): void {
  setTimeout(() => process.exit(code), 1_000).unref();
}

interface StopSignal {
  received: Promise<NodeJS.Signals>;
  /** Called for each signal after the first (npm and a terminal may both deliver one Ctrl-C). */
  onRepeat(listener: (signal: NodeJS.Signals) => void): void;
  dispose(): void;
}

function stopSignal(): StopSignal {
  let resolveSignal: (signal: NodeJS.Signals) => void = () => undefined;
  const received = new Promise<NodeJS.Signals>((r) => (resolveSignal = r));
  let first = true;
  let repeat: ((signal: NodeJS.Signals) => void) | undefined;
  const handler = (signal: NodeJS.Signals): void => {
    if (first) {
      first = false;
      resolveSignal(signal);
    } else repeat?.(signal);
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return {
    received,
    onRepeat: (listener) => (repeat = listener),
    dispose: () => {
      process.off('SIGTERM', handler);
      process.off('SIGINT', handler);
    },
  };
}
