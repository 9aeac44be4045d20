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

  /** Publishes every message and resolves once all are confirmed; rejects if any is not. */
  async publishAll(messages: Outgoing[]): Promise<void> {
    const confirms: Array<Promise<void>> = [];
    for (const message of messages) {
      await this.room();
      confirms.push(this.publishOne(message));
    }
    const results = await Promise.allSettled(confirms);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
  }

  private async publishOne(message: Outgoing): Promise<void> {
    this.inFlight++;
    try {
      // While RabbitMQ is away, getting a channel waits for the reconnect; a caller gets a
      // retriable error after confirmTimeoutMs instead of waiting without end.
      const deadline = Date.now() + this.confirmTimeoutMs;
      const channel = await withTimeout(this.currentChannel(), this.confirmTimeoutMs, () => unconfirmed(`no connection within ${this.confirmTimeoutMs} ms`));
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => fail(unconfirmed(`no confirm within ${this.confirmTimeoutMs} ms`)), Math.max(1, deadline - Date.now()));
        const fail = (error: Error): void => {
          clearTimeout(timer);
          this.failPending.delete(fail);
          reject(error);
        };
        this.failPending.add(fail);
        const done = (error: unknown): void => {
          clearTimeout(timer);
          this.failPending.delete(fail);
          if (error === null || error === undefined) resolve();
          else reject(unconfirmed('nacked', error));
        };
        let writable: boolean;
        try {
          writable = channel.publish(message.exchange, message.routingKey, message.content, message.properties, done);
        } catch (error) {
          fail(unconfirmed('the channel is closed', error));
          return;
        }
        // The socket's buffer is full: further publishes wait for 'drain' (via room()).
        if (!writable) this.awaitDrain(channel);
      });
    } finally {
      this.inFlight--;
      this.roomWaiters.shift()?.();
    }
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

function withTimeout<T>(promise: Promise<T>, ms: number, error: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(error()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
