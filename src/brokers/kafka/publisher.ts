/**
 * Sends records with acks all on the idempotent producer. Concurrent publishes are coalesced:
 * while one request is in flight the next ones gather and go out together (one ProduceRequest
 * for many callers), so a busy publisher pays one round trip per batch, not per call.
 */
import type { OutgoingRecord } from './codec.js';
import type { RawProducer } from './kafkajs-parts.js';

interface Pending {
  topic: string;
  records: OutgoingRecord[];
  resolve(offsets: number[]): void;
  reject(error: unknown): void;
}

export class CoalescingPublisher {
  private queue: Pending[] = [];
  private sending = false;

  constructor(private readonly producer: RawProducer) {}

  /** Resolves with each record's offset, in input order, once every in-sync replica has it. */
  send(topic: string, records: OutgoingRecord[]): Promise<number[]> {
    if (records.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      this.queue.push({ topic, records, resolve, reject });
      if (!this.sending) void this.drain();
    });
  }

  private async drain(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        await this.sendBatch(batch);
      }
    } finally {
      this.sending = false;
    }
  }

  private async sendBatch(batch: Pending[]): Promise<void> {
    const byTopic = new Map<string, OutgoingRecord[]>();
    for (const pending of batch) {
      const list = byTopic.get(pending.topic) ?? [];
      for (const record of pending.records) list.push(record);
      byTopic.set(pending.topic, list);
    }
    let results: Awaited<ReturnType<RawProducer['sendBatch']>>;
    try {
      results = await this.producer.sendBatch({ acks: -1, topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })) });
    } catch (error) {
      for (const pending of batch) pending.reject(error);
      return;
    }
    // Records of one partition in one request get consecutive offsets from the base, in order.
    const next = new Map<string, number>();
    for (const result of results) next.set(`${result.topicName}\u0000${result.partition}`, Number(result.baseOffset));
    for (const pending of batch) {
      const offsets: number[] = [];
      for (const record of pending.records) {
        const at = `${pending.topic}\u0000${record.partition}`;
        const offset = next.get(at) ?? NaN;
        next.set(at, offset + 1);
        offsets.push(offset);
      }
      pending.resolve(offsets);
    }
  }
}
