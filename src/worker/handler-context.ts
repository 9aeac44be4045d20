import { BotqueueError, ErrorCodes } from '../core/errors.js';
import type { PreparedMessage, PublishInput, PublishReceipt } from '../core/envelope.js';
import type { Broker, StagedPublish } from '../brokers/broker.js';
import { derivedId, outboundInput, outboundTopic, replyAddress, type ReplyMessage, type SendOptions } from '../outbound/address.js';

/** Stores messages for ctx.publish and ctx.reply (the client's publishBatch). */
export type Publisher = (topic: string, messages: PublishInput[]) => Promise<PublishReceipt[]>;
/** Validates messages for a topic (created on first use) without storing them: for staged publishes. */
export type Preparer = (topic: string, messages: PublishInput[]) => Promise<PreparedMessage[]>;

/**
 * What ctx.publish and ctx.reply answer. `stored: 'now'`: stored before the call returned (seq
 * and duplicate known). `stored: 'with-ack'` (SQLite, memory): stored in the same transaction as
 * the handled message's ack when the handler succeeds, and not at all when it fails.
 */
export interface HandlerPublishReceipt {
  id: string;
  topic: string;
  partition: number;
  stored: 'now' | 'with-ack';
  /** Known when stored now. */
  seq?: number;
  /** Known when stored now: the derived id was already stored (a redelivered handler). */
  duplicate?: boolean;
}

/** Names the step a handler's publish belongs to; by default the call's rank in this attempt (`publish:1`, `reply:2`). */
export interface StepOption {
  step?: string;
}

/** What a handler gets besides the message. */
export interface HandlerContext {
  /**
   * 1 on the first delivery, then 1 + the persisted failed attempts. A `RetryLater` is not a
   * failure: the delivery after a deferral has the same `attempt` as the one that deferred.
   */
  readonly attempt: number;
  readonly topic: string;
  readonly group: string;
  /** Aborted when the worker's shutdown deadline passes or its lease on the partition is lost. */
  readonly signal: AbortSignal;
  /**
   * Runs `fn` once per message id and step name, even when the message is delivered again: a
   * step that completed is recorded (with its JSON result) and skipped on redelivery, returning
   * the recorded result. Only a crash between the step's end and its record repeats it (or a
   * process paused past its lease while inside the step), so calls to outside systems are
   * at-least-once in that short window. A step is not started once the lease may have passed to
   * another member (BOTQUEUE_LEASE_LOST): the message is handed out again.
   *
   * @example
   * await ctx.once('reply', () => api.sendMessage(chatId, text));
   */
  once<R>(name: string, fn: () => R | Promise<R>): Promise<R>;
  /**
   * Publishes a message from the handler with an id derived from the handled message (topic,
   * group, id) and a step name, so a redelivered handler publishes the same id and the broker
   * drops the repeat (deduplication by id, within the target topic's dedup window). Where the
   * backend can (SQLite, memory), the message is stored in the same transaction as this
   * message's ack, only if the handler succeeds (`stored: 'with-ack'`); elsewhere at once. The step is
   * `options.step`, else `input.id`, else the call's rank in this attempt (`publish:1`,
   * `publish:2`…), which is stable as long as the handler publishes in the same order.
   *
   * @example
   * await ctx.publish('billing', { key: msg.key!, payload: { charge: 5 } });
   */
  publish<P>(topic: string, input: PublishInput<P>, options?: StepOption): Promise<HandlerPublishReceipt>;
  /**
   * Answers the conversation the handled update came from, on its platform: stores the reply on
   * `outbound.<platform>`, keyed by chat, for the sender (per-chat order, the platform's limits,
   * 429 retry_after). Reads only the gateway's headers (bq-platform, bq-chat, bq-thread,
   * bq-interaction-token); throws BOTQUEUE_NO_REPLY_ADDRESS without them. Ids are derived as
   * for publish (`reply:1`, `reply:2`… or `options.step`).
   *
   * @example
   * await ctx.reply(`#${n} ${text}`);
   * await ctx.reply({ text: '*bold*', parse_mode: 'MarkdownV2' });
   */
  reply(message: ReplyMessage, options?: SendOptions & StepOption): Promise<HandlerPublishReceipt>;
}

/**
 * The `ctx` a handler gets, one per attempt. Built on the hot path, so it holds only what it is
 * given: the abort signal is combined only if the handler reads it.
 */
export class MessageContext implements HandlerContext {
  private combined: AbortSignal | undefined;
  private publishes = 0;
  private replies = 0;
  /** Staged publishes still being validated: the ack waits for them (a handler may not await its publish). */
  private preparing: Promise<unknown>[] | undefined;
  private stagedList: StagedPublish[] | undefined;

  constructor(
    private readonly broker: Broker,
    readonly topic: string,
    readonly group: string,
    private readonly messageId: string,
    readonly attempt: number,
    private readonly leaseSignal: AbortSignal,
    private readonly shutdownSignal: AbortSignal,
    private readonly headers: Record<string, string> = {},
    private readonly publisher?: Publisher,
    /** Until when (performance.now()) the lease is surely held; see PartitionRun.leaseValidUntil. */
    private readonly leaseValidUntil: () => number = () => Infinity,
    /** With `stages`, publishes are validated here and stored with the ack (StagedPublish). */
    private readonly prepare?: Preparer,
    private readonly stages = false,
  ) {}

  /** This attempt's staged publishes; made on the first one, so a handler that publishes nothing costs nothing. */
  get staged(): StagedPublish[] | undefined {
    return this.stagedList;
  }

  /**
   * Resolves once every staged publish of this attempt is validated. One that failed was not
   * staged, and its caller got the error: a handler that caught it decided, so it does not fail
   * the attempt here.
   */
  whenStaged(): Promise<unknown> | undefined {
    return this.preparing === undefined ? undefined : Promise.allSettled(this.preparing);
  }

  get signal(): AbortSignal {
    this.combined ??= AbortSignal.any([this.leaseSignal, this.shutdownSignal]);
    return this.combined;
  }

  async once<R>(name: string, fn: () => R | Promise<R>): Promise<R> {
    if (typeof name !== 'string' || name.length === 0) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'ctx.once needs a non-empty step name');
    const recorded = await this.broker.getEffect(this.topic, this.group, this.messageId, name);
    if (recorded !== undefined) return (recorded === null ? undefined : JSON.parse(recorded)) as R;
    // Checked right before the step, after the journal read: a member paused past its lease
    // (GC, SIGSTOP, a starved CPU) must not run a step the partition's new owner may have run.
    if (this.leaseSignal.aborted || performance.now() > this.leaseValidUntil()) {
      throw new BotqueueError(ErrorCodes.LEASE_LOST, `lease on the message's partition of ${this.topic} may have passed to another member; step "${name}" not started`);
    }
    const result = await fn();
    const json = result === undefined ? null : (JSON.stringify(result) ?? null);
    await this.broker.putEffect(this.topic, this.group, this.messageId, name, json);
    return result;
  }

  async publish<P>(topic: string, input: PublishInput<P>, options: StepOption = {}): Promise<HandlerPublishReceipt> {
    if (typeof input !== 'object' || input === null) throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, 'ctx.publish needs a message like { key, payload }');
    const step = stepName(options, input.id, () => `publish:${++this.publishes}`);
    return this.store(topic, { ...input, id: derivedId(this.topic, this.group, this.messageId, step) });
  }

  async reply(message: ReplyMessage, options: SendOptions & StepOption = {}): Promise<HandlerPublishReceipt> {
    const address = replyAddress(this.headers);
    const { step: given, ...sendOptions } = options;
    const step = stepName({ step: given }, undefined, () => `reply:${++this.replies}`);
    const input = outboundInput(address, message, sendOptions, derivedId(this.topic, this.group, this.messageId, step));
    return this.store(outboundTopic(address.platform), input);
  }

  private store(topic: string, input: PublishInput): Promise<HandlerPublishReceipt> {
    if (this.stages && this.prepare !== undefined) {
      const prepared = this.prepare(topic, [input]).then(([message]): HandlerPublishReceipt => {
        (this.stagedList ??= []).push({ topic, messages: [message!] });
        return { id: message!.id, topic, partition: message!.partition, stored: 'with-ack' };
      });
      (this.preparing ??= []).push(prepared);
      return prepared;
    }
    return this.publisherOrThrow()(topic, [input]).then(([receipt]) => ({ ...receipt!, stored: 'now' }));
  }

  private publisherOrThrow(): Publisher {
    if (this.publisher === undefined) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'ctx.publish and ctx.reply need a worker started by a client (bq.worker(...))');
    return this.publisher;
  }
}

function stepName(options: StepOption, id: string | undefined, next: () => string): string {
  if (typeof options !== 'object' || options === null) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'ctx.publish options must be an object, e.g. { step: "notify" }');
  const step = options.step ?? id;
  if (step === undefined) return next();
  if (typeof step !== 'string' || step === '') throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'a step name must be a non-empty string', { details: { option: 'step' } });
  return step;
}
