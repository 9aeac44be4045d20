/**
 * Sequence numbers for publishes, per process: microseconds since the epoch, never repeating
 * and never going back within the process. RabbitMQ's queue order is the real order; the seq
 * lets the worker check per-key order and lets a receipt name its message. Publishers on
 * several hosts get comparable seqs as long as their clocks agree to within the time between
 * two publishes of one key from different hosts; where they do not, the consumer still hands
 * out messages in queue order (see PartitionSubscription).
 */
export class SeqClock {
  private last = 0;

  constructor(private readonly wallClock: () => number = Date.now) {}

  next(): number {
    const candidate = Math.floor(this.wallClock() * 1000);
    this.last = candidate > this.last ? candidate : this.last + 1;
    return this.last;
  }
}
