/** `botqueue topics create|list`. */
import type { TopicInfo } from '../brokers/broker.js';
import { MAX_PARTITIONS, MIN_PARTITIONS } from '../core/limits.js';
import { GLOBAL_FLAGS_HELP, withClient, type Command, type CommandContext, type Flags } from './context.js';
import { CliError, usageError } from './errors.js';
import { withAdmin } from './admin.js';
import type { Botqueue } from '../client.js';
import { formatAge, table } from './output.js';

const help = `Usage:
  botqueue topics create <name> [--partitions N] [--dedup-window-ms N] [--json]
  botqueue topics list [--json]
  botqueue topics delete <name> --yes

create  creates a topic; the partition count is fixed at creation. Defaults: the topic's
        entry in the config file, else 16 partitions and a 24 h dedup window. An existing
        topic with the same partition count is left as it is.
list    every topic: partitions, dedup window, retained messages and subscribed groups
delete  deletes the topic with its messages, groups, dedup records and dead letters; refused
        while a group of it has live members (stop the workers first). Needs --yes.

Flags:
  --partitions <n>        partitions (${MIN_PARTITIONS}-${MAX_PARTITIONS})
  --dedup-window-ms <n>   how long a message id is remembered to drop duplicates, in ms
  --json                  print a JSON document (see docs/cli.md)

${GLOBAL_FLAGS_HELP}`;

export const command: Command = {
  summary: 'create a topic, list topics',
  help,
  flags: { partitions: { type: 'string' }, 'dedup-window-ms': { type: 'string' }, json: { type: 'boolean' }, yes: { type: 'boolean' } },
  run,
};

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  const sub = flags.positionals[0];
  if (sub === 'create') {
    const [, name] = flags.expectPositionals(2, 2, 'a topic name: botqueue topics create <name>');
    return create(ctx, flags, name!);
  }
  if (sub === 'list') {
    flags.only(['json'], 'topics list');
    flags.expectPositionals(1, 1, '');
    return list(ctx, flags);
  }
  if (sub === 'delete') {
    flags.only(['yes'], 'topics delete');
    const [, name] = flags.expectPositionals(2, 2, 'a topic name: botqueue topics delete <name> --yes');
    if (!flags.boolean('yes')) throw new CliError(`topics delete removes topic "${name}" with its messages, groups and dead letters`, 'add --yes to confirm');
    await withAdmin(ctx, { readOnly: false }, (admin) => admin.deleteTopic(name!));
    ctx.out.line(`deleted topic ${name}`);
    return 0;
  }
  if (sub === undefined) throw usageError('topics needs a subcommand: create, list or delete', 'topics');
  throw usageError(`unknown topics subcommand "${sub}"; use create, list or delete`, 'topics');
}

function topicJson(info: TopicInfo): Record<string, unknown> {
  return { name: info.name, partitions: info.partitions, dedupWindowMs: info.dedupWindowMs, createdAt: info.createdAt };
}

async function create(ctx: CommandContext, flags: Flags, name: string): Promise<number> {
  const partitionsFlag = flags.integer('partitions', MIN_PARTITIONS, MAX_PARTITIONS);
  const dedupFlag = flags.integer('dedup-window-ms', 0);
  const { info, created } = await withClient(ctx, async (bq, settings) => {
    const declared = settings.topics[name];
    const partitions = partitionsFlag ?? declared?.partitions ?? bq.options.defaultPartitions;
    const dedupWindowMs = dedupFlag ?? declared?.dedupWindowMs ?? bq.options.defaultDedupWindowMs;
    const existed = (await bq.broker.getTopic(name)) !== undefined;
    const topic = await bq.createTopic(name, { partitions, dedupWindowMs });
    if (existed && dedupFlag !== undefined && topic.dedupWindowMs !== dedupFlag) {
      ctx.out.note(`topic ${name} already exists with a dedup window of ${topic.dedupWindowMs} ms; --dedup-window-ms was not applied`);
    }
    return { info: topic, created: !existed };
  });
  if (flags.boolean('json')) {
    ctx.out.json({ created, topic: topicJson(info) });
    return 0;
  }
  const shape = `${info.partitions} partitions, dedup window ${formatAge(info.dedupWindowMs)}`;
  ctx.out.line(created ? `created topic ${info.name}: ${shape}` : `topic ${info.name} already exists: ${shape}; nothing changed`);
  return 0;
}

async function list(ctx: CommandContext, flags: Flags): Promise<number> {
  const topics = await withAdmin(ctx, { readOnly: true }, async (admin) => {
    const stats = await admin.stats();
    return Promise.all(
      stats.map(async (t) => {
        const info = 'broker' in admin ? await (admin as Botqueue).broker.getTopic(t.topic) : undefined;
        return {
          name: t.topic,
          partitions: t.partitions,
          dedupWindowMs: info?.dedupWindowMs ?? null,
          createdAt: info?.createdAt ?? null,
          retained: t.retained,
          groups: t.groups.map((g) => g.group),
        };
      }),
    );
  });
  if (flags.boolean('json')) {
    ctx.out.json({ topics });
    return 0;
  }
  if (topics.length === 0) {
    ctx.out.line('no topics yet: create one with botqueue topics create <name>, or publish to one');
    return 0;
  }
  const rows = topics.map((t) => [
    t.name,
    String(t.partitions),
    t.dedupWindowMs === null ? '-' : formatAge(t.dedupWindowMs),
    String(t.retained),
    t.groups.length === 0 ? '(none)' : t.groups.join(', '),
  ]);
  const columns = [{ title: 'TOPIC' }, { title: 'PARTITIONS', align: 'right' as const }, { title: 'DEDUP WINDOW', align: 'right' as const }, { title: 'RETAINED', align: 'right' as const }, { title: 'GROUPS' }];
  for (const line of table(columns, rows)) ctx.out.line(line);
  return 0;
}
