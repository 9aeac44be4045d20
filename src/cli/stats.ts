/** `botqueue stats [topic]`: per topic and group, what waits, what runs and what failed. */
import type { TopicStats } from '../brokers/broker.js';
import { withAdmin } from './admin.js';
import { GLOBAL_FLAGS_HELP, type Command, type CommandContext, type Flags } from './context.js';
import { CliError } from './errors.js';
import { IDLE_AFTER_HELP, idleOptions, lastSeen } from './idle-after.js';
import { formatAge, table, type Column } from './output.js';

const help = `Usage: botqueue stats [topic] [--partitions] [--idle-after D] [--json]

Per topic and consumer group: backlog (pending messages), in flight, age of the oldest
pending message, dead letters, parked keys, live members (idle: none live and none seen for
--idle-after, nothing consumes its messages), when a member was last seen, and order
violations (must be 0). A topic without a group shows
the messages waiting for one. With --server (or BOTQUEUE_SERVER) it asks a running server,
and also shows the webhook requests it refused, by platform and reason.

Flags:
  --partitions   add a row per partition (backlog, in flight, oldest age, owner)
${IDLE_AFTER_HELP}
  --json         print {"topics": [...]} exactly as the library's stats() returns it (see docs/cli.md)

${GLOBAL_FLAGS_HELP}`;

export const command: Command = {
  summary: 'backlog, in flight, oldest age, dead letters, parked keys per topic and group',
  help,
  flags: { partitions: { type: 'boolean' }, json: { type: 'boolean' }, 'idle-after': { type: 'string' } },
  run,
};

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  const [topic] = flags.expectPositionals(0, 1, '');
  const options = idleOptions(flags);
  const { stats, rejected } = await withAdmin(ctx, { readOnly: true }, async (admin) => ({
    stats: await admin.stats(topic, options),
    rejected: admin.webhookRejections === undefined ? undefined : await admin.webhookRejections(),
  }));
  if (topic !== undefined && stats.length === 0) {
    throw new CliError(`topic "${topic}" does not exist`, 'see the topics with botqueue topics list');
  }
  if (flags.boolean('json')) {
    ctx.out.json(rejected === undefined ? { topics: stats } : { topics: stats, webhooks: { rejected } });
    return 0;
  }
  if (stats.length === 0) {
    ctx.out.line('no topics yet: publish a message (botqueue publish <topic>) or create one (botqueue topics create <name>)');
  } else {
    for (const line of statsTable(stats, flags.boolean('partitions'))) ctx.out.line(line);
  }
  // Refused webhook requests (a running server counts them): `telegram: bad_signature 3, ...`.
  if (rejected !== undefined) {
    const platforms = Object.entries(rejected);
    ctx.out.line(platforms.length === 0 ? 'webhooks refused: none' : `webhooks refused: ${platforms.map(([platform, reasons]) => `${platform} ${Object.entries(reasons).map(([reason, n]) => `${reason} ${n}`).join(', ')}`).join('; ')}`);
  }
  return 0;
}

/** The table: a row per (topic, group), and with `partitions` a row per partition under it. */
export function statsTable(stats: TopicStats[], partitions: boolean): string[] {
  const columns: Column[] = [
    { title: 'TOPIC' },
    { title: 'GROUP' },
    { title: 'BACKLOG', align: 'right' },
    { title: 'IN FLIGHT', align: 'right' },
    { title: 'OLDEST', align: 'right' },
    { title: 'DLQ', align: 'right' },
    { title: 'PARKED KEYS', align: 'right' },
    { title: 'MEMBERS', align: 'right' },
    { title: 'LAST SEEN', align: 'right' },
    { title: 'ORDER VIOLATIONS', align: 'right' },
  ];
  if (partitions) columns.push({ title: 'OWNER' });
  const rows: string[][] = [];
  for (const t of stats) {
    if (t.groups.length === 0) {
      // No group yet: the retained messages wait for the first one (which receives them all).
      rows.push([t.topic, '(no group)', `${t.retained} waiting`, '-', '-', '-', '-', '0', '-', '-', ...(partitions ? [''] : [])]);
      continue;
    }
    for (const g of t.groups) {
      rows.push([
        t.topic,
        g.group,
        String(g.backlog),
        String(g.inFlight),
        formatAge(g.oldestAgeMs),
        String(g.deadLetters),
        String(g.parkedKeys),
        g.idle ? '0 (idle)' : String(g.members),
        lastSeen(g.members, g.lastSeenAt),
        String(g.orderViolations),
        ...(partitions ? [''] : []),
      ]);
      if (!partitions) continue;
      for (const p of g.partitions) {
        rows.push(['', `  partition ${p.partition}`, String(p.backlog), String(p.inFlight), formatAge(p.oldestAgeMs), '', '', '', '', '', p.owner ?? '-']);
      }
    }
  }
  return table(columns, rows);
}
