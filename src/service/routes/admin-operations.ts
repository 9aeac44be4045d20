/**
 * More admin routes (same token as ./admin.ts), for the remote CLI and the dashboard:
 * - `DELETE /v1/topics/:topic` and `DELETE /v1/topics/:topic/groups/:group`: delete (409
 *   BOTQUEUE_GROUP_HAS_MEMBERS while workers run in it). `{ "deleted": "topic" | "group" }`.
 * - `GET /v1/dead-letters/:dlqId`: one dead letter with payload, error (stack) and attempts.
 * - `GET /v1/dead-letters/summary?topic=&group=`: counts by topic, group and error message
 *   (reads every matching dead letter in pages; the DLQ is for inspection, not hot paths).
 */
import type { FastifyInstance } from 'fastify';
import type { Botqueue } from '../../client.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { AuthCheck } from '../auth.js';
import { HttpError, HttpErrorCodes } from '../http-errors.js';

const SUMMARY_PAGE = 1000;
/** A summary reads at most this many dead letters (and says so when it stops). */
const SUMMARY_MAX = 100_000;

export function registerAdminOperationRoutes(app: FastifyInstance, options: { bq: Botqueue; auth: AuthCheck }): void {
  const { bq, auth } = options;

  app.delete<{ Params: { topic: string } }>('/v1/topics/:topic', { preHandler: auth }, async (request) => {
    await bq.deleteTopic(request.params.topic);
    return { deleted: 'topic', topic: request.params.topic };
  });

  app.delete<{ Params: { topic: string; group: string } }>('/v1/topics/:topic/groups/:group', { preHandler: auth }, async (request) => {
    await bq.deleteGroup(request.params.topic, request.params.group);
    return { deleted: 'group', topic: request.params.topic, group: request.params.group };
  });

  app.get<{ Querystring: { topic?: string; group?: string } }>('/v1/dead-letters/summary', { preHandler: auth }, async (request) => {
    const { topic, group } = request.query;
    const counts = new Map<string, { topic: string; group: string; error: string; count: number; parked: number; lastFailedAt: number }>();
    let after = 0;
    let read = 0;
    for (;;) {
      const page = await bq.deadLetters.list({ ...(topic ? { topic } : {}), ...(group ? { group } : {}), afterDlqId: after, limit: SUMMARY_PAGE });
      for (const letter of page) {
        const id = JSON.stringify([letter.topic, letter.group, letter.error.message]);
        const entry = counts.get(id) ?? { topic: letter.topic, group: letter.group, error: letter.error.message, count: 0, parked: 0, lastFailedAt: 0 };
        entry.count++;
        if (letter.parked) entry.parked++;
        entry.lastFailedAt = Math.max(entry.lastFailedAt, letter.lastFailedAt);
        counts.set(id, entry);
      }
      read += page.length;
      if (page.length < SUMMARY_PAGE || read >= SUMMARY_MAX) break;
      after = page[page.length - 1]!.dlqId;
    }
    return { summary: [...counts.values()].sort((a, b) => b.count - a.count), read, complete: read < SUMMARY_MAX };
  });

  app.get<{ Params: { dlqId: string } }>('/v1/dead-letters/:dlqId', { preHandler: auth }, async (request) => {
    const id = /^\d+$/.test(request.params.dlqId) ? Number(request.params.dlqId) : Number.NaN;
    if (!Number.isSafeInteger(id)) throw new HttpError(400, HttpErrorCodes.INVALID_QUERY, `dead letter id must be an integer, got ${JSON.stringify(request.params.dlqId)}`);
    const [letter] = await bq.deadLetters.list({ dlqIds: [id], limit: 1 });
    if (letter === undefined) throw new BotqueueError(ErrorCodes.NOT_FOUND, `no dead letter ${id} (redriven or purged already?)`);
    let payload: unknown;
    try {
      payload = JSON.parse(letter.payload);
    } catch {
      payload = letter.payload;
    }
    return { deadLetter: { ...letter, payload } };
  });
}
