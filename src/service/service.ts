/**
 * The running service: one broker connection, the declared topics, the HTTP server, and the
 * handlers (in this process, or in N supervised worker processes). `stop()` shuts it down in
 * order within the deadline: HTTP stops accepting while in-flight publishes finish, workers
 * finish their running handlers and hand their partitions back, then the broker closes.
 */
import type { FastifyInstance } from 'fastify';
import { connect, type Botqueue } from '../client.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import type { BotqueueConfig } from './config.js';
import { loadHandlers, startHandlers, type RunningHandlers } from './handlers.js';
import { closeHttpServer, createHttpServer, listen } from './http.js';
import { logClientEvents } from './client-log.js';
import type { Logger } from './logger.js';
import { Supervisor } from './supervisor.js';
import { TelegramPoller } from '../gateway/telegram-poller.js';
import { WebhookRejections } from '../gateway/rejections.js';
import { startOutbound, type RunningOutbound } from '../outbound/index.js';

export interface ServiceOptions {
  config: BotqueueConfig;
  /** 0: handlers run in this process; N: in N worker processes. */
  workers: number;
  logger: Logger;
  out: (line: string) => void;
  cwd: string;
  env: NodeJS.ProcessEnv;
}

export interface StartedService {
  url: string;
  /** The address the server listens on (0.0.0.0 for all interfaces). */
  address: string;
  port: number;
  /** Dedup windows of topics that existed before with another one (it is fixed at creation). */
  keptDedupWindows: Array<{ topic: string; existing: number; configured: number }>;
  workerPids: number[];
}

export interface StopResult {
  /** False when the deadline passed with something still closing. */
  clean: boolean;
  /** Handlers that were still running at their deadline (their messages are redelivered). */
  handlersTimedOut: boolean;
  /** What was still closing at the deadline. */
  pending: string[];
}

export class Service {
  private bq: Botqueue | undefined;
  private app: FastifyInstance | undefined;
  private handlers: RunningHandlers | undefined;
  private supervisor: Supervisor | undefined;
  private poller: TelegramPoller | undefined;
  /** The senders of outbound.<platform> for the platforms whose credentials are set (in this process only). */
  private outbound: RunningOutbound | undefined;
  private stopping = false;
  private starting: Promise<StartedService> | undefined;

  constructor(private readonly options: ServiceOptions) {}

  get workerPids(): number[] {
    return this.supervisor?.pids ?? [];
  }

  /** Starts everything; a stop() that comes first makes it reject once what already started can be closed. */
  start(): Promise<StartedService> {
    this.starting ??= this.startOnce();
    return this.starting;
  }

  private checkNotStopping(): void {
    if (this.stopping) throw new BotqueueError(ErrorCodes.CLOSED, 'stopped while starting');
  }

  private async startOnce(): Promise<StartedService> {
    const { config, workers, logger } = this.options;
    const bq = await connect(config.url, { maxMessageBytes: config.maxMessageBytes });
    this.bq = bq;
    logClientEvents(bq, logger);
    this.checkNotStopping();
    if (workers > 0 && !bq.broker.capabilities.multiProcess) {
      throw new BotqueueError(
        ErrorCodes.INVALID_OPTION,
        `--workers ${workers} needs a broker that several processes can share, and ${config.url.split(':')[0]}: lives in one process; use --workers 0 or a sqlite: URL`,
        { details: { option: 'workers' } },
      );
    }
    const keptDedupWindows: StartedService['keptDedupWindows'] = [];
    for (const [name, topic] of Object.entries(config.topics)) {
      const info = await bq.createTopic(name, { partitions: topic.partitions, dedupWindowMs: topic.dedupWindowMs });
      if (info.dedupWindowMs !== topic.dedupWindowMs) keptDedupWindows.push({ topic: name, existing: info.dedupWindowMs, configured: topic.dedupWindowMs });
    }
    this.checkNotStopping();
    this.outbound = await startOutbound(bq, this.options.env);
    if (this.outbound.platforms.length > 0) logger.info({ 'botqueue.senders': this.outbound.platforms }, 'outbound senders started');

    // One count of refused webhook updates for the routes and the Telegram poller alike.
    const webhookRejections = new WebhookRejections();
    this.app = createHttpServer({
      bq,
      config,
      logger,
      shuttingDown: () => this.stopping,
      webhookRejections,
      workerMetrics: () => this.supervisor?.collectMetrics() ?? Promise.resolve([]),
    });
    const startWorkers = async (): Promise<void> => {
      if (config.handlers.length === 0 || this.stopping) return;
      if (workers === 0) {
        const functions = await loadHandlers(config.handlers);
        this.handlers = await startHandlers(bq, config, functions, logger.child({ 'botqueue.component': 'worker' }));
        await this.handlers.ready;
      } else {
        this.supervisor = new Supervisor({ count: workers, config, logger, out: this.options.out, cwd: this.options.cwd, env: this.options.env });
        await this.supervisor.start();
      }
    };
    // Both settle before start() does, so that stop() finds everything either of them opened.
    const [started, listening] = await Promise.allSettled([startWorkers(), listen(this.app, config.host, config.port)]);
    if (started.status === 'rejected') throw started.reason;
    if (listening.status === 'rejected') throw listening.reason;
    this.checkNotStopping();
    const polling = config.webhooks?.telegramPolling;
    if (polling !== undefined) {
      this.poller = new TelegramPoller({ bq, ...polling, logger: logger.child({ 'botqueue.component': 'telegram-poller' }), rejections: webhookRejections });
      this.poller.start();
    }
    return { ...listening.value, keptDedupWindows, workerPids: this.workerPids };
  }

  /** Stops everything that started (also after a failed start). */
  async stop(): Promise<StopResult> {
    this.stopping = true;
    const { config, logger } = this.options;
    const pending = new Set<string>();
    const step = async <T>(name: string, run: () => Promise<T>): Promise<T | undefined> => {
      pending.add(name);
      try {
        return await run();
      } catch (error) {
        logger.error({ error }, `${name}: closing failed`);
        return undefined;
      } finally {
        pending.delete(name);
      }
    };
    let handlersTimedOut = false;
    const work = (async () => {
      // What a start in progress opens is closed below once it got as far as it gets.
      await this.starting?.catch(() => undefined);
      const app = this.app;
      const handlers = this.handlers;
      const supervisor = this.supervisor;
      const poller = this.poller;
      const outbound = this.outbound;
      await Promise.all([
        poller === undefined ? undefined : step('the Telegram poller', () => poller.stop()),
        outbound === undefined ? undefined : step('the outbound senders', () => outbound.close()),
        app === undefined ? undefined : step('the HTTP server', () => closeHttpServer(app)),
        handlers === undefined
          ? undefined
          : step('the handlers', async () => {
              handlersTimedOut = (await handlers.close()).timedOut;
            }),
        // Leave a tenth of the deadline for killing processes that outlive it.
        supervisor === undefined
          ? undefined
          : step('the worker processes', async () => {
              const { killed } = await supervisor.stop(Math.floor(config.shutdownTimeoutMs * 0.9));
              if (killed > 0) handlersTimedOut = true;
            }),
      ]);
      const bq = this.bq;
      if (bq !== undefined) await step('the broker', () => bq.close());
    })();
    let timer: NodeJS.Timeout | undefined;
    const clean = await Promise.race([work.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), config.shutdownTimeoutMs)))]);
    clearTimeout(timer);
    return { clean, handlersTimedOut, pending: [...pending] };
  }
}
