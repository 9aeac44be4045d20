/**
 * A new group's backlog. Messages published while a topic has no group wait in its
 * `~unclaimed` queue; a group created in that time gets a copy of each, in order, before it is
 * bound to the topic's exchange, so they come before anything published after.
 *
 * One pass rotates the unclaimed queue: a marker goes to its tail, then every message before
 * the marker is copied to the group's partition queue and put back at the tail (for groups
 * created later), until the marker comes round. The messages of a pass are handled in batches
 * with every publish of a batch awaiting its confirm at once. (One message at a time, awaiting
 * two confirms each, copied 200–350 messages/s: a 6,000-message backlog held the group's
 * workers back for 15–30 s, and one of them — the copier — never joined while it copied.)
 *
 * A crash mid-copy loses nothing and doubles nothing: the group stays marked "backfilling" in
 * the store until done, and the ids copied so far are written to the store after their copies
 * were confirmed and before the originals are acked. Whoever next opens the group (the store's
 * lock passes on when the copier's connection dies) carries on and skips what the ledger names.
 * A crash between a batch's publish and its ledger write makes the next copier copy that batch
 * again, so some ids then have two copies in the group's queues, the second behind newer
 * messages of their key. Each copy carries its batch (COPY_BATCH_HEADER), and a consumer lets
 * only one copy of an id through: see copy-claims.ts.
 */
import { randomUUID } from 'node:crypto';
import type { ConsumeMessage } from 'amqplib';
import { closeChannel, type AmqpConnection } from './connection.js';
import { decodeMessage } from './message-codec.js';
import type { Names } from './names.js';
import type { ConfirmPublisher, Outgoing } from './publisher.js';
import type { CoordinationStore } from '../../stores/store.js';
import { COPY_BATCH_HEADER, MARKER_HEADER } from './topology.js';

/** Deliveries a pass holds unacked at once: the most one batch can be. */
const PASS_PREFETCH = 4_000;
/** Messages copied per batch: deliveries keep arriving (up to PASS_PREFETCH) while a batch is copied. */
const BATCH = 1_000;
/** How long after the bind a message routed just before it is surely counted in the unclaimed queue. */
const SETTLE_AFTER_BIND_MS = 200;
/** Passes before giving up on a queue that publishers keep filling (they publish to the group once it is bound). */
const MAX_PASSES = 5;

export interface BackfillParts {
  connection: AmqpConnection;
  publisher: ConfirmPublisher;
  store: CoordinationStore;
  names: Names;
  /** Ready messages of a queue. */
  readyCount(queue: string): Promise<number>;
}

/** What one pass did. */
export interface PassResult {
  /** Messages before the marker (botqueue's or not). */
  seen: number;
  /** Of those, copied to the group now (not named by the ledger). */
  copied: number;
}

/**
 * Copies the unclaimed backlog to the group, pass after pass while publishes arrive during
 * one; then `bind` makes the group receive new publishes, and one more pass copies what
 * arrived before the bind, if anything did. Call under the topic's unclaimed lock. Returns how
 * many messages were copied.
 */
export async function backfillGroup(parts: BackfillParts, topic: string, group: string, bind: () => Promise<void>): Promise<number> {
  const queue = parts.names.unclaimedQueue(topic);
  // A pass puts back what it saw: more than that in the queue afterwards arrived during it.
  const arrivedDuring = async (pass: PassResult): Promise<boolean> => (await parts.readyCount(queue)) > pass.seen;
  // A copier died mid-batch before: the copies this run makes may have twins (copy-claims.ts).
  const clean = (await parts.store.unrecordedBatches(topic, group)) === 0;
  let copied = 0;
  let last: PassResult = { seen: 0, copied: 0 };
  for (let pass = 0; pass < MAX_PASSES; pass++) {
    const result = await copyPass(parts, topic, group, clean);
    copied += result.copied;
    last = result;
    if (!(await arrivedDuring(result))) break;
  }
  await bind();
  // A message routed to the unclaimed queue just before the bind may not be counted there yet:
  // give it a moment, then copy what came between the last pass and the bind, if anything did
  // (the ledger skips what was copied before). The one window left: a key with messages on
  // both sides of the bind within that moment may see its newer one first (docs/rabbitmq.md).
  await new Promise((resolve) => setTimeout(resolve, SETTLE_AFTER_BIND_MS));
  if (await arrivedDuring(last)) copied += (await copyPass(parts, topic, group, clean)).copied;
  await parts.store.finishBackfill(topic, group);
  return copied;
}

/** One rotation of the unclaimed queue (see the module comment). */
export async function copyPass(parts: BackfillParts, topic: string, group: string, clean: boolean): Promise<PassResult> {
  const { connection, publisher, store, names } = parts;
  const queue = names.unclaimedQueue(topic);
  const putBackTo = names.unclaimedExchange(topic);
  const marker = `${group}:${randomUUID()}`;
  const channel = await connection.channel();
  try {
    await channel.prefetch(PASS_PREFETCH);
    // The marker goes in before anything is read, so no put-back can land ahead of it.
    await publisher.publishAll([{ exchange: putBackTo, routingKey: '', content: Buffer.alloc(0), properties: { persistent: true, headers: { [MARKER_HEADER]: marker } } }]);
    const result: PassResult = { seen: 0, copied: 0 };
    await new Promise<void>((resolve, reject) => {
      let arrived: ConsumeMessage[] = [];
      let working = false;
      let finished = false;
      const fail = (error: unknown): void => {
        finished = true;
        reject(error instanceof Error ? error : new Error(String(error)));
      };
      channel.on('close', () => {
        if (!finished) fail(new Error(`channel closed while copying ${queue} to group "${group}"`));
      });
      /** Batches in arrival order, one at a time: the copies keep the queue's order. */
      const work = async (): Promise<void> => {
        while (arrived.length > 0 && !finished) {
          const batch = arrived.length <= BATCH ? arrived : arrived.slice(0, BATCH);
          arrived = arrived.length <= BATCH ? [] : arrived.slice(BATCH);
          const end = batch.findIndex((m) => m.properties.headers?.[MARKER_HEADER] === marker);
          const mine = end === -1 ? batch : batch.slice(0, end + 1);
          const decoded = mine.map((m) => (m.properties.headers?.[MARKER_HEADER] === undefined ? decodeMessage(m.properties, m.content) : undefined));
          const ids = decoded.flatMap((d) => (d === undefined ? [] : [d.id]));
          const done = ids.length === 0 ? new Set<string>() : await store.copiedIds(topic, group, ids);
          const batchId = randomUUID();
          const outgoing: Outgoing[] = [];
          const newlyCopied: string[] = [];
          for (let i = 0; i < mine.length; i++) {
            const message = mine[i]!;
            // Markers of passes that died, and ours, are dropped (acked with the batch).
            if (message.properties.headers?.[MARKER_HEADER] !== undefined) continue;
            result.seen++;
            // The unclaimed queue's own delivery count must not follow the copy into a group's queue.
            const { 'x-delivery-count': _count, [COPY_BATCH_HEADER]: _batch, ...headers } = message.properties.headers ?? {};
            const properties = { ...message.properties, headers, persistent: true };
            const d = decoded[i];
            // `done` also catches an id seen twice in the queue (put back by a copier that died before its ack).
            if (d !== undefined && !done.has(d.id)) {
              done.add(d.id);
              const copy = { ...properties, headers: { ...headers, [COPY_BATCH_HEADER]: batchId } };
              outgoing.push({ exchange: '', routingKey: names.partitionQueue(topic, group, d.partition), content: message.content, properties: copy });
              newlyCopied.push(d.id);
            }
            outgoing.push({ exchange: putBackTo, routingKey: '', content: message.content, properties });
          }
          if (newlyCopied.length > 0) await store.beginCopyBatch(topic, group, batchId, clean);
          await publisher.publishAll(outgoing);
          if (newlyCopied.length > 0) await store.recordCopied(topic, group, newlyCopied, batchId);
          result.copied += newlyCopied.length;
          channel.ack(mine.at(-1)!, true);
          if (end !== -1) {
            finished = true;
            resolve();
          }
        }
      };
      const kick = (): void => {
        if (working || finished) return;
        working = true;
        work()
          .catch(fail)
          .finally(() => {
            working = false;
            if (arrived.length > 0) kick();
          });
      };
      channel
        .consume(
          queue,
          (message) => {
            if (message === null) return;
            arrived.push(message);
            // amqplib hands over a socket read's deliveries in one loop: take them as one batch.
            if (!working) queueMicrotask(kick);
          },
          { noAck: false },
        )
        .catch(fail);
    });
    return result;
  } finally {
    await closeChannel(channel);
  }
}
