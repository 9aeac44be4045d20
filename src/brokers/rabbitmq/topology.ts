/**
 * What botqueue declares on RabbitMQ:
 * - per topic a durable direct exchange (routing key = partition number), whose alternate
 *   exchange catches messages published while no group is subscribed (`~unclaimed`);
 * - per topic a dead-letter exchange and queue (`~dead`), RabbitMQ's safety net for a message
 *   delivered `x-delivery-limit` times (a worker that keeps crashing on it);
 * - per (topic, group, partition) a durable quorum queue with single active consumer.
 * Declarations are idempotent; a mismatch (a queue declared earlier with other arguments)
 * closes the declaring channel, which is re-made for the next call.
 */
import type { Channel } from 'amqplib';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { closeChannel, type AmqpConnection } from './connection.js';
import type { Names } from './names.js';

/** Header of the marker a copier appends to the unclaimed queue to know where it ends. */
export const MARKER_HEADER = 'bq-marker';
/** On a backfill's copy: the batch it was copied in (see backfill.ts and copy-claims.ts). */
export const COPY_BATCH_HEADER = 'bq-copy-batch';

export interface QueueArguments {
  deliveryLimit: number;
}

export class Topology {
  private channel: Promise<Channel> | undefined;
  private readonly declaredTopics = new Set<string>();
  private readonly declaredGroups = new Set<string>();

  constructor(
    private readonly connection: AmqpConnection,
    private readonly names: Names,
    private readonly args: QueueArguments,
  ) {
    // After a reconnect (e.g. the broker restarted) declare again: cheap, and repairs a lost definition.
    connection.on('up', () => {
      this.declaredTopics.clear();
      this.declaredGroups.clear();
    });
  }

  private async use<T>(what: string, work: (channel: Channel) => Promise<T>): Promise<T> {
    if (this.channel === undefined) {
      const opening = this.connection.channel().then((channel) => {
        channel.on('close', () => {
          if (this.channel === opening) this.channel = undefined;
        });
        return channel;
      });
      opening.catch(() => {
        if (this.channel === opening) this.channel = undefined;
      });
      this.channel = opening;
    }
    try {
      return await work(await this.channel);
    } catch (error) {
      if (error instanceof BotqueueError) throw error;
      throw new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `RabbitMQ could not ${what}: ${(error as Error).message}`, { retriable: true, cause: error });
    }
  }

  /** `retentionMs`: how long messages published while no group exists are kept for groups created later. */
  async declareTopic(topic: string, retentionMs: number): Promise<void> {
    if (this.declaredTopics.has(topic)) return;
    const n = this.names;
    await this.use(`declare topic "${topic}"`, async (channel) => {
      await channel.assertExchange(n.unclaimedExchange(topic), 'fanout', { durable: true });
      await channel.assertQueue(n.unclaimedQueue(topic), {
        durable: true,
        arguments: { 'x-queue-type': 'quorum', ...(retentionMs > 0 ? { 'x-message-ttl': retentionMs } : {}) },
      });
      await channel.bindQueue(n.unclaimedQueue(topic), n.unclaimedExchange(topic), '');
      await channel.assertExchange(n.deadLetterExchange(topic), 'fanout', { durable: true });
      await channel.assertQueue(n.deadLetterQueue(topic), { durable: true, arguments: { 'x-queue-type': 'quorum' } });
      await channel.bindQueue(n.deadLetterQueue(topic), n.deadLetterExchange(topic), '');
      await channel.assertExchange(n.exchange(topic), 'direct', { durable: true, alternateExchange: n.unclaimedExchange(topic) });
    });
    this.declaredTopics.add(topic);
  }

  /** Declares the group's partition queues; binds them unless `bind` is false (a new group binds after its catch-up copy). */
  async declareGroup(topic: string, group: string, partitions: number, bind: boolean): Promise<void> {
    const id = `${topic}\u0000${group}`;
    if (bind && this.declaredGroups.has(id)) return;
    const n = this.names;
    await this.use(`declare the queues of group "${group}" on topic "${topic}"`, async (channel) => {
      for (let p = 0; p < partitions; p++) {
        await channel.assertQueue(n.partitionQueue(topic, group, p), {
          durable: true,
          arguments: {
            'x-queue-type': 'quorum',
            'x-single-active-consumer': true,
            'x-delivery-limit': this.args.deliveryLimit,
            'x-dead-letter-exchange': n.deadLetterExchange(topic),
            // at-least-once dead-lettering keeps a message until the dead-letter queue confirmed it; it needs reject-publish.
            'x-dead-letter-strategy': 'at-least-once',
            'x-overflow': 'reject-publish',
          },
        });
        if (bind) await channel.bindQueue(n.partitionQueue(topic, group, p), n.exchange(topic), String(p));
      }
    });
    if (bind) this.declaredGroups.add(id);
  }

  /** Ready messages of a queue (not those delivered and unacked). */
  /**
   * Ready messages of each queue, in order; 0 for a queue that does not exist (not declared yet,
   * or deleted). Any other failure throws: a backlog that cannot be read is not a backlog of 0.
   * All at once on the shared channel (one round trip, the common case). A missing queue makes
   * the server close that channel (404 NOT_FOUND), failing the checks in flight beside it with
   * "channel ended": those are read again, one at a time, and a failure then is real.
   */
  async readyCount(queue: string): Promise<number> {
    const [count] = await this.readyCounts([queue]);
    return count!;
  }

  async readyCounts(queues: readonly string[]): Promise<number[]> {
    const read = (queue: string): Promise<number> => this.use(`read queue "${queue}"`, async (channel) => (await channel.checkQueue(queue)).messageCount);
    const first = await Promise.allSettled(queues.map(read));
    const counts: number[] = [];
    for (let i = 0; i < queues.length; i++) {
      const outcome = first[i]!;
      if (outcome.status === 'fulfilled') counts.push(outcome.value);
      else if (isNotFound(outcome.reason)) counts.push(0);
      else {
        try {
          counts.push(await read(queues[i]!));
        } catch (error) {
          if (!isNotFound(error)) throw error;
          counts.push(0);
        }
      }
    }
    return counts;
  }

  /** Deletes the group's partition queues (with what they hold); a queue already gone is no error. */
  async deleteGroup(topic: string, group: string, partitions: number): Promise<void> {
    const n = this.names;
    this.forget(topic, group);
    await this.use(`delete the queues of group "${group}" on topic "${topic}"`, async (channel) => {
      for (let p = 0; p < partitions; p++) await channel.deleteQueue(n.partitionQueue(topic, group, p));
    });
  }

  /** Forgets what was declared, so the next declaration really declares (after a deletion). */
  forget(topic: string, group?: string): void {
    if (group !== undefined) {
      this.declaredGroups.delete(`${topic}\u0000${group}`);
      return;
    }
    this.declaredTopics.delete(topic);
    for (const id of this.declaredGroups) if (id.startsWith(`${topic}\u0000`)) this.declaredGroups.delete(id);
  }

  /** Deletes a topic's queues (its groups' and its own) and exchanges; one already gone is no error. */
  async deleteTopic(topic: string, groups: string[], partitions: number): Promise<void> {
    const n = this.names;
    this.forget(topic);
    await this.use(`delete topic "${topic}"`, async (channel) => {
      for (const group of groups) for (let p = 0; p < partitions; p++) await channel.deleteQueue(n.partitionQueue(topic, group, p));
      await channel.deleteQueue(n.unclaimedQueue(topic));
      await channel.deleteQueue(n.deadLetterQueue(topic));
      await channel.deleteExchange(n.exchange(topic));
      await channel.deleteExchange(n.unclaimedExchange(topic));
      await channel.deleteExchange(n.deadLetterExchange(topic));
    });
  }

  async close(): Promise<void> {
    const opening = this.channel;
    this.channel = undefined;
    const channel = await opening?.catch(() => undefined);
    if (channel !== undefined) await closeChannel(channel);
  }
}

/** checkQueue's answer for a missing queue: the channel closed with 404 NOT_FOUND. */
function isNotFound(error: unknown): boolean {
  return (error as { cause?: { code?: unknown } }).cause?.code === 404;
}
