/**
 * Lets one copy of an id through when a backfill copied it twice.
 *
 * A copier that dies between publishing a batch of copies and recording it leaves copies in
 * the group's queues that the next copier makes again; the twins come behind newer messages of
 * their keys, so handling them would break order, not only repeat work. Every copy carries its
 * batch. A batch the store names as clean has no twins: it was recorded (its ids are in the
 * ledger, no later copier copies them) by a backfill in which no copier had died mid-batch. Its
 * copies pass without a write: the common case, as a group's workers usually read copies after
 * the copier recorded them. A copy of any other batch (not recorded yet, never recorded, or
 * made by the copier that carried on after a death) is claimed first: the first copy of an id to claim it is handled, and redelivered
 * again and again if need be; a copy of another batch finds the id claimed and is dropped.
 */
import type { ConsumeMessage } from 'amqplib';
import type { CoordinationStore } from '../../stores/store.js';
import { COPY_BATCH_HEADER } from './topology.js';

/** Clean batches remembered per partition subscription (a batch is 1,000 copies). */
const MAX_REMEMBERED_BATCHES = 1_024;

export class CopyClaims {
  private readonly recorded = new Set<string>();

  constructor(
    private readonly store: CoordinationStore,
    private readonly topic: string,
    private readonly group: string,
  ) {}

  /** The indexes of `messages` that are twins of a copy already claimed: ack them unhandled. */
  async twins(messages: readonly ConsumeMessage[], ids: ReadonlyArray<string | undefined>): Promise<Set<number>> {
    const twins = new Set<number>();
    let unknown: Set<string> | undefined;
    for (const message of messages) {
      const batch = batchOf(message);
      if (batch !== undefined && !this.recorded.has(batch)) (unknown ??= new Set()).add(batch);
    }
    if (unknown === undefined) return twins;
    const nowRecorded = await this.store.cleanBatches(this.topic, this.group, [...unknown]);
    for (const batch of nowRecorded) this.remember(batch);
    const claims: Array<{ id: string; batch: string }> = [];
    const indexesById = new Map<string, number[]>();
    for (let i = 0; i < messages.length; i++) {
      const batch = batchOf(messages[i]!);
      const id = ids[i];
      if (batch === undefined || id === undefined || this.recorded.has(batch)) continue;
      const seen = indexesById.get(id);
      // Two copies of one id in one burst: the later one is a twin whatever the store says.
      if (seen !== undefined) {
        twins.add(i);
        continue;
      }
      indexesById.set(id, [i]);
      claims.push({ id, batch });
    }
    if (claims.length === 0) return twins;
    const others = await this.store.claimCopies(this.topic, this.group, claims);
    for (const id of others) for (const i of indexesById.get(id) ?? []) twins.add(i);
    return twins;
  }

  private remember(batch: string): void {
    this.recorded.add(batch);
    if (this.recorded.size > MAX_REMEMBERED_BATCHES) {
      const oldest = this.recorded.values().next();
      if (oldest.done !== true) this.recorded.delete(oldest.value);
    }
  }
}

function batchOf(message: ConsumeMessage): string | undefined {
  const batch: unknown = message.properties.headers?.[COPY_BATCH_HEADER];
  if (typeof batch === 'string') return batch;
  if (Buffer.isBuffer(batch)) return batch.toString('utf8');
  return undefined;
}
