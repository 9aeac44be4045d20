/**
 * `botqueue dlq summary|list|show|redrive|purge`: look at dead letters, decide, then send them
 * back to their topic and key or drop them.
 *
 * Redrive and purge first count the matches and note the highest dlqId, then work through
 * them in chunks (listing ids, then acting on exactly those ids with the same filter), so a
 * progress bar can show how far it is, and a message dead-lettered again while the command
 * runs (a new, higher dlqId) is not picked up a second time.
 */
import type { DeadLetter, DeadLetterFilter } from '../brokers/broker.js';
import { withAdmin, type Admin } from './admin.js';
import { GLOBAL_FLAGS_HELP, type Command, type CommandContext, type Flags } from './context.js';
import { CliError, EXIT_USAGE, usageError } from './errors.js';
import { formatAgo, formatTime, plural, silentProgress, table, truncate, type Column } from './output.js';

/** Dead letters read or acted on per call. */
const CHUNK = 500;
const DEFAULT_LIST_LIMIT = 50;

const help = `Usage:
  botqueue dlq summary [filters] [--limit N] [--json]
  botqueue dlq list    [filters] [--limit N] [--after DLQ_ID] [--json]
  botqueue dlq show    <dlqId> [--json]
  botqueue dlq redrive [filters | --all] [--limit N] [--dry-run] [--json]
  botqueue dlq purge   [filters | --all] [--limit N] [--dry-run] [--json]

summary  groups dead letters by topic, group and error message: count, keys, parked,
         first and last failure and a sample dlqId, most frequent first
list     one row per dead letter, oldest first (default --limit ${DEFAULT_LIST_LIMIT}; page on with --after)
show     everything of one dead letter: payload, headers, the error with its stack
redrive  sends matching dead letters back to their topic and key (a parked one is
         unparked in place: its key goes on from it)
purge    deletes matching dead letters (a parked one's key goes on without it)

Filters:
  --topic <name>     origin topic
  --group <name>     consumer group
  --key <key>        ordering key
  --error <text>     the last error's message contains this text (case-insensitive)
  --dlq-id <id>      this dead letter (repeat for more; list, redrive, purge)

Flags:
  --limit <n>        summary: at most n rows; list: n dead letters; redrive/purge: at most
                     the n oldest matches
  --after <dlqId>    list: start after this dlqId (the "next" of the previous page)
  --all              redrive/purge: allowed to match every dead letter (required with no filter)
  --dry-run          redrive/purge: count what would be affected, change nothing
  --json             print a JSON document (see docs/cli.md)

Redrive and purge draw a progress bar on stderr when it is a terminal and the run is
longer than ${CHUNK} dead letters.

${GLOBAL_FLAGS_HELP}`;

const FILTER_FLAGS = ['topic', 'group', 'key', 'error'];

export const command: Command = {
  summary: 'dead letters: summary, list, show, redrive, purge',
  help,
  flags: {
    topic: { type: 'string' },
    group: { type: 'string' },
    key: { type: 'string' },
    error: { type: 'string' },
    'dlq-id': { type: 'string', multiple: true },
    limit: { type: 'string' },
    after: { type: 'string' },
    all: { type: 'boolean' },
    'dry-run': { type: 'boolean' },
    json: { type: 'boolean' },
  },
  run,
};

const SUBCOMMANDS = ['summary', 'list', 'show', 'redrive', 'purge'] as const;
type Subcommand = (typeof SUBCOMMANDS)[number];

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  const sub = flags.positionals[0];
  if (sub === undefined) throw usageError('dlq needs a subcommand: summary, list, show, redrive or purge', 'dlq');
  if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw usageError(`unknown dlq subcommand "${sub}"; use summary, list, show, redrive or purge`, 'dlq');
  switch (sub as Subcommand) {
    case 'summary':
      flags.only([...FILTER_FLAGS, 'limit', 'json'], 'dlq summary');
      flags.expectPositionals(1, 1, '');
      return summary(ctx, flags);
    case 'list':
      flags.only([...FILTER_FLAGS, 'dlq-id', 'limit', 'after', 'json'], 'dlq list');
      flags.expectPositionals(1, 1, '');
      return list(ctx, flags);
    case 'show':
      flags.only(['json'], 'dlq show');
      return show(ctx, flags);
    case 'redrive':
    case 'purge':
      flags.only([...FILTER_FLAGS, 'dlq-id', 'limit', 'all', 'dry-run', 'json'], `dlq ${sub}`);
      flags.expectPositionals(1, 1, '');
      return act(ctx, flags, sub as 'redrive' | 'purge');
  }
}

function filterFrom(flags: Flags): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  const text = (flag: string): string | undefined => {
    const value = flags.string(flag);
    if (value === '') throw usageError(`--${flag} needs a non-empty value`, 'dlq');
    return value;
  };
  const topic = text('topic');
  const group = text('group');
  const key = text('key');
  const error = text('error');
  if (topic !== undefined) filter.topic = topic;
  if (group !== undefined) filter.group = group;
  if (key !== undefined) filter.key = key;
  if (error !== undefined) filter.errorContains = error;
  const ids = flags.list('dlq-id');
  if (ids.length > 0) {
    filter.dlqIds = ids.map((raw) => {
      if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw usageError(`--dlq-id must be a dead letter id (an integer), got ${JSON.stringify(raw)}`, 'dlq');
      return Number(raw);
    });
  }
  return filter;
}

function describeFilter(filter: DeadLetterFilter): string {
  const parts: string[] = [];
  if (filter.topic !== undefined) parts.push(`topic=${filter.topic}`);
  if (filter.group !== undefined) parts.push(`group=${filter.group}`);
  if (filter.key !== undefined) parts.push(`key=${filter.key}`);
  if (filter.errorContains !== undefined) parts.push(`error~${JSON.stringify(filter.errorContains)}`);
  if (filter.dlqIds !== undefined) parts.push(`dlqId in ${filter.dlqIds.join(',')}`);
  return parts.length === 0 ? 'every dead letter' : parts.join(' ');
}

/** Pages of dead letters matching `filter`, oldest first; with `upTo`, none with a higher dlqId. */
async function* pages(bq: Admin, filter: DeadLetterFilter, upTo = Number.MAX_SAFE_INTEGER, pageSize = CHUNK): AsyncGenerator<DeadLetter[]> {
  let after = 0;
  for (;;) {
    const page = await bq.deadLetters.list({ ...filter, afterDlqId: after, limit: pageSize });
    const kept = page.filter((d) => d.dlqId <= upTo);
    if (kept.length > 0) yield kept;
    if (page.length < pageSize || kept.length < page.length) return;
    after = page[page.length - 1]!.dlqId;
  }
}

/** A dead letter in `--json` output: the library's shape with the payload parsed. */
export function deadLetterJson(d: DeadLetter): Record<string, unknown> {
  let payload: unknown;
  try {
    payload = JSON.parse(d.payload);
  } catch {
    payload = d.payload;
  }
  return {
    dlqId: d.dlqId,
    topic: d.topic,
    group: d.group,
    partition: d.partition,
    seq: d.seq,
    id: d.id,
    key: d.key,
    payload,
    headers: d.headers,
    publishedAt: d.publishedAt,
    attempts: d.attempts,
    firstFailedAt: d.firstFailedAt,
    lastFailedAt: d.lastFailedAt,
    parked: d.parked,
    error: { message: d.error.message, name: d.error.name ?? null, code: d.error.code ?? null, stack: d.error.stack ?? null },
  };
}

interface SummaryEntry {
  topic: string;
  group: string;
  error: string;
  count: number;
  keys: number;
  parked: number;
  firstFailedAt: number;
  lastFailedAt: number;
  sampleDlqId: number;
}

async function summary(ctx: CommandContext, flags: Flags): Promise<number> {
  const filter = filterFrom(flags);
  const limit = flags.integer('limit', 1);
  const { entries, total } = await withAdmin(ctx, { readOnly: true }, async (bq) => {
    const byGroup = new Map<string, SummaryEntry & { keySet: Set<string> }>();
    let count = 0;
    for await (const page of pages(bq, filter, undefined, 1000)) {
      for (const d of page) {
        count++;
        const id = JSON.stringify([d.topic, d.group, d.error.message]);
        let entry = byGroup.get(id);
        if (entry === undefined) {
          entry = { topic: d.topic, group: d.group, error: d.error.message, count: 0, keys: 0, parked: 0, firstFailedAt: d.firstFailedAt, lastFailedAt: d.lastFailedAt, sampleDlqId: d.dlqId, keySet: new Set() };
          byGroup.set(id, entry);
        }
        entry.count++;
        if (d.parked) entry.parked++;
        if (d.key !== null) entry.keySet.add(d.key);
        entry.firstFailedAt = Math.min(entry.firstFailedAt, d.firstFailedAt);
        entry.lastFailedAt = Math.max(entry.lastFailedAt, d.lastFailedAt);
      }
    }
    const sorted = [...byGroup.values()]
      .map(({ keySet, ...entry }) => ({ ...entry, keys: keySet.size }))
      .sort((a, b) => b.count - a.count || a.topic.localeCompare(b.topic) || a.group.localeCompare(b.group) || a.sampleDlqId - b.sampleDlqId);
    return { entries: limit === undefined ? sorted : sorted.slice(0, limit), total: count };
  });
  if (flags.boolean('json')) {
    ctx.out.json({ total, entries });
    return 0;
  }
  if (total === 0) {
    ctx.out.line(`no dead letters (${describeFilter(filter)})`);
    return 0;
  }
  const columns: Column[] = [
    { title: 'COUNT', align: 'right' },
    { title: 'TOPIC' },
    { title: 'GROUP' },
    { title: 'KEYS', align: 'right' },
    { title: 'PARKED', align: 'right' },
    { title: 'FIRST FAILURE' },
    { title: 'LAST FAILURE' },
    { title: 'SAMPLE', align: 'right' },
    { title: 'ERROR' },
  ];
  const rows = entries.map((e) => [
    String(e.count),
    e.topic,
    e.group,
    String(e.keys),
    String(e.parked),
    formatAgo(e.firstFailedAt),
    formatAgo(e.lastFailedAt),
    String(e.sampleDlqId),
    truncate(e.error, 80),
  ]);
  for (const line of table(columns, rows)) ctx.out.line(line);
  ctx.out.line();
  ctx.out.line(`${plural(total, 'dead letter')} (${describeFilter(filter)}). Look at one: botqueue dlq show <SAMPLE>; then botqueue dlq redrive or purge --topic <t> --error '<text>' (try --dry-run first).`);
  return 0;
}

async function list(ctx: CommandContext, flags: Flags): Promise<number> {
  const filter = filterFrom(flags);
  const limit = flags.integer('limit', 1, 100_000) ?? DEFAULT_LIST_LIMIT;
  const after = flags.integer('after', 0) ?? 0;
  const fetched = await withAdmin(ctx, { readOnly: true }, (bq) => bq.deadLetters.list({ ...filter, afterDlqId: after, limit: limit + 1 }));
  const letters = fetched.slice(0, limit);
  const next = fetched.length > limit ? letters[letters.length - 1]!.dlqId : null;
  if (flags.boolean('json')) {
    ctx.out.json({ deadLetters: letters.map(deadLetterJson), next });
    return 0;
  }
  if (letters.length === 0) {
    ctx.out.line(`no dead letters (${describeFilter(filter)}${after > 0 ? `, after ${after}` : ''})`);
    return 0;
  }
  const columns: Column[] = [
    { title: 'DLQ ID', align: 'right' },
    { title: 'TOPIC' },
    { title: 'GROUP' },
    { title: 'KEY' },
    { title: 'MESSAGE ID' },
    { title: 'ATTEMPTS', align: 'right' },
    { title: 'LAST FAILURE' },
    { title: 'PARKED' },
    { title: 'ERROR' },
  ];
  const rows = letters.map((d) => [
    String(d.dlqId),
    d.topic,
    d.group,
    d.key ?? '-',
    truncate(d.id, 40),
    String(d.attempts),
    formatAgo(d.lastFailedAt),
    d.parked ? 'yes' : 'no',
    truncate(d.error.message, 60),
  ]);
  for (const line of table(columns, rows)) ctx.out.line(line);
  if (next !== null) ctx.out.line(`more: botqueue dlq list --after ${next}${flags.string('limit') === undefined ? '' : ` --limit ${limit}`} (same filters)`);
  return 0;
}

async function show(ctx: CommandContext, flags: Flags): Promise<number> {
  const [, raw] = flags.expectPositionals(2, 2, 'a dead letter id: botqueue dlq show <dlqId>');
  if (!/^\d+$/.test(raw!) || !Number.isSafeInteger(Number(raw))) throw usageError(`the dead letter id must be an integer, got ${JSON.stringify(raw)}`, 'dlq');
  const dlqId = Number(raw);
  const [letter] = await withAdmin(ctx, { readOnly: true }, (bq) => bq.deadLetters.list({ dlqIds: [dlqId], limit: 1 }));
  if (letter === undefined) throw new CliError(`no dead letter with id ${dlqId}`, 'see the ids with botqueue dlq list (it may have been redriven or purged)');
  if (flags.boolean('json')) {
    ctx.out.json({ deadLetter: deadLetterJson(letter) });
    return 0;
  }
  const d = letter;
  const out = ctx.out;
  out.line(`dead letter ${d.dlqId}`);
  const fields: [string, string][] = [
    ['topic', d.topic],
    ['group', d.group],
    ['key', d.key ?? '(none)'],
    ['message id', d.id],
    ['partition', String(d.partition)],
    ['seq', String(d.seq)],
    ['published', `${formatTime(d.publishedAt)} (${formatAgo(d.publishedAt)})`],
    ['attempts', String(d.attempts)],
    ['first failure', `${formatTime(d.firstFailedAt)} (${formatAgo(d.firstFailedAt)})`],
    ['last failure', `${formatTime(d.lastFailedAt)} (${formatAgo(d.lastFailedAt)})`],
    ['parked', d.parked ? 'yes: its key waits until it is redriven or purged' : 'no: its key went on'],
  ];
  for (const [name, value] of fields) out.line(`  ${`${name}:`.padEnd(15)}${value}`);
  out.line('headers:');
  const headers = Object.entries(d.headers);
  if (headers.length === 0) out.line('  (none)');
  for (const [name, value] of headers) out.line(`  ${name}: ${value}`);
  out.line('payload:');
  out.line(indent(prettyJson(d.payload)));
  out.line('error:');
  const title = `${d.error.name ?? 'Error'}${d.error.code === undefined ? '' : ` [${d.error.code}]`}: ${d.error.message}`;
  out.line(indent(title));
  if (d.error.stack !== undefined) {
    // A stack starts with "Name: message"; print only its frames under the title.
    const frames = d.error.stack.split('\n').filter((line) => /^\s+at /.test(line));
    out.line(indent(frames.length > 0 ? frames.map((f) => f.trim()).join('\n') : d.error.stack, 4));
  }
  out.line();
  out.line(`redrive it: botqueue dlq redrive --dlq-id ${d.dlqId}    drop it: botqueue dlq purge --dlq-id ${d.dlqId}`);
  return 0;
}

function prettyJson(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

function indent(text: string, spaces = 2): string {
  const pad = ' '.repeat(spaces);
  return text
    .split('\n')
    .map((line) => pad + line)
    .join('\n');
}

async function act(ctx: CommandContext, flags: Flags, action: 'redrive' | 'purge'): Promise<number> {
  const filter = filterFrom(flags);
  const all = flags.boolean('all');
  const dryRun = flags.boolean('dry-run');
  const limit = flags.integer('limit', 1);
  if (Object.keys(filter).length === 0 && !all) {
    throw new CliError(`refusing to ${action} every dead letter without --all`, `add a filter (--topic, --group, --key, --error, --dlq-id), or --all if you mean every one`, {
      exitCode: EXIT_USAGE,
    });
  }
  const done = action === 'redrive' ? 'redriven' : 'purged';
  const result = await withAdmin(ctx, { readOnly: false }, async (bq) => {
    // Count first, and fix the highest dlqId: what is dead-lettered during the run is left alone.
    let matched = 0;
    let parked = 0;
    let upTo = 0;
    counting: for await (const page of pages(bq, filter)) {
      for (const d of page) {
        if (limit !== undefined && matched >= limit) break counting;
        matched++;
        if (d.parked) parked++;
        upTo = d.dlqId;
      }
    }
    if (dryRun || matched === 0) return { matched, parked, affected: 0 };
    const progress = matched > CHUNK ? ctx.out.progress(action === 'redrive' ? 'redriving' : 'purging', matched, 'dead letters') : silentProgress;
    let affected = 0;
    let remaining = matched;
    try {
      for await (const page of pages(bq, filter, upTo)) {
        const ids = page.slice(0, remaining).map((d) => d.dlqId);
        if (ids.length === 0) break;
        const chunkFilter = { ...filter, dlqIds: ids };
        affected += action === 'redrive' ? await bq.deadLetters.redrive(chunkFilter) : await bq.deadLetters.purge(chunkFilter);
        remaining -= ids.length;
        progress.update(matched - remaining);
        if (remaining <= 0) break;
      }
    } finally {
      progress.stop();
    }
    return { matched, parked, affected };
  });
  if (flags.boolean('json')) {
    ctx.out.json({ action, dryRun, filter, matched: result.matched, parked: result.parked, [done]: result.affected });
    return 0;
  }
  const what = describeFilter(filter);
  if (result.matched === 0) ctx.out.line(`no dead letters match (${what}): nothing to ${action}`);
  else if (dryRun) {
    ctx.out.line(`dry run: would ${action} ${plural(result.matched, 'dead letter')} (${what}), ${result.parked} of them parked; nothing changed`);
  } else {
    const parkedNote =
      result.parked === 0 ? '' : action === 'redrive' ? `; ${result.parked} parked: their keys go on from them` : `; ${result.parked} parked: their keys go on without them`;
    ctx.out.line(`${done} ${plural(result.affected, 'dead letter')} (${what})${parkedNote}`);
    if (result.affected < result.matched) ctx.out.note(`${result.matched - result.affected} of the ${result.matched} matched were gone before they could be ${done} (another operator or process?)`);
  }
  return 0;
}
