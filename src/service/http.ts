/**
 * The HTTP server (Fastify): publish, health and admin routes, one module each under
 * ./routes; errors mapped to answers in one place (./http-errors.ts).
 */
import type { AddressInfo } from 'node:net';
import { fastify, LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Botqueue } from '../client.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { bearerAuth } from './auth.js';
import { BacklogGate } from './backlog.js';
import { httpSettings, type BotqueueConfig } from './config.js';
import { HttpErrorCodes, toHttpAnswer } from './http-errors.js';
import type { Logger } from './logger.js';
import type { MetricsSnapshot } from '../observability/exposition.js';
import { registerAdminRoutes } from './routes/admin.js';
import { registerAdminOperationRoutes } from './routes/admin-operations.js';
import { registerDashboardRoute } from './routes/dashboard.js';
import { registerHealthRoutes } from './routes/health.js';
import { registerMetricsRoute } from './routes/metrics.js';
import { registerPublishRoute } from './routes/publish.js';
import { registerWebhookRoutes } from './routes/webhooks.js';
import { NO_WEBHOOKS } from '../gateway/config.js';
import { WebhookRejections } from '../gateway/rejections.js';

export interface HttpServerOptions {
  bq: Botqueue;
  config: BotqueueConfig;
  logger: Logger;
  /** True once shutdown began: /readyz answers 503. */
  shuttingDown?: () => boolean;
  /** How often a topic's backlog figure is read again for its maxBacklog check, in ms. Default 1000. */
  backlogRefreshMs?: number;
  /** Counts refused webhook requests; pass one to read it elsewhere (metrics). Default: a new one. */
  webhookRejections?: WebhookRejections;
  /** The worker processes' metrics, summed into /metrics (`botqueue start --workers N`). */
  workerMetrics?: () => Promise<MetricsSnapshot[]>;
}

export function createHttpServer(options: HttpServerOptions): FastifyInstance {
  const { bq, config, logger } = options;
  const http = httpSettings(config);
  const httpLogger = logger.child({ 'botqueue.component': 'http' });
  const loggerInstance: FastifyBaseLogger = httpLogger;
  const app = fastify({
    loggerInstance,
    // Per-request lines are written at debug level below (never with bodies), not by Fastify at info.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: http.bodyLimitBytes,
    // Requests that arrive while closing get 503 (nothing stored), in-flight ones finish.
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    requestIdHeader: false,
  });

  // Messages are JSON only: any other content-type answers 415 with what to send.
  app.removeContentTypeParser('text/plain');

  const limits = new Map<string, number>();
  for (const [name, topic] of Object.entries(config.topics)) if (topic.maxBacklog !== undefined) limits.set(name, topic.maxBacklog);
  const gate = new BacklogGate(bq, limits, logger, options.backlogRefreshMs);
  const adminAuth = bearerAuth(config.adminToken);

  registerHealthRoutes(app, { bq, shuttingDown: () => options.shuttingDown?.() ?? false });
  registerPublishRoute(app, { bq, topics: config.topics, http, gate, auth: http.publishRequiresToken ? adminAuth : undefined });
  const webhookRejections = options.webhookRejections ?? new WebhookRejections();
  registerAdminRoutes(app, { bq, auth: adminAuth, webhookRejections });
  registerAdminOperationRoutes(app, { bq, auth: adminAuth });
  registerWebhookRoutes(app, { bq, webhooks: config.webhooks ?? NO_WEBHOOKS, gate, rejections: webhookRejections, http, topics: config.topics });
  registerDashboardRoute(app);
  registerMetricsRoute(app, { bq, auth: adminAuth, workerMetrics: options.workerMetrics });

  app.setErrorHandler((error, request, reply) => {
    const answer = toHttpAnswer(error, { bodyLimitBytes: http.bodyLimitBytes });
    if (answer.serverSide) request.log.error({ error, 'http.request.method': request.method, 'url.path': request.routeOptions.url }, 'request failed');
    else request.log.debug({ 'http.response.status_code': answer.statusCode, 'error.code': answer.body.code }, 'request refused');
    return reply.code(answer.statusCode).headers(answer.headers).send(answer.body);
  });

  app.setNotFoundHandler((request, reply) =>
    reply.code(404).send({
      statusCode: 404,
      error: 'Not Found',
      code: HttpErrorCodes.NOT_FOUND,
      message: `no route ${request.method} ${request.url.split('?')[0]}; routes: POST /v1/topics/:topic/messages, GET /healthz, GET /readyz, GET /v1/stats, GET /v1/dead-letters, GET /metrics`,
    }),
  );

  // A request that was running when shutdown began must not leave its keep-alive connection
  // open behind it: the server's close waits for every connection.
  const shuttingDown = options.shuttingDown ?? (() => false);
  app.addHook('onSend', (_request, reply, _payload, done) => {
    if (shuttingDown()) void reply.header('connection', 'close');
    done();
  });

  app.addHook('onResponse', (request, reply, done) => {
    if (httpLogger.isLevelEnabled('debug')) {
      request.log.debug(
        {
          'http.request.method': request.method,
          'url.path': request.routeOptions.url ?? request.url.split('?')[0],
          'http.response.status_code': reply.statusCode,
          'event.duration': Math.round(reply.elapsedTime * 1e6),
        },
        'request',
      );
    }
    done();
  });

  return app;
}

/** Listens and returns the URL to print (`http://127.0.0.1:3000`; all interfaces print as localhost). */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<{ url: string; address: string; port: number }> {
  try {
    await app.listen({ host, port });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'EADDRINUSE' || code === 'EACCES') {
      const why = code === 'EADDRINUSE' ? 'is already in use (is botqueue already running?)' : 'needs privileges this process lacks';
      throw new BotqueueError(ErrorCodes.INVALID_OPTION, `port ${port} on ${host} ${why}; set BOTQUEUE_PORT to a free port (0: any)`, {
        cause: error,
        details: { option: 'port' },
      });
    }
    throw error;
  }
  const address = app.server.address() as AddressInfo;
  const shown = address.address === '0.0.0.0' || address.address === '::' ? 'localhost' : address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return { url: `http://${shown}:${address.port}`, address: address.address, port: address.port };
}

/**
 * Stops accepting connections and waits for the running requests (a publish that was being
 * stored still gets its answer). Idle keep-alive connections are closed as they become idle:
 * Node closes only those idle at the moment close() is called.
 */
export async function closeHttpServer(app: FastifyInstance): Promise<void> {
  const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
  try {
    await app.close();
  } finally {
    clearInterval(sweep);
  }
}
