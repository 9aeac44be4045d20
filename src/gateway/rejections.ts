/**
 * Counts the webhook requests refused, by platform and reason, in the process that received
 * them. Read with `snapshot()` (the admin API's `/v1/stats` shows it under `webhooks`; a metrics
 * exporter can read the same getter). Labels are fixed words, never a payload or a chat id.
 */
import type { Platform } from './message.js';

export type RejectionReason =
  | 'missing_signature'
  | 'bad_signature'
  | 'stale_timestamp'
  | 'bad_verify_token'
  | 'malformed_body'
  | 'too_deep'
  | 'forbidden_key'
  | 'not_an_update'
  | 'unsupported_media_type'
  | 'too_large'
  | 'message_too_large'
  | 'backlog_full'
  | 'storage_failed';

export type RejectionCounts = Partial<Record<Platform, Partial<Record<RejectionReason, number>>>>;

export class WebhookRejections {
  private readonly counts = new Map<string, number>();

  add(platform: Platform, reason: RejectionReason): void {
    const label = `${platform}\n${reason}`;
    this.counts.set(label, (this.counts.get(label) ?? 0) + 1);
  }

  /** `{ telegram: { bad_signature: 3 }, slack: { stale_timestamp: 1 } }`; platforms without rejections are absent. */
  snapshot(): RejectionCounts {
    const out: RejectionCounts = {};
    for (const [label, count] of this.counts) {
      const [platform, reason] = label.split('\n') as [Platform, RejectionReason];
      (out[platform] ??= {})[reason] = count;
    }
    return out;
  }

  total(): number {
    let sum = 0;
    for (const count of this.counts.values()) sum += count;
    return sum;
  }
}
