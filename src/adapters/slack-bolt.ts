/**
 * `botqueue/slack-bolt`: a Bolt `Receiver` whose events come from botqueue. The gateway of
 * `botqueue start` verifies Slack's signature, stores each event (topic `slack`, the request
 * body kept whole as payload, keyed `slack:<team>:<channel>`) and acknowledges it to Slack
 * once it is stored, within Slack's 3 s; this receiver hands each stored event to
 * `app.processEvent` in a botqueue worker: one event at a time per channel, in order, with
 * botqueue's retries (a listener that throws is retried with backoff, then dead-lettered).
 *
 * `ack()` in a listener is accepted and does nothing (Slack was answered when the event was
 * stored), so an ack's response body is not delivered: answer with `say()`/`respond()`.
 * @slack/bolt is not a dependency of botqueue: this module uses only the app it is given.
 *
 * @example
 * const app = new App({ token: process.env.SLACK_BOT_TOKEN, receiver: new BotqueueReceiver() });
 * app.message('hello', async ({ say }) => { await say('hi!'); });
 * await app.start();
 */
import type { App, Receiver } from '@slack/bolt';
import { connect, DEFAULT_URL, type Botqueue } from '../client.js';
import type { Envelope } from '../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { validateOptions, type OptionSpec } from '../core/options.js';
import type { WorkerOptions } from '../worker/options.js';
import type { Worker } from '../worker/worker.js';

export interface BotqueueReceiverOptions {
  /** A client to use; default: `connect(url)` at start, closed at stop. */
  bq?: Botqueue;
  /** The botqueue URL when no client is given. Default BOTQUEUE_URL, else the default SQLite file. */
  url?: string;
  /** The topic the gateway stores Slack events on. Default `slack`. */
  topic: string;
  /** The worker's consumer group. Default `slack-bolt`. */
  group: string;
  /** Options of the worker (concurrency, maxAttempts…). */
  worker?: Partial<WorkerOptions>;
}

const spec: OptionSpec = {
  bq: { type: 'object' },
  url: { type: 'string', nonEmpty: true },
  topic: { type: 'string', nonEmpty: true },
  group: { type: 'string', nonEmpty: true },
  worker: { type: 'object' },
};

export class BotqueueReceiver implements Receiver {
  private readonly options: BotqueueReceiverOptions;
  private app: App | undefined;
  private bq: Botqueue | undefined;
  private worker: Worker | undefined;

  constructor(options: Partial<BotqueueReceiverOptions> = {}) {
    this.options = validateOptions<BotqueueReceiverOptions>('BotqueueReceiver options', spec, options, { topic: 'slack', group: 'slack-bolt' });
  }

  init(app: App): void {
    this.app = app;
  }

  /** Called by `app.start()`: starts the worker; resolves once it has joined its group. */
  async start(): Promise<Worker> {
    const app = this.app;
    if (app === undefined) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'BotqueueReceiver: pass it to new App({ receiver }) and call app.start()');
    if (this.worker !== undefined) return this.worker;
    this.bq = this.options.bq ?? (await connect(this.options.url ?? process.env.BOTQUEUE_URL ?? DEFAULT_URL));
    const worker = this.bq.worker<Record<string, unknown>>(
      this.options.topic,
      async (message: Envelope<Record<string, unknown>>) => {
        await app.processEvent({
          body: message.payload,
          // Slack was answered when the gateway stored the event.
          ack: () => Promise.resolve(),
          customProperties: { botqueue: { id: message.id, attempt: message.attempt, headers: message.headers } },
        });
      },
      { group: this.options.group, ...this.options.worker },
    );
    this.worker = worker as Worker;
    await worker.ready;
    return this.worker;
  }

  /** Called by `app.stop()`: running events finish, the partitions are handed back, an own client is closed. */
  async stop(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.close();
    if (this.options.bq === undefined) await this.bq?.close();
    this.bq = undefined;
  }
}
