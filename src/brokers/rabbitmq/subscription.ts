/**
 * This process's consumer of one partition queue, and the deliveries it holds unacked.
 *
 * The queue has single active consumer: of all processes subscribed, RabbitMQ delivers to one,
 * and hands the queue to the next only when that one's channel closes, with its unacked
 * messages first and in order. So the queue's order is the order, across failovers.
 *
 * The worker reads the held deliveries with `fetch(afterSeq)`, as from any backend. What it
 * has not settled stays unacked here: a key waiting for a retry or a delay keeps its messages
 * in this buffer (bounded by the channel's prefetch), never nack-requeued (that would send them
 * behind newer messages) and never handed back with basic.cancel (the standby would get newer
 * messages before these). To stop, the channel is closed after the worker settled what it ran.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Delivery } from '../broker.js';
import { closeChannel, type AmqpConnection } from './connection.js';
import { CopyClaims } from './copy-claims.js';
import { HeldDeliveries } from './held-deliveries.js';
import { decodeMessage } from './message-codec.js';
import type { CoordinationStore, MessageState } from '../../stores/store.js';

interface Held {
  readonly seq: number;
  /** Kept by HeldDeliveries. */
  removed: boolean;
  delivery: Delivery;
  message: ConsumeMessage;
  channel: Channel;
  /** A state row exists in the store (failed before, parked): clear it when settled. */
  stored: boolean;
}

/** Ids whose ack may have been lost with a channel, remembered so their redelivery is dropped (bounded). */
const MAX_SUSPECT_ACKS = 4_096;
const NO_STATES: ReadonlyMap<string, MessageState> = new Map();
const NO_TWINS: ReadonlySet<number> = new Set();

export interface SubscriptionHooks {
  /** New deliveries are held (the worker should fetch). */
  arrived(partition: number): void;
  /** The channel was lost (not closed by us): held deliveries are gone and will come again. */
  lost(partition: number): void;
  /** Something failed in the background (reported, then retried). */
  error(error: unknown): void;
}

export class PartitionSubscription {
  private channel: Channel | undefined;
  private opening: Promise<void> | undefined;
  private readonly entries = new HeldDeliveries<Held>();
  /** Highest seq handed out on the current channel: seqs given to the worker only grow. */
  private lastSeq = 0;
  /** Highest seq a publisher gave a message this channel received (for catch-up waits). */
  private highestPublishedSeq = 0;
  private incoming: ConsumeMessage[] = [];
  private draining = false;
  private closing = false;
  /** Ids acked on the current channel since the last round trip started: not yet known to have arrived. */
  private unconfirmedAcks: string[] = [];
  /**
   * Ids acked on a channel that was lost before a round trip proved the ack arrived. If RabbitMQ
   * redelivers one, its ack was lost: the worker already settled it, so the copy is dropped.
   * Insertion-ordered, so the oldest is forgotten first.
   */
  private readonly suspectAcks = new Set<string>();
  private readonly waiters = new Set<() => void>();
  /** Times the channel was lost; part of the fence, so the worker starts over after a loss. */
  losses = 0;
  private readonly copies: CopyClaims;

  constructor(
    private readonly connection: AmqpConnection,
    private readonly store: CoordinationStore,
    readonly topic: string,
    readonly group: string,
    readonly partition: number,
    readonly queue: string,
    private readonly prefetch: number,
    private readonly hooks: SubscriptionHooks,
  ) {
    this.copies = new CopyClaims(store, topic, group);
  }

  get size(): number {
    return this.entries.size;
  }

  get oldestPublishedAt(): number {
    let oldest = 0;
    for (const { delivery } of this.entries.values()) if (oldest === 0 || delivery.publishedAt < oldest) oldest = delivery.publishedAt;
    return oldest;
  }

  get isOpen(): boolean {
    return this.channel !== undefined;
  }

  /** Subscribes (once); resolves when the consumer is registered. */
  open(): Promise<void> {
    if (this.closing) return Promise.resolve();
    if (this.channel !== undefined) return Promise.resolve();
    this.opening ??= this.subscribe().finally(() => {
      this.opening = undefined;
    });
    return this.opening;
  }

  private async subscribe(): Promise<void> {
    const channel = await this.connection.channel();
    if (this.closing) {
      await closeChannel(channel);
      return;
    }
    channel.on('close', () => this.onClose(channel));
    await channel.prefetch(this.prefetch);
    this.channel = channel;
    this.lastSeq = 0;
    this.highestPublishedSeq = 0;
    await channel.consume(
      this.queue,
      (message) => {
        if (message === null) return; // cancelled by the server (queue deleted): 'close' or a resubscribe follows
        this.incoming.push(message);
        // amqplib hands over every delivery of a socket read in one synchronous loop: taking
        // them in a microtask after it makes one batch (one store read, one wake-up) of them.
        if (!this.draining) {
          this.draining = true;
          queueMicrotask(() => void this.drain(channel));
        }
      },
      { noAck: false },
    );
  }

  private onClose(channel: Channel): void {
    if (this.channel !== channel) return;
    this.channel = undefined;
    this.entries.clear();
    this.incoming = [];
    this.suspect(this.unconfirmedAcks);
    this.unconfirmedAcks = [];
    // Settled by the worker, ack never sent: just as done, so their redelivery is dropped too.
    this.suspect(this.pendingAcks.map((held) => held.delivery.id));
    this.pendingAcks = [];
    this.wake();
    if (this.closing) return;
    this.losses++;
    this.hooks.lost(this.partition);
    this.reopenSoon(100);
  }

  private reopenSoon(delayMs: number): void {
    setTimeout(() => {
      if (this.closing || this.channel !== undefined) return;
      this.open().catch((error: unknown) => {
        this.hooks.error(error);
        this.reopenSoon(Math.min(5_000, delayMs * 2));
      });
    }, delayMs).unref();
  }

  /**
   * Turns arrivals into held deliveries, in arrival order. A redelivered message may have
   * failed or been parked before: its state is read from the store first (one read per burst;
   * first deliveries, the common case, need none).
   */
  private async drain(channel: Channel): Promise<void> {
    try {
      while (this.incoming.length > 0 && this.channel === channel) {
        const batch = this.incoming;
        this.incoming = [];
        // The id is in the body, so each message is decoded here, once.
        const decoded = batch.map((message) => decodeMessage(message.properties, message.content));
        const redelivered: string[] = [];
        for (let i = 0; i < batch.length; i++) {
          const id = decoded[i]?.id;
          if (batch[i]!.fields.redelivered && id !== undefined) redelivered.push(id);
        }
        let states = NO_STATES;
        let twins: ReadonlySet<number> = NO_TWINS;
        for (;;) {
          try {
            if (redelivered.length > 0) states = await this.store.getMessageStates(this.topic, this.group, redelivered);
            twins = await this.copies.twins(batch, decoded.map((d) => d?.id));
            break;
          } catch (error) {
            this.hooks.error(error);
            await new Promise((resolve) => setTimeout(resolve, 500));
            if (this.channel !== channel) return;
          }
        }
        if (this.channel !== channel) return;
        for (let i = 0; i < batch.length; i++) {
          // A backfill's second copy of a message (copy-claims.ts): the first one is handled.
          if (twins.has(i)) channel.ack(batch[i]!);
          else this.hold(channel, batch[i]!, decoded[i], states);
        }
        this.hooks.arrived(this.partition);
        this.wake();
      }
    } finally {
      this.draining = false;
    }
  }

  private hold(channel: Channel, message: ConsumeMessage, decoded: Delivery | undefined, states: ReadonlyMap<string, MessageState>): void {
    if (decoded === undefined) {
      // Not botqueue's: nothing can handle it, and holding it would block the queue.
      channel.ack(message);
      return;
    }
    if (decoded.seq > this.highestPublishedSeq) this.highestPublishedSeq = decoded.seq;
    const state = message.fields.redelivered ? states.get(decoded.id) : undefined;
    if (state?.skip === true || (message.fields.redelivered && this.suspectAcks.delete(decoded.id))) {
      channel.ack(message);
      return;
    }
    // Seqs from publishers on other hosts may not follow queue order; the queue's order wins.
    const seq = decoded.seq > this.lastSeq ? decoded.seq : this.lastSeq + 1;
    this.lastSeq = seq;
    // The decoded message becomes the held delivery itself (it is nobody else's yet).
    const delivery: Delivery = decoded;
    delivery.seq = seq;
    delivery.partition = this.partition;
    if (state !== undefined) {
      delivery.notBefore = Math.max(decoded.notBefore, state.notBefore);
      delivery.attempts = state.attempts;
      delivery.firstFailedAt = state.firstFailedAt;
      delivery.parked = state.parked;
    }
    this.entries.add({ seq, removed: false, delivery, message, channel, stored: state !== undefined });
  }

  /**
   * Held deliveries with seq > afterSeq, in order, at most `limit`. The objects themselves, not
   * copies: a held delivery is never changed in place (markFailed and markParked replace it), so
   * what the worker was given stays as it was.
   */
  fetch(afterSeq: number, limit: number): Delivery[] {
    if (limit <= 0) return [];
    return this.entries.after(afterSeq, limit).map((held) => held.delivery);
  }

  /** The held delivery (not a copy: read it, do not keep it) and whether the store has a state row for it. */
  held(seq: number): { delivery: Readonly<Delivery>; stored: boolean } | undefined {
    return this.entries.get(seq);
  }

  /** Every held delivery that is parked (for a refresh after an operator's redrive or purge). */
  parked(): Delivery[] {
    return [...this.entries.values()].filter((h) => h.delivery.parked).map((h) => h.delivery);
  }

  /** Records a failed attempt on the held delivery (the store was written first). */
  markFailed(seq: number, attempts: number, notBefore: number, failedAt: number): void {
    const held = this.entries.get(seq);
    if (held === undefined) return;
    held.delivery = { ...held.delivery, attempts, notBefore, firstFailedAt: held.delivery.firstFailedAt ?? failedAt };
    held.stored = true;
  }

  markParked(seq: number, parked: boolean, attempts?: number): void {
    const held = this.entries.get(seq);
    if (held === undefined) return;
    held.delivery = { ...held.delivery, parked, attempts: attempts ?? held.delivery.attempts };
    if (!parked) {
      held.delivery.notBefore = 0;
      held.delivery.firstFailedAt = null;
    }
    held.stored = true;
  }

  /**
   * Acks these held deliveries and resolves once RabbitMQ has processed the acks, so that a
   * settled message stays settled if the connection drops right after (otherwise a key's next
   * message could run before its predecessor comes back). The proof is a round trip on the same
   * channel after the acks: frames on a channel are handled in order. One round trip covers
   * every ack sent before it, so concurrent settlements share it. Returns false when the
   * channel is gone: the messages come again.
   *
   * The acks of one event-loop turn go out together at its end: by then more of the
   * deliveries below them are settled, so one cumulative ack covers more of them (fewer frames
   * to write, fewer for RabbitMQ to read). Waiting longer (until the round trip in flight
   * returns) was slower: RabbitMQ sends no new deliveries until acks free the prefetch.
   */
  ack(seqs: number[]): Promise<boolean> {
    const channel = this.channel;
    if (channel === undefined) return Promise.resolve(false);
    for (const seq of seqs) {
      const held = this.entries.remove(seq);
      if (held !== undefined && held.channel === channel) this.pendingAcks.push(held);
    }
    // One flush per turn and channel (a flush made for a channel lost since must not take these).
    if (this.pendingFlush?.channel !== channel) {
      const flush = {
        channel,
        done: new Promise<boolean>((resolve) => {
          setImmediate(() => {
            if (this.pendingFlush === flush) this.pendingFlush = undefined;
            if (this.channel !== channel) {
              resolve(false);
              return;
            }
            this.flushAcks(channel);
            resolve(this.barrier(channel));
          });
        }),
      };
      this.pendingFlush = flush;
    }
    return this.pendingFlush.done;
  }

  /** Settled, removed from the held ones, ack not sent yet (it goes out at the end of the turn). */
  private pendingAcks: Held[] = [];
  private pendingFlush: { channel: Channel; done: Promise<boolean> } | undefined;

  private flushAcks(channel: Channel): void {
    const acked = this.pendingAcks;
    this.pendingAcks = [];
    // Entries are in delivery order, so every delivery tag below the first one still held is
    // being acked now: one cumulative ack covers them (fewer frames for the client and the queue).
    const first = this.entries.first();
    const lowestHeld = first === undefined ? Number.POSITIVE_INFINITY : first.message.fields.deliveryTag;
    let upTo: ConsumeMessage | undefined;
    for (const { message, delivery } of acked) {
      this.unconfirmedAcks.push(delivery.id);
      const tag = message.fields.deliveryTag;
      if (tag < lowestHeld) {
        if (upTo === undefined || tag > upTo.fields.deliveryTag) upTo = message;
      } else {
        channel.ack(message);
      }
    }
    if (upTo !== undefined) channel.ack(upTo, true);
  }

  /**
   * A round trip that starts after every frame sent so far. Each flush starts its own: round
   * trips on a channel are answered in order, so they pipeline, and an ack waits one round trip
   * rather than the rest of the one in flight plus another (waiting behind the one in flight
   * made a settle take two round trips: 6 ms instead of 3 on a busy 2-core machine, and a
   * key's next message waits for it).
   */
  private barrier(channel: Channel): Promise<boolean> {
    const covered = this.unconfirmedAcks;
    this.unconfirmedAcks = [];
    return roundTrip(channel).then((arrived) => {
      if (!arrived) this.suspect(covered);
      return arrived;
    });
  }

  private suspect(ids: string[]): void {
    for (const id of ids) {
      this.suspectAcks.add(id);
      if (this.suspectAcks.size > MAX_SUSPECT_ACKS) this.suspectAcks.delete(this.suspectAcks.values().next().value!);
    }
  }

  /**
   * Waits until this consumer received a message with seq >= `seq` (one this process published),
   * the buffer is full, or `timeoutMs` passed (e.g. another process is the active consumer).
   */
  async waitForSeq(seq: number, timeoutMs: number): Promise<void> {
    if (this.opening !== undefined) await this.opening.catch(() => undefined);
    const reached = (): boolean => this.channel === undefined || this.highestPublishedSeq >= seq || this.entries.size >= this.prefetch;
    if (reached()) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, timeoutMs);
      const waiter = (): void => {
        if (reached()) finish();
      };
      function finish(): void {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve();
      }
      const waiters = this.waiters;
      waiters.add(waiter);
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  /**
   * Stops consuming by closing the channel (never basic.cancel): RabbitMQ hands the queue to
   * the standby with what was held here first, in order.
   */
  async close(): Promise<void> {
    this.closing = true;
    if (this.opening !== undefined) await this.opening.catch(() => undefined);
    const channel = this.channel;
    this.channel = undefined;
    this.entries.clear();
    this.incoming = [];
    this.wake();
    if (channel !== undefined) await closeChannel(channel);
  }
}

/** A passive declare of a built-in exchange: answered by the channel itself, after the frames before it. */
async function roundTrip(channel: Channel): Promise<boolean> {
  try {
    await channel.checkExchange('amq.direct');
    return true;
  } catch {
    return false;
  }
}
