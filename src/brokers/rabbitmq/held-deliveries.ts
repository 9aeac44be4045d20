/**
 * The deliveries a partition consumer holds unacked, in delivery order, by seq.
 *
 * Seqs are added in increasing order and removed in any order (keys settle independently).
 * The worker reads "everything after the seq I have": with a few hundred held, scanning from
 * the start on every read was a visible cost, so the order is kept in an array searched by
 * bisection, also for lookups by seq (seqs are µs timestamps, beyond small integers: as Map keys
 * each would be boxed and hashed). Removed entries are flagged and skipped, and the array is
 * compacted as they pile up.
 */
export interface Seqd {
  readonly seq: number;
  /** Set by HeldDeliveries when the entry is removed. */
  removed?: boolean;
}

export class HeldDeliveries<T extends Seqd> {
  /** In seq order; removed entries stay (flagged) until compaction. */
  private order: T[] = [];
  /** Index of the first entry of `order` that may still be held. */
  private head = 0;
  private held = 0;

  get size(): number {
    return this.held;
  }

  add(entry: T): void {
    const last = this.order[this.order.length - 1];
    if (last !== undefined && last.seq >= entry.seq) throw new RangeError(`held deliveries: seq ${entry.seq} is not above ${last.seq}`);
    entry.removed = false;
    this.order.push(entry);
    this.held++;
  }

  get(seq: number): T | undefined {
    const entry = this.order[this.indexFrom(seq)];
    return entry !== undefined && entry.seq === seq && entry.removed !== true ? entry : undefined;
  }

  remove(seq: number): T | undefined {
    const entry = this.get(seq);
    if (entry === undefined) return undefined;
    entry.removed = true;
    this.held--;
    this.skipRemoved();
    return entry;
  }

  /** The held entry with the lowest seq. */
  first(): T | undefined {
    return this.order[this.head];
  }

  /** Held entries with seq > afterSeq, in order, at most `limit`. */
  after(afterSeq: number, limit: number): T[] {
    const out: T[] = [];
    for (let i = this.indexAfter(afterSeq); i < this.order.length && out.length < limit; i++) {
      const entry = this.order[i]!;
      if (entry.removed !== true) out.push(entry);
    }
    return out;
  }

  *values(): IterableIterator<T> {
    for (let i = this.head; i < this.order.length; i++) {
      const entry = this.order[i]!;
      if (entry.removed !== true) yield entry;
    }
  }

  clear(): void {
    this.order = [];
    this.head = 0;
    this.held = 0;
  }

  /** First index (from head) whose seq is above `seq`. */
  private indexAfter(seq: number): number {
    let low = this.head;
    let high = this.order.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.order[mid]!.seq <= seq) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /** First index (from head) whose seq is `seq` or above. */
  private indexFrom(seq: number): number {
    let low = this.head;
    let high = this.order.length;
    while (low < high) {
      const mid = (low + high) >>> 1;
      if (this.order[mid]!.seq < seq) low = mid + 1;
      else high = mid;
    }
    return low;
  }

  /**
   * Moves head past removed entries, and compacts when they outnumber what is held: a key
   * waiting for a retry can pin the front for a long time while everything behind it flows, so
   * the front emptying is not enough. Each compaction is paid for by as many removals.
   */
  private skipRemoved(): void {
    while (this.head < this.order.length && this.order[this.head]!.removed === true) this.head++;
    if (this.head === this.order.length) {
      this.order = [];
      this.head = 0;
      return;
    }
    const slots = this.order.length - this.head;
    if (slots > 256 && slots > 2 * this.held) {
      this.order = this.order.slice(this.head).filter((entry) => entry.removed !== true);
      this.head = 0;
    } else if (this.head > 256 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
