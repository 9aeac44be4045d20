/**
 * One AMQP connection that comes back by itself: amqplib's opt-in recovery reconnects with
 * backoff and jitter; whoever owns channels listens for `up` to open them again. Channels die
 * with the connection they were made on, so nothing here hands out a channel that outlives it.
 */
import { EventEmitter } from 'node:events';
import type { Channel, ConfirmChannel, RecoveringChannelModel } from 'amqplib';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { passwordsOf, redactSecrets, redactUrl } from '../../core/redact.js';
import type { BrokerEventEmitter } from '../events.js';
import { coalesceWrites } from './coalesce-writes.js';

interface AmqplibModule {
  connect(url: string, socketOptions: Record<string, unknown>): Promise<RecoveringChannelModel>;
}

async function loadAmqplib(): Promise<AmqplibModule> {
  try {
    const loaded = (await import('amqplib')) as unknown as AmqplibModule & { default?: AmqplibModule };
    return typeof loaded.connect === 'function' ? loaded : loaded.default!;
  } catch (error) {
    throw new BotqueueError(ErrorCodes.DRIVER_MISSING, 'the RabbitMQ backend needs the "amqplib" package: npm install amqplib', { cause: error });
  }
}

export interface AmqpConnectionEvents {
  /** Connected again after a loss: channels made before are dead. */
  up: [];
}

export class AmqpConnection extends EventEmitter<AmqpConnectionEvents> {
  private closed = false;

  private constructor(
    private readonly model: RecoveringChannelModel,
    name: string,
    events: BrokerEventEmitter,
  ) {
    super();
    const connection = `rabbitmq ${name}`;
    model.on('connect', () => {
      events.report('connection-restored', { connection });
      this.emit('up');
    });
    model.on('disconnect', (error: Error) => events.report('connection-lost', { connection, error }));
    model.on('connect-failed', (error: Error) => events.failed(`reconnect to RabbitMQ (${name})`, error));
    // A connection error is followed by the close that 'disconnect' reports, with that error.
    model.on('error', () => undefined);
  }

  static async open(url: string, heartbeatSeconds: number, name: string, events: BrokerEventEmitter): Promise<AmqpConnection> {
    const amqplib = await loadAmqplib();
    let model: RecoveringChannelModel;
    try {
      model = await amqplib.connect(url, {
        heartbeat: heartbeatSeconds,
        noDelay: true,
        clientProperties: { connection_name: name },
        recovery: { initialDelay: 100, maxDelay: 5_000, factor: 2, jitter: 0.5, maxRetries: Infinity, initialMaxRetries: 2 },
      });
    } catch (error) {
      throw new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, `cannot connect to RabbitMQ at ${redactUrl(url)}: ${redactSecrets((error as Error).message, ...passwordsOf(url))} — is RabbitMQ running?`, {
        retriable: true,
        cause: error,
      });
    }
    return new AmqpConnection(model, name, events);
  }

  /** A channel on the current connection (waits while reconnecting). */
  async channel(): Promise<Channel> {
    this.checkOpen();
    const channel = await this.model.createChannel();
    channel.on('error', () => undefined); // 'close' follows; owners react to that
    coalesceWrites(channel);
    return channel;
  }

  async confirmChannel(): Promise<ConfirmChannel> {
    this.checkOpen();
    const channel = await this.model.createConfirmChannel();
    channel.on('error', () => undefined);
    coalesceWrites(channel);
    return channel;
  }

  private checkOpen(): void {
    if (this.closed) throw new BotqueueError(ErrorCodes.CLOSED, 'the RabbitMQ broker is closed');
  }

  /** Closes; never waits more than `timeoutMs` (a close on a dead socket may never settle). */
  async close(timeoutMs = 2_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.model.close().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }
}

/** Closes a channel without waiting on a connection that is gone. */
export async function closeChannel(channel: Channel, timeoutMs = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    channel.close().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}
