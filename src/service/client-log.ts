/**
 * A log line for each event of a client that an operator must see: a broker connection lost or
 * back, background work that failed (each is retried), a publish that failed. Publish outcomes
 * go at debug (counts only, never payloads or ids). Used by the gateway and by each worker
 * process, so nothing the backend reports is silent in the service.
 */
import type { Botqueue } from '../client.js';
import { throttledErrorLog, type Logger } from './logger.js';

export function logClientEvents(bq: Botqueue, logger: Logger): void {
  const log = logger.child({ 'botqueue.component': 'broker' });
  // An outage repeats the same failure on every retry: one line per 5 s is enough.
  const backgroundError = throttledErrorLog(log, 'background work failed; it is retried');
  bq.events.on('connection-lost', (e) => log.warn({ 'botqueue.connection': e.connection, error: e.error }, 'connection lost; waiting for it to come back'));
  bq.events.on('connection-restored', (e) => log.info({ 'botqueue.connection': e.connection }, 'connection restored'));
  bq.events.on('background-error', (e) => backgroundError(e.error, { 'botqueue.operation': e.operation }));
  bq.events.on('publish-failed', (e) => log.warn({ 'botqueue.topic': e.topic, 'botqueue.messages': e.messages, error: e.error }, 'publish failed'));
  if (log.isLevelEnabled('debug')) {
    bq.events.on('published', (e) =>
      log.debug({ 'botqueue.topic': e.topic, 'botqueue.messages': e.messages, 'botqueue.duplicates': e.duplicates, 'event.duration': Math.round(e.durationMs * 1e6) }, 'published'),
    );
  }
}
