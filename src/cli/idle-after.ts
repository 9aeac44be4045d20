/** `--idle-after <duration>` of `stats` and `groups list`: `90s`, `5m`, `2h`, `1d`, `500ms`, or plain ms. */
import type { StatsOptions } from '../brokers/idle.js';
import { formatAgo } from './output.js';
import { CliError } from './errors.js';
import type { Flags } from './context.js';

const UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export const IDLE_AFTER_HELP = `  --idle-after D  a group with no live member, none seen for D, is marked idle
                  (90s, 5m, 2h, 1d or ms; default 5m)`;

export function parseDuration(text: string, flag: string): number {
  const match = /^(\d+)(ms|s|m|h|d)?$/.exec(text.trim());
  if (match === null) throw new CliError(`${flag} must be a duration such as 90s, 5m, 2h or 1d, got ${JSON.stringify(text)}`, `e.g. ${flag} 10m`);
  return Number(match[1]) * UNITS[match[2] ?? 'ms']!;
}

export function idleOptions(flags: Flags): StatsOptions | undefined {
  const text = flags.string('idle-after');
  return text === undefined ? undefined : { idleAfterMs: parseDuration(text, '--idle-after') };
}

/** The LAST SEEN cell: when a member of the group last sent a heartbeat. */
export function lastSeen(members: number, lastSeenAt: number | null): string {
  if (members > 0) return 'now';
  return lastSeenAt === null ? 'never' : formatAgo(lastSeenAt);
}
