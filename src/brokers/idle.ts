/**
 * When a group counts as idle in stats: no live member now, and none seen (a heartbeat) for
 * `idleAfterMs`. A worker restarting, or a member that died a moment ago, does not flag its
 * group at once; an abandoned group (the README example run once) is flagged once the time
 * has passed, and a group no member ever joined is flagged at once.
 */
import { BotqueueError, ErrorCodes } from '../core/errors.js';

/** Five minutes: longer than any restart or deploy, short enough to notice an abandoned group the same hour. */
export const DEFAULT_IDLE_AFTER_MS = 300_000;

export interface StatsOptions {
  /** A group without a live member whose last member was seen longer ago than this is idle. Default 300 000 (5 min). */
  idleAfterMs?: number;
}

/** The option checked (a non-negative integer of ms, at most 30 days), or the default. */
export function resolveIdleAfterMs(options: StatsOptions | undefined): number {
  if (options === undefined) return DEFAULT_IDLE_AFTER_MS;
  if (typeof options !== 'object' || options === null) throw new BotqueueError(ErrorCodes.INVALID_OPTION, 'stats options must be an object, e.g. { idleAfterMs: 300000 }');
  for (const key of Object.keys(options)) {
    if (key !== 'idleAfterMs') throw new BotqueueError(ErrorCodes.INVALID_OPTION, `unknown stats option "${key}"; the only one is idleAfterMs`, { details: { option: key } });
  }
  const value = options.idleAfterMs;
  if (value === undefined) return DEFAULT_IDLE_AFTER_MS;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 30 * 86_400_000) {
    throw new BotqueueError(ErrorCodes.INVALID_OPTION, `idleAfterMs must be an integer of milliseconds from 0 to 30 days, got ${JSON.stringify(value)}`, {
      details: { option: 'idleAfterMs' },
    });
  }
  return value;
}

export function isIdle(members: number, lastSeenAt: number | null, now: number, idleAfterMs: number): boolean {
  return members === 0 && (lastSeenAt === null || now - lastSeenAt >= idleAfterMs);
}
