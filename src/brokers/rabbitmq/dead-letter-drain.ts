/**
 * RabbitMQ's own dead-lettering is a safety net: a message delivered `x-delivery-limit` times
 * (a worker that crashed or lost its channel that often while holding it) goes to the topic's
 * `~dead` queue. This consumer moves such messages into the store's dead letters, so they are
 * listed, redriven and purged like any other, instead of sitting where no botqueue tool looks.
 */
import type { Channel, ConsumeMessage } from 'amqplib';
import { ErrorCodes, type ErrorInfo } from '../../core/errors.js';
import type { CoordinationStore } from '../../stores/store.js';
import { closeChannel, type AmqpConnection } from './connection.js';
import { decodeMessage } from './message-codec.js';
import type { Names } from './names.js';

export class DeadLetterDrain {
  private channel: Channel | undefined;
  private stopped = false;

  constructor(
    private readonly connection: AmqpConnection,
    private readonly store: CoordinationStore,
    private readonly names: Names,
    private readonly topic: string,
    private readonly deliveryLimit: number,
    /** A failure in the background (reopening the channel, moving a message); it is retried. */
    private readonly onError: (operation: string, error: unknown) => void,
  ) {}

  async start(): Promise<void> {
    if (this.stopped) return;
    const channel = await this.connection.channel();
    channel.on('close', () => {
      if (this.channel !== channel) return;
      this.channel = undefined;
      this.restartSoon();
    });
    await channel.prefetch(50);
    this.channel = channel;
    await channel.consume(this.names.deadLetterQueue(this.topic), (message) => {
      if (message !== null) void this.move(channel, message);
    });
  }

  /** Opens the channel again a second after it closed, and again after every failure. */
  private restartSoon(): void {
    if (this.stopped) return;
    setTimeout(() => {
      this.start().catch(async (error: unknown) => {
        // The topic was deleted (by this process or another): its queue is gone, nothing to move.
        if ((await this.store.getTopic(this.topic).catch(() => true)) === undefined) {
          this.stopped = true;
          return;
        }
        this.onError(`move RabbitMQ's dead letters of topic "${this.topic}"`, error);
        this.restartSoon();
      });
    }, 1_000).unref();
  }

  private async move(channel: Channel, message: ConsumeMessage): Promise<void> {
    const decoded = decodeMessage(message.properties, message.content);
    const headers = (message.properties.headers ?? {}) as Record<string, unknown>;
    const origin = parseOrigin(this.names, this.topic, headers['x-first-death-queue']);
    if (decoded === undefined || origin === undefined) {
      // Not a botqueue message of a known queue: nothing could ever handle it.
      channel.ack(message);
      return;
    }
    const now = Date.now();
    try {
      await this.store.addDeadLetters([
        {
          topic: this.topic,
          group: origin.group,
          partition: origin.partition,
          seq: decoded.seq,
          id: decoded.id,
          key: decoded.key,
          payload: decoded.payload,
          headers: decoded.headers,
          publishedAt: decoded.publishedAt,
          attempts: this.deliveryLimit,
          firstFailedAt: now,
          lastFailedAt: now,
          error: deliveryLimitError(this.deliveryLimit),
          parked: false,
        },
      ]);
      channel.ack(message);
    } catch (error) {
      // The store is away: leave it unacked; it comes back when this channel closes.
      this.onError(`move a dead letter of topic "${this.topic}" into the store`, error);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const channel = this.channel;
    this.channel = undefined;
    if (channel !== undefined) await closeChannel(channel);
  }
}

function parseOrigin(names: Names, topic: string, queue: unknown): { group: string; partition: number } | undefined {
  const text = Buffer.isBuffer(queue) ? queue.toString('utf8') : queue;
  if (typeof text !== 'string') return undefined;
  const prefix = `${names.exchange(topic)}~`;
  if (!text.startsWith(prefix)) return undefined;
  const match = /^(.+)~p(\d+)$/.exec(text.slice(prefix.length));
  if (match === null) return undefined;
  return { group: match[1]!, partition: Number(match[2]) };
}

/** The error stored for a message RabbitMQ dead-lettered by itself (the delivery limit). */
function deliveryLimitError(limit: number): ErrorInfo {
  return {
    message: `RabbitMQ dead-lettered the message after ${limit} deliveries (x-delivery-limit): the worker crashed or lost its channel that often while holding it`,
    code: ErrorCodes.DELIVERY_LIMIT,
  };
}
