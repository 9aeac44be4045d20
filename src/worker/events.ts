import type { EventEmitter } from 'node:events';
import type { ErrorInfo } from '../core/errors.js';

/**
 * The worker's instrumentation events. Metrics and logs subscribe to them; the hot path only
 * builds an event when someone listens (see `Instrumentation.emitIfListened`).
 */
export interface WorkerEvents {
  /**
   * A handler starts on a message (`attempt` 1 is the first delivery). `queuedMs`: from publish
   * to this start (for attempt 1, the queue time).
   */
  delivered: [event: { topic: string; group: string; partition: number; attempt: number; queuedMs: number }];
  /** A handler finished and the message was settled. */
  completed: [event: { topic: string; group: string; partition: number; seq: number; id: string; attempt: number; durationMs: number }];
  /** A handler threw; the message will be tried again after `delayMs`. */
  retried: [event: { topic: string; group: string; partition: number; seq: number; id: string; attempt: number; delayMs: number; error: ErrorInfo }];
  /**
   * A handler threw `RetryLater`: the message comes back after `delayMs`, its key waits, and no
   * attempt is counted. `deferrals` counts this message's deferrals on this worker (this one included).
   */
  deferred: [event: { topic: string; group: string; partition: number; seq: number; id: string; delayMs: number; deferrals: number; reason: string | null }];
  /** A message went to the dead-letter store (and, with park-key, its key waits). */
  'dead-lettered': [event: { topic: string; group: string; partition: number; seq: number; id: string; attempts: number; parked: boolean; error: ErrorInfo }];
  /** A partition was taken by this worker. */
  assigned: [event: { topic: string; group: string; partition: number; fence: number }];
  /** A partition was given up on purpose (rebalance or close). */
  released: [event: { topic: string; group: string; partition: number }];
  /** A partition's lease was lost: another member owns it now; this worker's settlements for it are refused. */
  'lease-lost': [event: { topic: string; group: string; partition: number }];
  /** A key's messages arrived out of seq order. Must never happen; counted in stats. */
  'order-violation': [event: { topic: string; group: string; partition: number; seq: number }];
  /** The worker could not reach the broker or hit an internal problem; it keeps trying. */
  error: [error: Error];
}

/**
 * How the worker's parts report through the worker's emitter: an event is built only when
 * someone listens, so instrumentation costs nothing on the hot path when nobody does.
 */
export class Instrumentation {
  constructor(private readonly emitter: EventEmitter<WorkerEvents>) {}

  listens(event: keyof WorkerEvents): boolean {
    return this.emitter.listenerCount(event) > 0;
  }

  emitIfListened<E extends Exclude<keyof WorkerEvents, 'error'>>(event: E, build: () => WorkerEvents[E][0]): void {
    if (this.emitter.listenerCount(event) === 0) return;
    this.emit(event, build());
  }

  /** Emits an event already built (after `listens` said someone does). */
  emit<E extends Exclude<keyof WorkerEvents, 'error'>>(event: E, payload: WorkerEvents[E][0]): void {
    (this.emitter.emit as (event: E, payload: WorkerEvents[E][0]) => boolean)(event, payload);
  }

  reportError(error: unknown): void {
    if (this.emitter.listenerCount('error') === 0) return;
    this.emitter.emit('error', error instanceof Error ? error : new Error(String(error)));
  }
}
