import { BotqueueError, ErrorCodes } from '../core/errors.js';
import type { Broker } from '../brokers/broker.js';

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
   * the recorded result. Only a crash between the step's end and its record repeats it, so calls
   * to outside systems are at-least-once in that short window.
   *
   * @example
   * await ctx.once('reply', () => api.sendMessage(chatId, text));
   */
  once<R>(name: string, fn: () => R | Promise<R>): Promise<R>;
}

/**
 * The `ctx` a handler gets, one per attempt. Built on the hot path, so it holds only what it is
 * given: the abort signal is combined only if the handler reads it.
 */
export class MessageContext implements HandlerContext {
  private combined: AbortSignal | undefined;

  constructor(
    private readonly broker: Broker,
    readonly topic: string,
    readonly group: string,
    private readonly messageId: string,
    readonly attempt: number,
    private readonly leaseSignal: AbortSignal,
    private readonly shutdownSignal: AbortSignal,
  ) {}

  get signal(): AbortSignal {
    this.combined ??= AbortSignal.any([this.leaseSignal, this.shutdownSignal]);
    return this.combined;
  }

  async once<R>(name: string, fn: () => R | Promise<R>): Promise<R> {
    if (typeof name !== 'string' || name.length === 0) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'ctx.once needs a non-empty step name');
    const recorded = await this.broker.getEffect(this.topic, this.group, this.messageId, name);
    if (recorded !== undefined) return (recorded === null ? undefined : JSON.parse(recorded)) as R;
    const result = await fn();
    const json = result === undefined ? null : (JSON.stringify(result) ?? null);
    await this.broker.putEffect(this.topic, this.group, this.messageId, name, json);
    return result;
  }
}
