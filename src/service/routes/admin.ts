/**
 * Admin routes, behind the admin token when one is configured (without one the server
 * listens on loopback only):
 * - `GET /v1/stats[?topic=][&idleAfterMs=]`: per topic, group and partition (see `Botqueue.stats`);
 *   a group without live members, none seen for idleAfterMs (default 300000), is `idle`.
 * - `GET /v1/dead-letters?topic=&group=&key=&errorContains=&limit=&afterDlqId=`: a page of dead
 *   letters with their payloads; `next` is the `afterDlqId` of the following page (null at the end).
 * - `POST /v1/dead-letters/redrive` and `POST /v1/dead-letters/purge` with a JSON filter
 *   `{ topic?, group?, key?, errorContains?, dlqIds? }` (an empty filter needs `"all": true`):
 *   `{ "redriven": n }` / `{ "purged": n }`.
 */
import type { FastifyInstance } from 'fastify';
import type { Botqueue } from '../../client.js';
import type { DeadLetter, DeadLetterFilter, DeadLetterListOptions } from '../../index.js';
import type { WebhookRejections } from '../../gateway/rejections.js';
import type { AuthCheck } from '../auth.js';
import { HttpError, HttpErrorCodes } from '../http-errors.js';

export const DEFAULT_DEAD_LETTER_PAGE = 100;
export const MAX_DEAD_LETTER_PAGE = 1000;

export function registerAdminRoutes(app: FastifyInstance, options: { bq: Botqueue; auth: AuthCheck; webhookRejections?: WebhookRejections }): void {
  const { bq, auth, webhookRejections } = options;

  app.get('/v1/stats', { preHandler: auth }, async (request) => {
    const query = readQuery(request.query, ['topic', 'idleAfterMs']);
    const options = query.idleAfterMs === undefined ? undefined : { idleAfterMs: integerParam('idleAfterMs', query.idleAfterMs, 0, 30 * 86_400_000) };
    // `webhooks.rejected`: webhook requests this process refused, by platform and reason.
    return { topics: await bq.stats(query.topic, options), webhooks: { rejected: webhookRejections?.snapshot() ?? {} } };
  });

  app.get('/v1/dead-letters', { preHandler: auth }, async (request) => {
    const query = readQuery(request.query, ['topic', 'group', 'key', 'errorContains', 'limit', 'afterDlqId']);
    const limit = query.limit === undefined ? DEFAULT_DEAD_LETTER_PAGE : integerParam('limit', query.limit, 1, MAX_DEAD_LETTER_PAGE);
    const list: DeadLetterListOptions = { limit };
    if (query.topic !== undefined) list.topic = query.topic;
    if (query.group !== undefined) list.group = query.group;
    if (query.key !== undefined) list.key = query.key;
    if (query.errorContains !== undefined) list.errorContains = query.errorContains;
    if (query.afterDlqId !== undefined) list.afterDlqId = integerParam('afterDlqId', query.afterDlqId, 0, Number.MAX_SAFE_INTEGER);
    const letters = await bq.deadLetters.list(list);
    return { deadLetters: letters.map(present), next: letters.length === limit ? letters[letters.length - 1]!.dlqId : null };
  });

  app.post('/v1/dead-letters/redrive', { preHandler: auth }, async (request) => ({ redriven: await bq.deadLetters.redrive(readFilter(request.body)) }));
  app.post('/v1/dead-letters/purge', { preHandler: auth }, async (request) => ({ purged: await bq.deadLetters.purge(readFilter(request.body)) }));
}

const FILTER_FIELDS = ['topic', 'group', 'key', 'errorContains', 'dlqIds'] as const;

/** A redrive/purge filter from a JSON body; the backend checks the field types. Empty needs `all: true`. */
function readFilter(body: unknown): DeadLetterFilter {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, HttpErrorCodes.INVALID_BODY, 'the body must be a JSON filter such as { "topic": "updates", "key": "chat:42" }');
  }
  const { all, ...filter } = body as Record<string, unknown>;
  for (const name of Object.keys(filter)) {
    if (!(FILTER_FIELDS as readonly string[]).includes(name)) {
      throw new HttpError(400, HttpErrorCodes.INVALID_BODY, `unknown filter field "${name}"; known: ${FILTER_FIELDS.join(', ')}, all`);
    }
  }
  if (Object.keys(filter).length === 0 && all !== true) {
    throw new HttpError(400, HttpErrorCodes.INVALID_BODY, 'an empty filter matches every dead letter: name a topic, group, key, errorContains or dlqIds, or send "all": true');
  }
  return filter;
}

/** A dead letter with its payload as JSON rather than JSON text. */
function present(letter: DeadLetter): Omit<DeadLetter, 'payload'> & { payload: unknown } {
  let payload: unknown;
  try {
    payload = JSON.parse(letter.payload);
  } catch {
    payload = letter.payload;
  }
  return { ...letter, payload };
}

function readQuery(query: unknown, known: readonly string[]): Partial<Record<string, string>> {
  const out: Partial<Record<string, string>> = {};
  if (typeof query !== 'object' || query === null) return out;
  for (const [name, value] of Object.entries(query)) {
    if (!known.includes(name)) {
      throw new HttpError(400, HttpErrorCodes.INVALID_QUERY, `unknown query parameter "${name}"; known: ${known.join(', ')}`);
    }
    if (typeof value !== 'string') throw new HttpError(400, HttpErrorCodes.INVALID_QUERY, `query parameter "${name}" must be given once`);
    if (value === '') continue;
    out[name] = value;
  }
  return out;
}

function integerParam(name: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new HttpError(400, HttpErrorCodes.INVALID_QUERY, `query parameter "${name}" must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return value;
}
