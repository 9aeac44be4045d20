import type { ErrorInfo } from '../core/errors.js';

/**
 * The worker's instrumentation events. Metrics and logs subscribe to them; the hot path only
 * builds an event when someone listens (see `Worker.emitIfListened`).
 */
export interface WorkerEvents {
  /** A handler finished and the message was settled. */
  completed: [event: { topic: string; group: string; partition: number; seq: number; id: string; attempt: number; durationMs: number }];
  /** A handler threw; the message will be tried again after `delayMs`. */
  retried: [event: { topic: string; group: string; partition: number; seq: number; id: string; attempt: number; delayMs: number; error: ErrorInfo }];
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
