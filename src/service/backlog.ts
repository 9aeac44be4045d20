/**
 * The publish route's backlog limit (a topic's `maxBacklog`). Counting a topic's messages on
 * every request would cost a scan each; instead the figure (`retained`: messages not yet
 * handled by every group) is read from `stats` at most once per `refreshMs`, and the messages
 * this process accepted since are added to it. The limit is soft: a batch accepted just under
 * it may go over by its own size.
 */
import type { Botqueue } from '../client.js';
import type { Logger } from './logger.js';

interface Figure {
  /** Retained messages at the last refresh; undefined before the first one. */
  retained: number | undefined;
  at: number;
  /** Messages this process stored since that refresh. */
  acceptedSince: number;
  refreshing: Promise<void> | undefined;
}

export interface BacklogVerdict {
  /** Retained messages, as far as known. */
  estimate: number;
  limit: number;
}

export class BacklogGate {
  private readonly figures = new Map<string, Figure>();

  constructor(
    private readonly bq: Botqueue,
    /** maxBacklog per topic; topics without one are never refused. */
    private readonly limits: ReadonlyMap<string, number>,
    private readonly logger: Logger,
    private readonly refreshMs = 1_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** Undefined when the topic may take more; the verdict when it is at or over its limit. */
  async over(topic: string): Promise<BacklogVerdict | undefined> {
    const limit = this.limits.get(topic);
    if (limit === undefined) return undefined;
    let figure = this.figures.get(topic);
    if (figure === undefined) {
      figure = { retained: undefined, at: 0, acceptedSince: 0, refreshing: undefined };
      this.figures.set(topic, figure);
    }
    const stale = this.now() - figure.at >= this.refreshMs;
    // The first figure is waited for; later ones are refreshed in the background.
    if (figure.retained === undefined) {
      if (stale || figure.refreshing !== undefined) await this.refresh(topic, figure);
    } else if (stale) void this.refresh(topic, figure);
    // No figure (stats failed): let the publish decide; if storage is down it answers 503 itself.
    if (figure.retained === undefined) return undefined;
    const estimate = figure.retained + figure.acceptedSince;
    return estimate >= limit ? { estimate, limit } : undefined;
  }

  /** Counts messages just stored (duplicates excluded) until the next refresh sees them. */
  accepted(topic: string, count: number): void {
    const figure = this.figures.get(topic);
    if (figure !== undefined) figure.acceptedSince += count;
  }

  private refresh(topic: string, figure: Figure): Promise<void> {
    figure.refreshing ??= (async () => {
      const startedAt = this.now();
      const acceptedBefore = figure.acceptedSince;
      try {
        const [stats] = await this.bq.stats(topic);
        figure.retained = stats?.retained ?? 0;
        // Messages accepted while the stats were read may or may not be in the count: keep them (over-estimate).
        figure.acceptedSince -= acceptedBefore;
        figure.at = startedAt;
      } catch (error) {
        this.logger.warn({ error, 'botqueue.topic': topic }, 'could not read the backlog of a topic; its limit is not checked until it can');
        figure.at = startedAt;
      } finally {
        figure.refreshing = undefined;
      }
    })();
    return figure.refreshing;
  }
}
