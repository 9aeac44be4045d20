/**
 * Redrive and purge on a backend whose dead letters live in the shared store (RabbitMQ, Kafka):
 * the matching dead letters' ids, a chunk at a time, so a filter matching millions never loads
 * them at once.
 */
import type { DeadLetterFilter } from '../brokers/broker.js';
import type { CoordinationStore } from './store.js';

/** Dead letters handled per chunk. */
export const DEAD_LETTER_CHUNK = 500;

/** Runs `work` over the ids of the dead letters matching `filter`, in id order; sums what it returns. */
export async function inDeadLetterChunks(store: CoordinationStore, filter: DeadLetterFilter, work: (ids: number[]) => Promise<number>): Promise<number> {
  let done = 0;
  let after = 0;
  for (;;) {
    const ids = await store.matchDeadLetterIds(filter, after, DEAD_LETTER_CHUNK);
    if (ids.length === 0) return done;
    after = ids.at(-1)!;
    done += await work(ids);
    if (ids.length < DEAD_LETTER_CHUNK) return done;
  }
}
