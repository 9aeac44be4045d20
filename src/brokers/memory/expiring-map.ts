/**
 * A map whose entries stop existing at their `expiresAt` (epoch ms): an entry is alive while
 * `now < expiresAt`. Used for the dedup window and the `ctx.once` effect journal.
 *
 * Entries are kept in insertion order (a replaced entry moves to the end), which is also
 * expiry order when the clock moves forward and the window is fixed, so `sweep` drops expired
 * entries from the front and stops at the first live one. Lookups check the time themselves,
 * so correctness never depends on sweeping.
 */
export class ExpiringMap<K, V> {
  private readonly entries = new Map<K, { value: V; expiresAt: number }>();

  get size(): number {
    return this.entries.size;
  }

  get(key: K, now: number): V | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (entry.expiresAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  set(key: K, value: V, expiresAt: number): void {
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt });
  }

  /** Drops expired entries from the front, at most `budget` of them (keeps each call short). */
  sweep(now: number, budget = 1000): void {
    let left = budget;
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt > now || left === 0) return;
      this.entries.delete(key);
      left -= 1;
    }
  }

  clear(): void {
    this.entries.clear();
  }
}
