import { isAbsolute, resolve } from 'node:path';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { validateOptions, type OptionSpec } from '../../core/options.js';

export interface SqliteOptions {
  /**
   * `FULL` (the default) syncs the WAL on every commit: a resolved publish survives a power
   * loss. `NORMAL` syncs only at checkpoints: a power loss (not a process crash, not kill -9)
   * may lose the last commits. Opt in only when that is acceptable.
   */
  synchronous?: 'FULL' | 'NORMAL';
  /** How long a write waits for another process holding the file's write lock, in ms. */
  busyTimeoutMs?: number;
  /** Most messages (or settlements) committed in one group-commit transaction. */
  maxBatch?: number;
  /** The clock (epoch ms), so tests can drive time. Default `Date.now`. Not settable from a URL. */
  now?: () => number;
}

export type ResolvedSqliteOptions = Required<SqliteOptions>;

/** Epoch ms. Every time the backend stores or compares comes from one, so tests can drive it. */
export type Clock = () => number;

export const DEFAULT_SQLITE_OPTIONS: ResolvedSqliteOptions = { synchronous: 'FULL', busyTimeoutMs: 5000, maxBatch: 4096, now: Date.now };

const SPEC: OptionSpec = {
  synchronous: { type: 'string', oneOf: ['FULL', 'NORMAL'] },
  busyTimeoutMs: { type: 'integer', min: 0, max: 2_147_483_647 },
  maxBatch: { type: 'integer', min: 1, max: 1_000_000 },
  now: { type: 'function' },
};

export function resolveSqliteOptions(where: string, options: unknown): ResolvedSqliteOptions {
  return validateOptions<ResolvedSqliteOptions>(where, SPEC, options, DEFAULT_SQLITE_OPTIONS);
}

/** Query values arrive as text: numbers become numbers so that validation checks their range. */
function queryValue(name: string, raw: string): unknown {
  if (name === 'synchronous') return raw.toUpperCase();
  return /^-?\d+$/.test(raw) ? Number(raw) : raw;
}

function invalidUrl(url: string, message: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, `sqlite URL ${JSON.stringify(url)}: ${message}`, { details: { option: 'url' } });
}

/**
 * `sqlite:<path>[?synchronous=FULL|NORMAL&busyTimeoutMs=N&maxBatch=N]`. The path is everything
 * after `sqlite:` up to `?`: `sqlite:./data/x.db`, `sqlite:/abs/x.db` and `sqlite:///abs/x.db`
 * (URL style, the two slashes of an empty host dropped) are all accepted.
 */
export function parseSqliteUrl(url: string): { path: string; options: ResolvedSqliteOptions } {
  const given: unknown = url;
  if (typeof given !== 'string') throw invalidUrl(typeof given, 'must be a string');
  if (!url.toLowerCase().startsWith('sqlite:')) throw invalidUrl(url, 'must start with "sqlite:"');
  const rest = url.slice('sqlite:'.length);
  const mark = rest.indexOf('?');
  let path = mark === -1 ? rest : rest.slice(0, mark);
  if (path.startsWith('//')) path = path.slice(2);
  try {
    path = decodeURIComponent(path);
  } catch {
    throw invalidUrl(url, 'the path has an invalid %-escape');
  }
  if (path.length === 0) throw invalidUrl(url, 'the path is empty; write e.g. sqlite:./data/botqueue.db');
  const query: Record<string, unknown> = {};
  if (mark !== -1) {
    for (const [name, value] of new URLSearchParams(rest.slice(mark + 1))) query[name] = queryValue(name, value);
  }
  return { path, options: resolveSqliteOptions(`sqlite URL ${JSON.stringify(url)}`, query) };
}

/** The absolute file name, or `:memory:` unchanged. */
export function resolvePath(path: string): string {
  if (path === ':memory:') return path;
  return isAbsolute(path) ? path : resolve(path);
}
