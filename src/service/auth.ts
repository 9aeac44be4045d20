/**
 * `Authorization: Bearer <BOTQUEUE_ADMIN_TOKEN>` for the admin routes (and the publish route
 * when `http.publishRequiresToken` is set). The comparison takes the same time whatever the
 * token sent: both sides are hashed to a fixed length, then compared with timingSafeEqual.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';
import { HttpError, HttpErrorCodes } from './http-errors.js';

export type AuthCheck = (request: FastifyRequest) => Promise<void>;

/** A preHandler that lets a request through with the right bearer token; undefined token: everyone. */
export function bearerAuth(token: string | undefined): AuthCheck {
  if (token === undefined) return () => Promise.resolve();
  const expected = digest(token);
  return (request) => {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (match === null) {
      return Promise.reject(unauthorized('this route needs the header Authorization: Bearer <BOTQUEUE_ADMIN_TOKEN>'));
    }
    if (!timingSafeEqual(digest(match[1]!), expected)) return Promise.reject(unauthorized('the bearer token is not BOTQUEUE_ADMIN_TOKEN'));
    return Promise.resolve();
  };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

function unauthorized(message: string): HttpError {
  return new HttpError(401, HttpErrorCodes.UNAUTHORIZED, message, { 'www-authenticate': 'Bearer realm="botqueue"' });
}
