/**
 * `GET /healthz`: the process is alive (always 200 while it serves).
 * `GET /readyz`: 200 when the broker answers a cheap read within READY_TIMEOUT_MS and the
 * service is not shutting down; 503 otherwise, with the reason.
 */
import type { FastifyInstance } from 'fastify';
import type { Botqueue } from '../../client.js';

const READY_TIMEOUT_MS = 2_000;
/** A topic name that is looked up, never created: missing names are never cached, so the broker is really asked. */
const PROBE_TOPIC = 'botqueue-readyz-probe';

export function registerHealthRoutes(app: FastifyInstance, options: { bq: Botqueue; shuttingDown: () => boolean }): void {
  const { bq, shuttingDown } = options;

  app.get('/healthz', () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    if (shuttingDown()) return await reply.code(503).header('retry-after', '1').send({ status: 'unavailable', reason: 'shutting down' });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        bq.broker.getTopic(PROBE_TOPIC),
        new Promise((_resolve, reject) => {
          timer = setTimeout(() => reject(new Error(`the broker did not answer within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
        }),
      ]);
      return { status: 'ready' };
    } catch (error) {
      return await reply.code(503).header('retry-after', '1').send({ status: 'unavailable', reason: (error as Error).message });
    } finally {
      clearTimeout(timer);
    }
  });
}
