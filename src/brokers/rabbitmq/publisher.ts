/**
 * Publishing with publisher confirms, many publishes in flight at once (waiting for each
 * confirm before the next caps a channel at a few thousand per second). A publish resolves
 * when RabbitMQ confirmed it (the quorum queues wrote it to a majority) and rejects with a
 * retriable error when it was nacked or the connection went away: never silently lost.
 */
import type { ConfirmChannel, Options } from 'amqplib';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { AmqpConnection } from './connection.js';

export interface Outgoing {
  exchange: string;
  routingKey: string;
  content: Buffer;
  properties: Options.Publish;
}

function unconfirmed(reason: string, cause?: unknown): BotqueueError {
  return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `RabbitMQ did not confirm the publish (${reason}); publish again — the id makes it safe`, {
    retriable: true,
    cause,
  });
}

export class ConfirmPublisher {
  private channel: Promise<ConfirmChannel> | undefined;
  private inFlight = 0;
  private readonly roomWaiters: Array<() => void> = [];
  private readonly failPending = new Set<(error: Error) => void>();

  constructor(
    private readonly connection: AmqpConnection,
    private readonly maxUnconfirmed: number,
    private readonly confirmTimeoutMs: number = 15_000,
  ) {}

  /**
   * Publishes every message and resolves once all are confirmed; rejects (retriable) if any is
   * nacked, its channel closes first, or the batch is not confirmed within confirmTimeoutMs.
   * One timer and one channel lookup per batch: per-message timers cost more than the publish.
   */
  async publishAll(messages: Outgoing[]): Promise<void> {
    if (messages.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(unconfirmed(`not confirmed within ${this.confirmTimeoutMs} ms`)), this.confirmTimeoutMs);
    });
    expired.catch(() => undefined);
    try {
      // While RabbitMQ is away, getting a channel waits for the reconnect: the timer bounds it.
      let channel = await Promise.race([this.currentChannel(), expired]);
      const confirms: Array<Promise<void>> = [];
      for (const message of messages) {
        if (this.inFlight >= this.maxUnconfirmed || this.draining !== undefined) {
          await Promise.race([this.room(), expired]);
          channel = await Promise.race([this.currentChannel(), expired]);
        }
        confirms.push(this.publishOne(channel, message));
      }
      const results = await Promise.race([Promise.allSettled(confirms), expired]);
      const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
      if (failed !== undefined) throw failed.reason;
    } finally {
      clearTimeout(timer);
    }
  }

  private publishOne(channel: ConfirmChannel, message: Outgoing): Promise<void> {
    this.inFlight++;
    return new Promise<void>((resolve, reject) => {
      const settle = (error: Error | undefined): void => {
        if (!this.failPending.delete(fail)) return;
        this.inFlight--;
        this.roomWaiters.shift()?.();
        if (error === undefined) resolve();
        else reject(error);
      };
      const fail = (error: Error): void => settle(error);
      this.failPending.add(fail);
      let writable: boolean;
      try {
        writable = channel.publish(message.exchange, message.routingKey, message.content, message.properties, (error: unknown) =>
          settle(error === null || error === undefined ? undefined : unconfirmed('nacked', error)),
        );
      } catch (error) {
        settle(unconfirmed('the channel is closed', error));
        return;
      }
      // The socket's buffer is full: further publishes wait for 'drain' (via room()).
      if (!writable) this.awaitDrain(channel);
    });
  }

  private draining: Promise<void> | undefined;

  private awaitDrain(channel: ConfirmChannel): void {
    this.draining ??= new Promise<void>((resolve) => {
      const finish = (): void => {
        channel.off('drain', finish);
        channel.off('close', finish);
        this.draining = undefined;
        resolve();
      };
      channel.on('drain', finish);
      channel.on('close', finish);
    });
  }

  private async room(): Promise<void> {
    if (this.draining !== undefined) await this.draining;
    while (this.inFlight >= this.maxUnconfirmed) await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
  }

  private currentChannel(): Promise<ConfirmChannel> {
    if (this.channel === undefined) {
      const opening = this.connection.confirmChannel().then((channel) => {
        channel.on('close', () => {
          if (this.channel === opening) this.channel = undefined;
          // Publishes whose confirm never came: the broker may or may not have them.
          for (const fail of [...this.failPending]) fail(unconfirmed('the channel closed before the confirm'));
          this.failPending.clear();
        });
        return channel;
      });
      opening.catch(() => {
        if (this.channel === opening) this.channel = undefined;
      });
      this.channel = opening;
    }
    return this.channel.catch((error: unknown) => {
      throw error instanceof BotqueueError ? error : unconfirmed('no channel', error);
    });
  }

  /** A plain channel for declarations, shared; re-made after a reconnect. */
  async declareChannel(): Promise<ConfirmChannel> {
    return this.currentChannel();
  }
}

