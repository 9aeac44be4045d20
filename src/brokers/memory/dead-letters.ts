/** The dead-letter store: dead letters by increasing `dlqId`, filtered and paged. */
import type { DeadLetter, DeadLetterFilter, DeadLetterListOptions } from '../broker.js';
import { SeqIndex } from './seq-index.js';

export const DEFAULT_LIST_LIMIT = 100;

export class DeadLetterStore {
  private readonly byId = new SeqIndex<DeadLetter>();
  private nextId = 1;

  /** Stores a dead letter under the next id and returns it. */
  add(letter: Omit<DeadLetter, 'dlqId'>): DeadLetter {
    const stored: DeadLetter = { dlqId: this.nextId, ...letter };
    this.nextId += 1;
    this.byId.add(stored.dlqId, stored);
    return stored;
  }

  delete(dlqId: number): boolean {
    return this.byId.delete(dlqId);
  }

  /** Matching dead letters in ascending `dlqId`, after `afterDlqId`, at most `limit` (all when undefined). */
  find(filter: DeadLetterFilter, afterDlqId = 0, limit?: number): DeadLetter[] {
    const max = limit ?? Number.POSITIVE_INFINITY;
    const out: DeadLetter[] = [];
    if (max <= 0) return out;
    const needle = filter.errorContains?.toLowerCase();
    const test = (letter: DeadLetter): boolean =>
      (filter.topic === undefined || letter.topic === filter.topic) &&
      (filter.group === undefined || letter.group === filter.group) &&
      (filter.key === undefined || letter.key === filter.key) &&
      (needle === undefined || letter.error.message.toLowerCase().includes(needle));

    if (filter.dlqIds !== undefined) {
      const ids = [...new Set(filter.dlqIds)].filter((id) => id > afterDlqId).sort((a, b) => a - b);
      for (const id of ids) {
        const letter = this.byId.get(id);
        if (letter !== undefined && test(letter)) out.push(letter);
        if (out.length >= max) break;
      }
      return out;
    }
    // Page through the index so a scan never copies the whole store at once.
    let cursor = afterDlqId;
    const page = 1024;
    for (;;) {
      const batch = this.byId.after(cursor, page);
      for (const letter of batch) {
        if (test(letter)) out.push(letter);
        if (out.length >= max) return out;
      }
      if (batch.length < page) return out;
      cursor = batch[batch.length - 1]!.dlqId;
    }
  }

  list(options: DeadLetterListOptions): DeadLetter[] {
    return this.find(options, options.afterDlqId ?? 0, options.limit ?? DEFAULT_LIST_LIMIT).map(copyDeadLetter);
  }

  clear(): void {
    this.byId.clear();
  }
}

export function copyDeadLetter(letter: DeadLetter): DeadLetter {
  return { ...letter, headers: { ...letter.headers }, error: { ...letter.error } };
}
