/**
 * What every command shares: the streams it runs with, flag parsing (node's util.parseArgs,
 * with errors that name the flag), the broker URL and topic settings from the configuration,
 * and a connected client.
 */
import { parseArgs } from 'node:util';
import { connect, type Botqueue } from '../client.js';
import { BotqueueError } from '../core/errors.js';
import { CliError, usageError } from './errors.js';
import type { Output, OutputStream } from './output.js';
import { loadConfig, type BotqueueConfig, type TopicConfig } from '../service/config.js';
import { settingsSecrets } from '../service/secrets.js';

export interface InputStream extends AsyncIterable<string | Buffer> {
  isTTY?: boolean;
  fd?: number;
  setEncoding?(encoding: BufferEncoding): unknown;
}

/** The process a command runs in; tests of the CLI run it as a real child process. */
export interface Io {
  stdout: OutputStream;
  stderr: OutputStream;
  stdin: InputStream;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

/** Flags every command takes. */
export interface Globals {
  /** `--url`: overrides BOTQUEUE_URL and the config file. */
  url: string | undefined;
  /** `--server <url>`: a running server's admin API instead of the store (stats, dlq, topics, groups). */
  server?: string | undefined;
  /** `--config <path>`: the config file instead of botqueue.config.{ts,js,json} in the cwd. */
  config: string | undefined;
  /** `--debug`: print the stack of an error after its one line. */
  debug: boolean;
}

export interface CommandContext {
  io: Io;
  out: Output;
  globals: Globals;
  /**
   * Secrets of the settings (URL passwords, the admin token) that every error line and check
   * is redacted against; loadSettings adds those of the config file.
   */
  secrets: string[];
}

export interface Command {
  /** One line for `botqueue --help`. */
  summary: string;
  /** The whole text of `botqueue <command> --help`. */
  help: string;
  /** The command's own flags (the global ones are added). */
  flags: FlagsSpec;
  /** Runs the command with its parsed flags; resolves to the exit code. */
  run(ctx: CommandContext, flags: Flags): Promise<number>;
}

export interface FlagSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
}
export type FlagsSpec = Record<string, FlagSpec>;

export const GLOBAL_FLAGS: FlagsSpec = {
  url: { type: 'string' },
  server: { type: 'string' },
  config: { type: 'string' },
  debug: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

/** Text for the help pages: the flags every command takes. */
export const GLOBAL_FLAGS_HELP = `Global flags:
  --url <url>        broker URL (overrides BOTQUEUE_URL and the config file)
  --config <path>    config file (default: botqueue.config.{ts,js,json} in the current directory)
  --server <url>     stats, dlq, topics and groups ask this running server's admin API instead of
                     opening the store (or BOTQUEUE_SERVER; the token from BOTQUEUE_ADMIN_TOKEN)
  --debug            print the stack of an error
  -h, --help         this help`;

export class Flags {
  constructor(
    private readonly command: string | undefined,
    private readonly values: Record<string, string | boolean | (string | boolean)[] | undefined>,
    readonly positionals: string[],
    /** Names of the flags given on the command line. */
    readonly given: ReadonlySet<string>,
  ) {}

  /** Refuses flags that the (sub)command `where` does not take, though its parent does. */
  only(allowed: readonly string[], where: string): void {
    for (const name of this.given) {
      if (!allowed.includes(name) && !Object.hasOwn(GLOBAL_FLAGS, name)) throw usageError(`option --${name} does not apply to ${where}`, this.command);
    }
  }

  string(name: string): string | undefined {
    const value = this.values[name];
    return typeof value === 'string' ? value : undefined;
  }

  boolean(name: string): boolean {
    return this.values[name] === true;
  }

  list(name: string): string[] {
    const value = this.values[name];
    return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
  }

  /** An integer flag within [min, max], or undefined when absent. */
  integer(name: string, min: number, max = Number.MAX_SAFE_INTEGER): number | undefined {
    const raw = this.string(name);
    if (raw === undefined) return undefined;
    const value = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      const range = max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`;
      throw usageError(`--${name} must be ${range}, got ${JSON.stringify(raw)}`, this.command);
    }
    return value;
  }

  /** Checks the count of positional arguments; `names` describe them for the error. */
  expectPositionals(min: number, max: number, names: string): string[] {
    const count = this.positionals.length;
    const where = this.command ?? 'botqueue';
    if (count < min) throw usageError(`${where} needs ${names}`, this.command);
    if (count > max) {
      const extra = this.positionals.slice(max).map((p) => JSON.stringify(p)).join(' ');
      throw usageError(`unexpected argument ${extra} for ${where}`, this.command);
    }
    return this.positionals;
  }
}

/**
 * Parses `args` against the command's flags plus the global ones. Unknown flags, a missing
 * value, a value given to a switch and a flag given twice are errors that name the flag.
 */
export function parseFlags(command: string | undefined, spec: FlagsSpec, args: string[]): Flags {
  const options: FlagsSpec = { ...GLOBAL_FLAGS, ...spec };
  const { values, positionals, tokens } = parseArgs({ args, options, strict: false, allowPositionals: true, tokens: true });
  const seen = new Set<string>();
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const flag = Object.hasOwn(options, token.name) ? options[token.name] : undefined;
    if (flag === undefined) {
      throw usageError(command === undefined ? `unknown option ${token.rawName}` : `unknown option ${token.rawName} for ${command}`, command);
    }
    if (flag.type === 'string') {
      if (token.value === undefined || (!token.inlineValue && token.value.startsWith('--'))) {
        const got = token.value === undefined ? '' : ` (got ${token.value}; write ${token.rawName}=${token.value} if that is the value)`;
        throw usageError(`option ${token.rawName} needs a value${got}`, command);
      }
    } else if (token.value !== undefined) {
      throw usageError(`option ${token.rawName} takes no value`, command);
    }
    if (flag.multiple !== true && seen.has(token.name)) throw usageError(`option --${token.name} is given twice`, command);
    seen.add(token.name);
  }
  return new Flags(command, values, positionals, seen);
}

/** Splits `args` at the first positional argument (a command or subcommand name), skipping flag values. */
export function splitAtName(spec: FlagsSpec, args: string[]): { name: string | undefined; before: string[]; after: string[] } {
  const { tokens } = parseArgs({ args, options: { ...GLOBAL_FLAGS, ...spec }, strict: false, allowPositionals: true, tokens: true });
  for (const token of tokens) {
    if (token.kind === 'option-terminator') break;
    if (token.kind === 'positional') return { name: token.value, before: args.slice(0, token.index), after: [...args.slice(0, token.index), ...args.slice(token.index + 1)] };
  }
  return { name: undefined, before: args, after: args };
}

/** True when `-h`/`--help` is among the flags (before any `--`). */
export function helpRequested(args: string[]): boolean {
  for (const arg of args) {
    if (arg === '--') return false;
    if (arg === '--help' || arg === '-h') return true;
  }
  return false;
}

/** What the commands need of the configuration. */
export interface Settings {
  /** The broker URL (a relative sqlite path already resolved against the cwd). */
  url: string;
  maxMessageBytes: number;
  configPath: string | undefined;
  topics: Record<string, TopicConfig>;
}

/**
 * The configuration (botqueue.config.* or `--config`), with `--url` taking the place of
 * BOTQUEUE_URL so that it wins over both the variable and the file.
 */
export async function loadSettings(ctx: CommandContext): Promise<Settings> {
  const env = ctx.globals.url === undefined ? ctx.io.env : { ...ctx.io.env, BOTQUEUE_URL: ctx.globals.url };
  let config: BotqueueConfig;
  try {
    config = await loadConfig(ctx.globals.config === undefined ? { cwd: ctx.io.cwd, env } : { cwd: ctx.io.cwd, path: ctx.globals.config, env });
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const where = ctx.globals.config === undefined ? 'the config file (botqueue.config.{ts,js,json})' : ctx.globals.config;
    throw new CliError(`could not load the configuration: ${message}${error instanceof BotqueueError ? ` (${error.code})` : ''}`, `fix ${where}, or point --config at another file`, {
      cause: error,
    });
  }
  ctx.secrets.push(...settingsSecrets(env, config));
  return { url: config.url, maxMessageBytes: config.maxMessageBytes, configPath: config.configPath, topics: config.topics };
}

/** Connects to the configured broker, runs `fn`, and closes the client whatever happens. */
export async function withClient<T>(ctx: CommandContext, fn: (bq: Botqueue, settings: Settings) => Promise<T>): Promise<T> {
  const settings = await loadSettings(ctx);
  const bq = await connect(settings.url, { maxMessageBytes: settings.maxMessageBytes });
  try {
    return await fn(bq, settings);
  } finally {
    await bq.close();
  }
}

/**
 * Creates a topic the config declares, with its partitions and dedup window, when it does
 * not exist yet; otherwise the first publish would create it with the library's defaults.
 */
export async function ensureConfiguredTopic(bq: Botqueue, settings: Settings, topic: string): Promise<void> {
  const declared = settings.topics[topic];
  if (declared === undefined) return;
  if ((await bq.broker.getTopic(topic)) !== undefined) return;
  await bq.createTopic(topic, { partitions: declared.partitions, dedupWindowMs: declared.dedupWindowMs });
}
