/**
 * Listeners waiting for new messages on a topic. They are called from a microtask, never
 * inside the call that stored the messages, so a listener that calls back into the broker
 * sees the write finished. Each call runs in its own microtask: a listener that throws
 * surfaces as an uncaught error without keeping the others from running.
 */
export type WatchListener = (partition: number) => void;

export class Watchers {
  private readonly byTopic = new Map<string, Set<WatchListener>>();

  add(topic: string, listener: WatchListener): () => void {
    let set = this.byTopic.get(topic);
    if (set === undefined) {
      set = new Set();
      this.byTopic.set(topic, set);
    }
    // A wrapper per subscription, so the same function watched twice is two subscriptions.
    const subscription: WatchListener = (partition) => listener(partition);
    set.add(subscription);
    return () => {
      const current = this.byTopic.get(topic);
      if (current === undefined) return;
      current.delete(subscription);
      if (current.size === 0) this.byTopic.delete(topic);
    };
  }

  notify(topic: string, partitions: Iterable<number>): void {
    const set = this.byTopic.get(topic);
    if (set === undefined) return;
    for (const partition of new Set(partitions)) {
      for (const listener of set) {
        queueMicrotask(() => {
          // Skip a listener that unsubscribed (or a broker that closed) since the write.
          if (this.byTopic.get(topic)?.has(listener) === true) listener(partition);
        });
      }
    }
  }

  clear(): void {
    this.byTopic.clear();
  }
}
