/**
 * Verifies, on every delivery, that a key's messages arrive in seq order (the seed asks for a
 * mechanism that checks order, not one that hopes for it). Remembers the last seq started per
 * key in a bounded map (least recently used keys are forgotten), so memory stays bounded with
 * millions of conversations. A repeat of the same seq is a retry, not a violation.
 */
export class OrderCheck {
  private readonly lastSeq = new Map<string, number>();
  violations = 0;

  constructor(private readonly maxKeys = 100_000) {}

  /** Records the start of `seq` for `key`; returns false (and counts) when it goes backwards. */
  observe(key: string, seq: number): boolean {
    const last = this.lastSeq.get(key);
    if (last !== undefined) this.lastSeq.delete(key);
    this.lastSeq.set(key, last === undefined ? seq : Math.max(last, seq));
    if (this.lastSeq.size > this.maxKeys) {
      const oldest = this.lastSeq.keys().next();
      if (oldest.done !== true) this.lastSeq.delete(oldest.value);
    }
    if (last !== undefined && seq < last) {
      this.violations++;
      return false;
    }
    return true;
  }
}
