/**
 * `botqueue <command>`: the entry of the CLI. Each command lives in its own file and is loaded
 * only when run, so `botqueue stats` never loads the HTTP server.
 *
 * @example
 * process.exitCode = await main(process.argv.slice(2));
 */
import { readFileSync } from 'node:fs';
import { passwordsOf, redactSecrets } from '../core/redact.js';
import { settingsSecrets } from '../service/secrets.js';
import { debugDetails, exitCodeOf, formatError, usageError } from './errors.js';
import { GLOBAL_FLAGS, GLOBAL_FLAGS_HELP, helpRequested, parseFlags, splitAtName, type Command, type CommandContext, type Io } from './context.js';
import { Output } from './output.js';

const COMMANDS: Record<string, { summary: string; load: () => Promise<Command> }> = {
  start: { summary: 'run the service: HTTP gateway and the configured workers', load: async () => (await import('./start.js')).command },
  publish: { summary: 'publish one message from flags, or NDJSON lines from stdin', load: async () => (await import('./publish.js')).command },
  stats: { summary: 'backlog, in flight, oldest age, dead letters, parked keys per topic and group', load: async () => (await import('./stats.js')).command },
  dlq: { summary: 'dead letters: summary, list, show, redrive, purge', load: async () => (await import('./dlq.js')).command },
  topics: { summary: 'create, list and delete topics', load: async () => (await import('./topics.js')).command },
  groups: { summary: 'list and delete consumer groups', load: async () => (await import('./groups.js')).command },
  doctor: { summary: 'check Node, the backend driver, the broker URL, the data directory and a connection', load: async () => (await import('./doctor.js')).command },
};

function version(): string {
  // src/cli/main.ts and dist/cli/main.js both sit two levels under the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

function topHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  const lines = Object.entries(COMMANDS).map(([name, { summary }]) => `  ${name.padEnd(width)}  ${summary}`);
  return `botqueue ${version()}: a durable, ordered queue for chat bots

Usage: botqueue <command> [flags]

Commands:
${lines.join('\n')}

${GLOBAL_FLAGS_HELP}
  -v, --version      print the version

The broker URL comes from --url, else BOTQUEUE_URL, else the config file, else
sqlite:./data/botqueue.db. Run botqueue <command> --help for a command's flags.`;
}

/** Runs the CLI with `argv` (without node and the script) on this process's streams; resolves to the exit code. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  const out = new Output(io.stdout, io.stderr);
  let debug = argv.includes('--debug');
  // Known before the flags are parsed, so that even a usage error never echoes a password.
  const secrets = [...settingsSecrets(io.env), ...passwordsOf(...argv)];
  try {
    const topFlags = { ...GLOBAL_FLAGS, version: { type: 'boolean', short: 'v' } } as const;
    const { name, before, after } = splitAtName(topFlags, argv);
    // Flags before the command must be global ones; the command checks the rest.
    const top = parseFlags(undefined, topFlags, before);
    if (name === undefined) {
      top.expectPositionals(0, 0, '');
      if (top.boolean('version')) {
        out.line(version());
        return 0;
      }
      if (top.boolean('help') || argv.length === 0) {
        out.line(topHelp());
        return 0;
      }
      throw usageError('no command given');
    }
    if (name === 'help') {
      // `botqueue help <command>` is `botqueue <command> --help`.
      const target = after.find((arg) => !arg.startsWith('-'));
      if (target === undefined) {
        out.line(topHelp());
        return 0;
      }
      if (!Object.hasOwn(COMMANDS, target)) throw usageError(`unknown command "${target}"`);
      out.line((await COMMANDS[target]!.load()).help);
      return 0;
    }
    const entry = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
    if (entry === undefined) throw usageError(`unknown command "${name}"`);
    const command = await entry.load();
    if (helpRequested(after)) {
      out.line(command.help);
      return 0;
    }
    const flags = parseFlags(name, command.flags, after);
    debug = flags.boolean('debug');
    const ctx: CommandContext = { io, out, globals: { url: flags.string('url'), server: flags.string('server'), config: flags.string('config'), debug }, secrets };
    return await command.run(ctx, flags);
  } catch (error) {
    io.stderr.write(`${redactSecrets(formatError(error), ...secrets)}\n`);
    if (debug) io.stderr.write(`${redactSecrets(debugDetails(error), ...secrets)}\n`);
    return exitCodeOf(error);
  }
}

function processIo(): Io {
  // A reader that goes away (`botqueue dlq list | head`) is not an error of the command.
  process.stdout.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
  });
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env, cwd: process.cwd() };
}
