/**
 * A topic's retained messages, in seq order (seqs only grow, so appending keeps the order).
 *
 * Each message knows its slot, so removing one is an array write, not a lookup by seq (in a Map
 * of every retained message that lookup was a visible share of each ack). Empty slots are passed
 * over at the front as the backlog drains, and swept out when they outnumber the retained
 * messages, so memory follows what is retained and the sweep costs O(1) per removal amortised.
 */
import type { StoredMessage } from './state.js';

export class MessageLog {
  private items: Array<StoredMessage | undefined> = [];
  /** Every slot before this index is empty. */
  private start = 0;
  private retained = 0;

  get size(): number {
    return this.retained;
  }

  append(message: StoredMessage): void {
    message.slot = this.items.length;
    this.items.push(message);
    this.retained += 1;
  }

  /** Removes a message of this log; removing it again does nothing. */
  remove(message: StoredMessage): void {
    if (message.slot < 0) return;
    this.items[message.slot] = undefined;
    message.slot = -1;
    this.retained -= 1;
    while (this.start < this.items.length && this.items[this.start] === undefined) this.start += 1;
    const empty = this.items.length - this.start - this.retained;
    if (this.start === this.items.length) {
      this.items = [];
      this.start = 0;
    } else if ((this.start > 1024 && this.start * 2 > this.items.length) || (empty > 1024 && empty > this.retained)) {
      this.compact();
    }
  }

  /** The retained messages in seq order. */
  *values(): IterableIterator<StoredMessage> {
    for (let i = this.start; i < this.items.length; i += 1) {
      const message = this.items[i];
      if (message !== undefined) yield message;
    }
  }

  private compact(): void {
    const kept: StoredMessage[] = [];
    for (const message of this.values()) {
      message.slot = kept.length;
      kept.push(message);
    }
    this.items = kept;
    this.start = 0;
  }
}
