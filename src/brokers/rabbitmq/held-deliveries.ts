/**
 * The deliveries a partition consumer holds unacked, in delivery order, by seq.
 *
 * Seqs are added in increasing order and removed in any order (keys settle independently).
 * The worker reads "everything after the seq I have": with a few hundred held, scanning from
 * the start on every read was a visible cost, so the order is kept in an array searched by
 * bisection; removed entries are skipped and the array is compacted as its front empties.
 */
export interface Seqd {
  readonly seq: number;
}

export class HeldDeliveries<T extends Seqd> {
  private readonly bySeq = new Map<number, T>();
  /** In seq order; removed entries stay (as holes) until compaction. */
  private order: T[] = [];
  /** Index of the first entry of `order` that may still be held. */
  private head = 0;

  get size(): number {
    return this.bySeq.size;
  }

  add(entry: T): void {
    const last = this.order[this.order.length - 1];
    if (last !== undefined && last.seq >= entry.seq) throw new RangeError(`held deliveries: seq ${entry.seq} is not above ${last.seq}`);
    this.bySeq.set(entry.seq, entry);
    this.order.push(entry);
  }

  get(seq: number): T | undefined {
    return this.bySeq.get(seq);
  }

  has(seq: number): boolean {
    return this.bySeq.has(seq);
  }

  remove(seq: number): T | undefined {
    const entry = this.bySeq.get(seq);
    if (entry === undefined) return undefined;
    this.bySeq.delete(seq);
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
      if (this.bySeq.get(entry.seq) === entry) out.push(entry);
    }
    return out;
  }

  values(): IterableIterator<T> {
    return this.bySeq.values();
  }

  clear(): void {
    this.bySeq.clear();
    this.order = [];
    this.head = 0;
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

  /**
   * Moves head past removed entries, and compacts when holes outnumber what is held: a key
   * waiting for a retry can pin the front for a long time while everything behind it flows, so
   * the front emptying is not enough. Each compaction is paid for by as many removals.
   */
  private skipRemoved(): void {
    while (this.head < this.order.length && !this.bySeq.has(this.order[this.head]!.seq)) this.head++;
    if (this.head === this.order.length) {
      this.order = [];
      this.head = 0;
      return;
    }
    const slots = this.order.length - this.head;
    if (slots > 256 && slots > 2 * this.bySeq.size) {
      this.order = this.order.slice(this.head).filter((entry) => this.bySeq.get(entry.seq) === entry);
      this.head = 0;
    } else if (this.head > 256 && this.head * 2 > this.order.length) {
      this.order = this.order.slice(this.head);
      this.head = 0;
    }
  }
}
