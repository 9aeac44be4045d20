/** `botqueue start`: the service (HTTP gateway and the configured workers), in the foreground. */
import { GLOBAL_FLAGS_HELP, type Command, type CommandContext, type Flags } from './context.js';
import { runStart, type RunStartOptions } from '../service/start.js';

const help = `Usage: botqueue start [--workers N]

Runs the service in the foreground: the HTTP gateway and the workers of the configured bot,
on the broker of --url, BOTQUEUE_URL or the config file (default sqlite:./data/botqueue.db).
It prints where everything is on stderr (stdout carries only the JSON log lines), and stops on SIGTERM or SIGINT within the shutdown deadline.

Flags:
  --workers <n>   worker processes sharing the SQLite file, restarted when one dies
                  (0, the default: the handlers run in this process; at most 64)

Environment: BOTQUEUE_URL, BOTQUEUE_PORT (3000), BOTQUEUE_HOST, BOTQUEUE_ADMIN_TOKEN,
BOTQUEUE_LOG_LEVEL override the config file.

${GLOBAL_FLAGS_HELP}`;

export const command: Command = {
  summary: 'run the service: HTTP gateway and the configured workers',
  help,
  flags: { workers: { type: 'string' } },
  run,
};

async function run(ctx: CommandContext, flags: Flags): Promise<number> {
  flags.expectPositionals(0, 0, '');
  const workers = flags.integer('workers', 0, 64);
  // --url wins over BOTQUEUE_URL and the config file, as in every command.
  const env = ctx.globals.url === undefined ? ctx.io.env : { ...ctx.io.env, BOTQUEUE_URL: ctx.globals.url };
  const options: RunStartOptions = { cwd: ctx.io.cwd, env, out: (line) => ctx.out.note(line), err: (line) => ctx.out.note(line) };
  if (ctx.globals.config !== undefined) options.configPath = ctx.globals.config;
  if (workers !== undefined) options.workers = workers;
  return runStart(options);
}
