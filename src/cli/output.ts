/**
 * What every command prints with: lines, JSON documents, aligned tables, ages and a progress
 * bar that appears only on a terminal.
 */
import cliProgress from 'cli-progress';

export interface OutputStream {
  write(chunk: string): boolean;
  isTTY?: boolean;
}

export class Output {
  constructor(
    readonly stdout: OutputStream,
    readonly stderr: OutputStream,
  ) {}

  /** One line (or several) on stdout. */
  line(text = ''): void {
    this.stdout.write(`${text}\n`);
  }

  /** A JSON document on stdout, indented, with a final newline. */
  json(value: unknown): void {
    this.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
  }

  /** A note for the operator on stderr (progress, warnings); never part of the data on stdout. */
  note(text: string): void {
    this.stderr.write(`${text}\n`);
  }

  /** True when stderr is a terminal: progress bars are drawn only then. */
  get interactive(): boolean {
    return this.stderr.isTTY === true;
  }

  /**
   * A progress bar on stderr when it is a terminal; otherwise it draws nothing. Without a
   * total it counts (`{value}`) instead of filling a bar. `format` may use the tokens of
   * cli-progress ({bar}, {percentage}, {value}, {total}, {eta_formatted}, {duration_formatted})
   * and the fields of `initial`, updated by the payload passed to `update`.
   */
  progress(label: string, total: number | undefined, unit: string, extra = '', initial: Record<string, unknown> = {}): Progress {
    if (!this.interactive) return silentProgress;
    const format =
      total === undefined
        ? `${label} {value} ${unit}${extra} | {duration_formatted}`
        : `${label} |{bar}| {percentage}% | {value}/{total} ${unit}${extra} | ETA {eta_formatted}`;
    const bar = new cliProgress.SingleBar(
      { format, stream: this.stderr as NodeJS.WritableStream, hideCursor: true, clearOnComplete: false, fps: 10 },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total ?? 0, 0, initial);
    return {
      update: (value, payload) => bar.update(value, payload),
      stop: () => bar.stop(),
    };
  }
}

export interface Progress {
  update(value: number, payload?: Record<string, unknown>): void;
  stop(): void;
}

/** A progress that draws nothing. */
export const silentProgress: Progress = { update: () => undefined, stop: () => undefined };

export interface Column {
  title: string;
  /** Numbers read best right-aligned. */
  align?: 'left' | 'right';
}

/** Renders rows under a header, columns padded to their widest cell, two spaces apart. */
export function table(columns: Column[], rows: string[][]): string[] {
  const widths = columns.map((column, i) => Math.max(column.title.length, ...rows.map((row) => (row[i] ?? '').length)));
  const render = (cells: string[]): string =>
    cells
      .map((cell, i) => (columns[i]?.align === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [render(columns.map((c) => c.title)), ...rows.map(render)];
}

/** `0` → `-`, otherwise the two largest units: `45s`, `3m 12s`, `2h 5m`, `4d 3h`. */
export function formatAge(ms: number): string {
  if (!(ms > 0)) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  const two = (big: number, bigUnit: string, small: number, smallUnit: string): string => (small === 0 ? `${big}${bigUnit}` : `${big}${bigUnit} ${small}${smallUnit}`);
  if (m < 60) return two(m, 'm', s % 60, 's');
  const h = Math.floor(m / 60);
  if (h < 24) return two(h, 'h', m % 60, 'm');
  return two(Math.floor(h / 24), 'd', h % 24, 'h');
}

/** An epoch-ms instant as ISO 8601 UTC. */
export function formatTime(epochMs: number): string {
  return new Date(epochMs).toISOString();
}

/** An instant for a table: how long ago it was. */
export function formatAgo(epochMs: number, now = Date.now()): string {
  const age = now - epochMs;
  return age <= 0 ? 'now' : `${formatAge(age)} ago`;
}

/** A duration of a run, for summaries. */
export function formatDuration(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

/** One line, at most `max` characters (an ellipsis marks a cut). */
export function truncate(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= max ? flat : `${flat.slice(0, Math.max(0, max - 1))}…`;
}

/** `n thing` or `n things`. */
export function plural(n: number, word: string, many = `${word}s`): string {
  return `${n} ${n === 1 ? word : many}`;
}
