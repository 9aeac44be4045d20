/**
 * Telegram long polling, for a bot without a public URL: calls `getUpdates`, stores the batch,
 * and only then asks for the next one with `offset = last update_id + 1`, which is what
 * confirms the batch to Telegram. A crash (kill -9) between storing and confirming makes
 * Telegram send the batch again after the restart; its ids (`telegram:<bot>:<update_id>`) are
 * already stored, so the repeats are dropped as duplicates: no update is lost or stored twice.
 * Nothing is kept on disk by the poller itself: the offset lives at Telegram.
 */
import type { Botqueue } from '../client.js';
import { redactSecrets } from '../core/redact.js';
import { BodyError, isObject } from './body.js';
import type { GatewayMessage } from './message.js';
import type { WebhookRejections } from './rejections.js';
import { telegramMessage } from './telegram.js';

export interface TelegramPollerOptions {
  bq: Botqueue;
  botToken: string;
  /** `https://api.telegram.org`, or a local Bot API server. */
  apiRoot: string;
  /** The bot's name in ids and keys (`telegram:<bot>:...`). */
  bot: string;
  topic: string;
  /** Long-poll seconds. */
  timeoutS: number;
  /** Updates per getUpdates, 1-100. Default 100. */
  limit?: number;
  logger: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; error(obj: object, msg: string): void };
  rejections?: WebhookRejections;
}

const MIN_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 30_000;

interface BotApiAnswer {
  ok: boolean;
  result?: unknown;
  error_code?: number;
  description?: string;
  parameters?: { retry_after?: number };
}

export class TelegramPoller {
  private offset: number | undefined;
  private stopped = false;
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  /** Batches stored; for tests and logs. */
  stored = 0;

  constructor(private readonly options: TelegramPollerOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Ends the current long poll and waits for a batch being stored to finish. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.loop;
  }

  private async run(): Promise<void> {
    let backoff = MIN_BACKOFF_MS;
    while (!this.stopped) {
      try {
        const updates = await this.getUpdates();
        if (updates.length > 0) {
          await this.store(updates);
          this.stored++;
        }
        backoff = MIN_BACKOFF_MS;
      } catch (error) {
        if (this.stopped) break;
        const retryAfterMs = (error as { retryAfterMs?: number }).retryAfterMs;
        const waitMs = retryAfterMs ?? backoff;
        this.options.logger.warn({ 'error.message': this.redact((error as Error).message), 'botqueue.retry_in_ms': waitMs }, 'Telegram getUpdates failed; trying again');
        await this.sleep(waitMs);
        backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
      }
    }
  }

  private redact(text: string): string {
    return redactSecrets(text, this.options.botToken);
  }

  private async getUpdates(): Promise<unknown[]> {
    const { apiRoot, botToken, timeoutS, limit = 100 } = this.options;
    const body: Record<string, number> = { timeout: timeoutS, limit };
    if (this.offset !== undefined) body.offset = this.offset;
    const signal = AbortSignal.any([this.abort.signal, AbortSignal.timeout((timeoutS + 15) * 1000)]);
    const response = await fetch(`${apiRoot}/bot${botToken}/getUpdates`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal });
    let answer: BotApiAnswer;
    try {
      answer = (await response.json()) as BotApiAnswer;
    } catch {
      throw new Error(`getUpdates answered HTTP ${response.status} without a JSON body`);
    }
    if (!answer.ok || !Array.isArray(answer.result)) {
      const error = new Error(`getUpdates answered ${answer.error_code ?? response.status}: ${answer.description ?? 'no description'}${answer.error_code === 409 ? ' (a webhook is set: call deleteWebhook, or use the webhook route instead of polling)' : ''}`);
      const retryAfter = answer.parameters?.retry_after;
      if (typeof retryAfter === 'number') Object.assign(error, { retryAfterMs: retryAfter * 1000 });
      throw error;
    }
    return answer.result as unknown[];
  }

  /** Stores a batch (all or nothing), then moves the offset past it; the next getUpdates confirms it. */
  private async store(updates: unknown[]): Promise<void> {
    const { bq, bot, topic } = this.options;
    const receivedAt = Date.now();
    const messages: GatewayMessage[] = [];
    let last = this.offset === undefined ? -1 : this.offset - 1;
    for (const update of updates) {
      const id = isObject(update) ? update.update_id : undefined;
      if (typeof id === 'number' && Number.isSafeInteger(id)) last = Math.max(last, id);
      try {
        messages.push(telegramMessage(update, { bot, topic, receivedAt }));
      } catch (error) {
        // An update that is not one can never be stored; skipping it must not stall the bot.
        if (!(error instanceof BodyError)) throw error;
        this.options.rejections?.add('telegram', error.reason);
        this.options.logger.warn({ 'event.reason': error.reason }, 'Telegram getUpdates returned an update that is not one; skipped');
      }
    }
    if (messages.length > 0) await bq.publishBatch(topic, messages.map((m) => ({ key: m.key, id: m.id, payload: m.payload, headers: m.headers })));
    if (last >= 0) this.offset = last + 1;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.abort.signal.addEventListener('abort', () => {
        clearTimeout(timer);
        resolve();
      }, { once: true });
    });
  }
}
