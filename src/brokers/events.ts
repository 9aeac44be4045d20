/**
 * What a backend reports about itself, for logs and metrics to subscribe to (the service logs
 * each; the metrics issue counts them). Nothing here is on the hot path: events are emitted
 * only when something listens, and never for a message that goes as it should.
 *
 * No error is swallowed silently: work that nobody awaits (housekeeping, moving RabbitMQ's
 * dead letters, copying a new group's backlog, reconnecting) and fails is retried, and each
 * failure is a `background-error` event.
 */
import { EventEmitter } from 'node:events';

export interface BrokerEvents {
  /** A connection to the backend's server (or its store) dropped; work waits and is retried until it is back. */
  'connection-lost': [{ connection: string; error?: Error }];
  /** The connection is back. */
  'connection-restored': [{ connection: string }];
  /** Work nobody awaits failed; it is tried again. */
  'background-error': [{ operation: string; error: Error }];
}

/** The typed emitter every backend exposes as `events`. */
export class BrokerEventEmitter extends EventEmitter<BrokerEvents> {
  /** Emits only when someone listens: reporting costs nothing otherwise. */
  report<E extends keyof BrokerEvents>(event: E, payload: BrokerEvents[E][0]): void {
    if (this.listenerCount(event) === 0) return;
    (this.emit as (event: E, payload: BrokerEvents[E][0]) => boolean)(event, payload);
  }

  /** A `background-error` for `operation`, from whatever was thrown. */
  failed(operation: string, error: unknown): void {
    this.report('background-error', { operation, error: error instanceof Error ? error : new Error(String(error)) });
  }
}
