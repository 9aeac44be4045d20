/**
 * Publishing with publisher confirms, many publishes in flight at once (waiting for each
 * confirm before the next caps a channel at a few thousand per second). A publish resolves
 * when RabbitMQ confirmed it (the quorum queues wrote it to a majority) and rejects with a
 * retriable error when it was nacked or the connection went away: never silently lost.
 */
import type { ConfirmChannel, Options } from 'amqplib';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import type { AmqpConnection } from './connection.js';
import { framePublisher, type FramePublisher } from './publish-frames.js';

/**
 * One message to publish: a botqueue message's body (sent persistent with no other property,
 * see message-codec.ts), or bytes with their own properties (copies of received messages, markers).
 */
export type Outgoing =
  | { exchange: string; routingKey: string; body: string }
  | { exchange: string; routingKey: string; content: Buffer; properties: Options.Publish };

const PERSISTENT: Options.Publish = { persistent: true };

/** A confirm channel, and its frame publisher when amqplib's internals allow one. */
interface PublishChannel {
  channel: ConfirmChannel;
  frames: FramePublisher | undefined;
}

/** Whether the channels made so far publish through the frame publisher (a test checks that it applies). */
export const framePublishing = { applied: 0, notApplied: 0 };

function unconfirmed(reason: string, cause?: unknown): BotqueueError {
  return new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `RabbitMQ did not confirm the publish (${reason}); publish again — the id makes it safe`, {
    retriable: true,
    cause,
  });
}

interface Batch {
  total: number;
  /** Not yet confirmed. */
  left: number;
  /** Handed to the channel. */
  sent: number;
  error: Error | undefined;
  closed: boolean;
  finish(error: Error | undefined): void;
}

export class ConfirmPublisher {
  private channel: Promise<PublishChannel> | undefined;
  private inFlight = 0;
  private readonly roomWaiters: Array<() => void> = [];

  constructor(
    private readonly connection: AmqpConnection,
    private readonly maxUnconfirmed: number,
    private readonly confirmTimeoutMs: number = 15_000,
    /** False: always channel.publish, as when amqplib's internals do not allow frames (tests of that path). */
    private readonly useFrames: boolean = true,
  ) {}

  /**
   * Publishes every message and resolves once all are confirmed; rejects (retriable) if any is
   * nacked, its channel closes first, or the batch is not confirmed within confirmTimeoutMs.
   * A batch is tracked as one counter with one confirm callback and one timer: per-message
   * promises and timers cost more CPU than the publish itself.
   */
  async publishAll(messages: Outgoing[]): Promise<void> {
    if (messages.length === 0) return;
    let timer: NodeJS.Timeout | undefined;
    const batch: Batch = { total: messages.length, left: messages.length, sent: 0, error: undefined, closed: false, finish: () => undefined };
    const finished = new Promise<void>((resolve, reject) => {
      batch.finish = (error) => (error === undefined ? resolve() : reject(error));
      timer = setTimeout(() => this.closeBatch(batch, unconfirmed(`not confirmed within ${this.confirmTimeoutMs} ms`)), this.confirmTimeoutMs);
    });
    finished.catch(() => undefined);
    this.openBatches.add(batch);
    const confirm = (error: unknown): void => {
      if (batch.closed) return;
      this.inFlight--;
      this.roomWaiters.shift()?.();
      if (error !== null && error !== undefined) batch.error ??= unconfirmed('nacked', error);
      if (--batch.left === 0) this.closeBatch(batch, batch.error);
    };
    try {
      // While RabbitMQ is away, getting a channel waits for the reconnect: the timer bounds it.
      let channel = await Promise.race([this.currentChannel(), finished.then(() => undefined)]);
      for (const message of messages) {
        if (batch.closed || channel === undefined) break;
        if (this.inFlight >= this.maxUnconfirmed || this.draining !== undefined) {
          await Promise.race([this.room(), finished]);
          channel = await Promise.race([this.currentChannel(), finished.then(() => undefined)]);
          if (batch.closed || channel === undefined) break;
        }
        let writable: boolean;
        try {
          this.inFlight++;
          batch.sent++;
          if (!('body' in message)) writable = channel.channel.publish(message.exchange, message.routingKey, message.content, message.properties, confirm);
          else if (channel.frames !== undefined) writable = channel.frames.publish(message.exchange, message.routingKey, message.body, confirm);
          else writable = channel.channel.publish(message.exchange, message.routingKey, Buffer.from(message.body, 'utf8'), PERSISTENT, confirm);
        } catch (error) {
          this.closeBatch(batch, unconfirmed('the channel is closed', error));
          break;
        }
        // The socket's buffer is full: further publishes wait for 'drain' (via room()).
        if (!writable) this.awaitDrain(channel.channel);
      }
      await finished;
    } finally {
      clearTimeout(timer);
      // Normally closed by its last confirm already (an error, with its stack, costs a few µs).
      if (!batch.closed) this.closeBatch(batch, unconfirmed('the publish was abandoned'));
    }
  }

  private readonly openBatches = new Set<Batch>();

  /** Ends a batch once: confirmed (no error) or failed; its unconfirmed publishes stop counting as in flight. */
  private closeBatch(batch: Batch, error: Error | undefined): void {
    if (batch.closed) return;
    batch.closed = true;
    this.openBatches.delete(batch);
    // Sent and not confirmed yet: their confirms, if they come, are ignored from now on.
    this.inFlight -= batch.sent - (batch.total - batch.left);
    for (;;) {
      const wake = this.roomWaiters.shift();
      if (wake === undefined) break;
      wake();
    }
    batch.finish(error);
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

  private currentChannel(): Promise<PublishChannel> {
    if (this.channel === undefined) {
      const opening = this.connection.confirmChannel().then((channel) => {
        channel.on('close', () => {
          if (this.channel === opening) this.channel = undefined;
          // Publishes whose confirm never came: the broker may or may not have them.
          for (const batch of [...this.openBatches]) this.closeBatch(batch, unconfirmed('the channel closed before the confirm'));
        });
        const frames = this.useFrames ? framePublisher(channel) : undefined;
        if (frames === undefined) framePublishing.notApplied++;
        else framePublishing.applied++;
        return { channel, frames };
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
    return (await this.currentChannel()).channel;
  }
}

