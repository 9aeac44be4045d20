/** `botqueue groups list|delete`: the consumer groups of the topics, and deleting an abandoned one. */
import { withAdmin } from './admin.js';
import { GLOBAL_FLAGS_HELP, type Command, type CommandContext, type Flags } from './context.js';
import { CliError, usageError } from './errors.js';
import { IDLE_AFTER_HELP, idleOptions, lastSeen } from './idle-after.js';
import { formatAge, table } from './output.js';

const help = `Usage:
  botqueue groups list [topic] [--idle-after D] [--json]
  botqueue groups delete <topic> <group> --yes

list    every group: backlog, oldest pending message, dead letters, live members and when
        one was last seen; a group with no live member, none seen for --idle-after, is
        marked idle (its messages wait, and count toward maxBacklog)
delete  unsubscribes the group: its pending messages (those no other group needs are
        deleted), leases, dead letters and recorded steps go. Refused while the group has
        live members (stop its workers first). Needs --yes.

Flags:
  --yes    confirm a delete
${IDLE_AFTER_HELP}
  --json   print a JSON document

${GLOBAL_FLAGS_HELP}`;

export const command: Command = {
  summary: 'list and delete consumer groups',
  help,
  flags: { yes: { type: 'boolean' }, json: { type: 'boolean' }, 'idle-after': { type: 'string' } },
  run,
};

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  const sub = flags.positionals[0];
  if (sub === 'list') {
    flags.only(['json', 'idle-after'], 'groups list');
    const [, topic] = flags.expectPositionals(1, 2, '');
    const options = idleOptions(flags);
    const stats = await withAdmin(ctx, { readOnly: true }, (admin) => admin.stats(topic, options));
    const rows = stats.flatMap((t) =>
      t.groups.map((g) => ({ topic: t.topic, group: g.group, backlog: g.backlog, oldestAgeMs: g.oldestAgeMs, deadLetters: g.deadLetters, members: g.members, lastSeenAt: g.lastSeenAt, idle: g.idle })),
    );
    if (flags.boolean('json')) {
      ctx.out.json({ groups: rows });
      return 0;
    }
    if (rows.length === 0) {
      ctx.out.line('no groups yet: a worker subscribes its group when it starts');
      return 0;
    }
    const lines = table(
      [{ title: 'TOPIC' }, { title: 'GROUP' }, { title: 'BACKLOG', align: 'right' }, { title: 'OLDEST', align: 'right' }, { title: 'DLQ', align: 'right' }, { title: 'MEMBERS', align: 'right' }, { title: 'LAST SEEN', align: 'right' }],
      rows.map((r) => [r.topic, r.group, String(r.backlog), r.oldestAgeMs === 0 ? '-' : formatAge(r.oldestAgeMs), String(r.deadLetters), r.idle ? '0 (idle)' : String(r.members), lastSeen(r.members, r.lastSeenAt)]),
    );
    for (const line of lines) ctx.out.line(line);
    return 0;
  }
  if (sub === 'delete') {
    flags.only(['yes'], 'groups delete');
    const [, topic, group] = flags.expectPositionals(3, 3, 'a topic and a group: botqueue groups delete <topic> <group> --yes');
    if (!flags.boolean('yes')) {
      throw new CliError(`groups delete removes group "${group}" of topic "${topic}" with its pending messages and dead letters`, 'add --yes to confirm');
    }
    await withAdmin(ctx, { readOnly: false }, (admin) => admin.deleteGroup(topic!, group!));
    ctx.out.line(`deleted group ${group} of topic ${topic}`);
    return 0;
  }
  if (sub === undefined) throw usageError('groups needs a subcommand: list or delete', 'groups');
  throw usageError(`unknown groups subcommand "${sub}"; use list or delete`, 'groups');
}
