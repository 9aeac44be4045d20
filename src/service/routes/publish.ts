/**
 * `POST /v1/topics/:topic/messages`: one message `{ key, id, payload, headers?, delayMs? }` or an
 * array of them. Answers 202 with the receipts only once `publishBatch` resolved, that is once
 * the messages are durably stored; every failure answers 4xx/5xx and stores nothing (a batch
 * is stored all or nothing).
 */
import type { FastifyInstance } from 'fastify';
import type { Botqueue } from '../../client.js';
import type { PublishInput } from '../../core/envelope.js';
import { checkName } from '../../core/envelope.js';
import type { AuthCheck } from '../auth.js';
import type { BacklogGate } from '../backlog.js';
import type { HttpConfig, TopicConfig } from '../config.js';
import { HttpError, HttpErrorCodes, RETRY_AFTER_BACKLOG_S } from '../http-errors.js';

export interface PublishRouteOptions {
  bq: Botqueue;
  topics: Readonly<Record<string, TopicConfig>>;
  http: HttpConfig;
  gate: BacklogGate;
  /** Set when the route requires the admin token. */
  auth: AuthCheck | undefined;
}

const SHAPE = 'a JSON object { key, id, payload, headers?, delayMs? } or an array of them';

export function registerPublishRoute(app: FastifyInstance, options: PublishRouteOptions): void {
  const { bq, topics, http, gate, auth } = options;
  app.post<{ Params: { topic: string } }>('/v1/topics/:topic/messages', { preHandler: auth }, async (request, reply) => {
    const topic = request.params.topic;
    checkName('topic', topic);
    if (!http.allowUndeclaredTopics && !Object.hasOwn(topics, topic)) {
      throw new HttpError(404, HttpErrorCodes.TOPIC_NOT_DECLARED, `topic "${topic}" is not declared in the config (http.allowUndeclaredTopics is false); declared: ${Object.keys(topics).join(', ') || 'none'}`);
    }
    const messages = bodyMessages(request.body, http.maxBatch);
    const over = await gate.over(topic);
    if (over !== undefined) {
      throw new HttpError(
        503,
        HttpErrorCodes.BACKLOG_FULL,
        `topic "${topic}" has about ${over.estimate} messages waiting, at or over its maxBacklog of ${over.limit}; nothing was stored, try again later`,
        { 'retry-after': String(RETRY_AFTER_BACKLOG_S) },
      );
    }
    const started = performance.now();
    // Each message is validated by publishBatch (prepareMessage), with errors naming the field and index.
    const receipts = await bq.publishBatch(topic, messages as PublishInput[]);
    const duplicates = receipts.filter((r) => r.duplicate).length;
    gate.accepted(topic, receipts.length - duplicates);
    request.log.debug(
      { 'botqueue.topic': topic, 'botqueue.messages': receipts.length, 'botqueue.duplicates': duplicates, 'event.duration': Math.round((performance.now() - started) * 1e6) },
      'messages stored',
    );
    return reply.code(202).send({ receipts });
  });
}

function bodyMessages(body: unknown, maxBatch: number): unknown[] {
  if (body === undefined) {
    throw new HttpError(400, HttpErrorCodes.INVALID_BODY, `the body is missing; send ${SHAPE} with the header content-type: application/json`);
  }
  if (Array.isArray(body)) {
    if (body.length === 0) throw new HttpError(400, HttpErrorCodes.INVALID_BODY, 'the body is an empty array; send at least one message');
    if (body.length > maxBatch) {
      throw new HttpError(413, HttpErrorCodes.BATCH_TOO_LARGE, `the body holds ${body.length} messages, over the limit of ${maxBatch} per request (http.maxBatch); split it`);
    }
    return body;
  }
  if (typeof body === 'object' && body !== null) return [body];
  throw new HttpError(400, HttpErrorCodes.INVALID_BODY, `the body must be ${SHAPE}, got ${body === null ? 'null' : `a ${typeof body}`}`);
}
