/**
 * Items keyed by an increasing number (a message's seq, a dead letter's id), readable in key
 * order from any point in O(log n) plus the page read.
 *
 * Keys arrive almost always in increasing order, so they live in a sorted array that is only
 * appended to; a deletion removes the item from the map and leaves its key in the array as a
 * hole that reads skip. Holes at the front are passed over once and for all (`start`); holes
 * elsewhere are swept out when they outnumber the live items, so sweeping costs O(1) per
 * deletion amortised and a page never walks more than a bounded share of dead keys.
 */
export class SeqIndex<T> {
  private keys: number[] = [];
  /** Every key before this index has been deleted. */
  private start = 0;
  private readonly items = new Map<number, T>();

  get size(): number {
    return this.items.size;
  }

  get(key: number): T | undefined {
    return this.items.get(key);
  }

  add(key: number, item: T): void {
    if (this.items.has(key)) {
      this.items.set(key, item);
      return;
    }
    this.items.set(key, item);
    const last = this.keys.length === 0 ? undefined : this.keys[this.keys.length - 1];
    if (last === undefined || key > last) {
      this.keys.push(key);
      return;
    }
    // Out of order (not expected from the broker, kept correct anyway). A key already in the
    // array as a hole is live again in place.
    const at = upperBound(this.keys, key - 1, 0);
    if (this.keys[at] === key) {
      if (at < this.start) this.start = at;
      return;
    }
    this.keys.splice(at, 0, key);
    if (at < this.start) this.start = at;
  }

  delete(key: number): boolean {
    if (!this.items.delete(key)) return false;
    this.compactIfSparse();
    return true;
  }

  /** The item with the smallest key, or undefined when empty. */
  first(): T | undefined {
    this.skipLeadingHoles();
    const key = this.keys[this.start];
    return key === undefined ? undefined : this.items.get(key);
  }

  /** Up to `limit` items with a key greater than `after`, in key order. */
  after(after: number, limit: number): T[] {
    const out: T[] = [];
    if (limit <= 0 || this.items.size === 0) return out;
    this.skipLeadingHoles();
    for (let i = upperBound(this.keys, after, this.start); i < this.keys.length && out.length < limit; i += 1) {
      const item = this.items.get(this.keys[i]!);
      if (item !== undefined) out.push(item);
    }
    return out;
  }

  /** Every item in key order. */
  *values(): IterableIterator<T> {
    for (let i = this.start; i < this.keys.length; i += 1) {
      const item = this.items.get(this.keys[i]!);
      if (item !== undefined) yield item;
    }
  }

  clear(): void {
    this.keys = [];
    this.start = 0;
    this.items.clear();
  }

  private skipLeadingHoles(): void {
    while (this.start < this.keys.length && !this.items.has(this.keys[this.start]!)) this.start += 1;
    if (this.start === this.keys.length && this.start > 0) {
      this.keys = [];
      this.start = 0;
    } else if (this.start > 1024 && this.start * 2 > this.keys.length) {
      // Most of the array is passed-over holes: drop them so a drained backlog frees its memory.
      this.keys = this.keys.slice(this.start);
      this.start = 0;
    }
  }

  private compactIfSparse(): void {
    const holes = this.keys.length - this.start - this.items.size;
    if (holes <= 1024 || holes <= this.items.size) return;
    this.keys = this.keys.filter((key, i) => i >= this.start && this.items.has(key));
    this.start = 0;
  }
}

/** The first index at or after `from` whose key is greater than `value`. */
function upperBound(keys: number[], value: number, from: number): number {
  let lo = from;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! <= value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
