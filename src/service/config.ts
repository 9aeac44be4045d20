/**
 * The service's configuration: `botqueue.config.{ts,mjs,js,json}` in the working directory
 * (or an explicit path), validated field by field, with environment variables overriding it.
 * Every error names the bad field, e.g. `botqueue.config.ts: topics.updates.partitions must
 * be an integer >= 1, got 0`.
 *
 * @example
 * // botqueue.config.ts (in this repository the type comes from './src/service/config.ts')
 * import type { BotqueueConfigFile } from 'botqueue/config';
 * export default {
 *   topics: { updates: { partitions: 16, maxBacklog: 100_000 } },
 *   handlers: [{ topic: 'updates', module: './bot/handlers.ts', export: 'onUpdate', options: { group: 'bot' } }],
 * } satisfies BotqueueConfigFile;
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, isAbsolute, relative, resolve } from 'node:path';
import { DEFAULT_URL } from '../client.js';
import { DEFAULT_MAX_MESSAGE_BYTES, checkName } from '../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { DEFAULT_DEDUP_WINDOW_MS, DEFAULT_PARTITIONS, MAX_MESSAGE_BYTES_LIMIT, MAX_PARTITIONS, MIN_DEDUP_WINDOW_MS, MIN_PARTITIONS } from '../core/limits.js';
import { resolveWorkerOptions, type FailurePolicy, type WorkerOptions } from '../worker/options.js';
import { resolveWebhooks, type WebhooksConfig, type WebhooksConfigFile } from '../gateway/config.js';
import { defaultExport, importModule } from './module-loader.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface TopicConfig {
  /** Fixed when the topic is created. Default 16. */
  partitions: number;
  /** How long a message id is remembered to drop duplicates, in ms. Default 24 h. */
  dedupWindowMs: number;
  /** The failure policy of the topic's handlers. Default `'dead-letter'`. */
  onExhausted: FailurePolicy;
  /** Messages retained (not yet handled by every group) above which publishing answers 503. None by default. */
  maxBacklog: number | undefined;
}

export interface HandlerConfig {
  topic: string;
  /** Absolute path of the module (relative paths in the file are resolved against the file's directory). */
  module: string;
  /** The export holding the handler function. Default `'default'`. */
  export: string;
  /** Worker options; `onExhausted` and `shutdownTimeoutMs` are filled in from the topic and the service. */
  options: Partial<WorkerOptions>;
}

export interface HttpConfig {
  /** The publish route needs `Authorization: Bearer <admin token>` too. Default false. */
  publishRequiresToken: boolean;
  /** Most messages in one publish request. Default 1000. */
  maxBatch: number;
  /** Largest request body, in bytes. Default 4 × maxMessageBytes + 64 KiB. */
  bodyLimitBytes: number;
  /** Publishing to a topic the config does not declare creates it with the defaults. Default: true when the config declares no topic, false (404 naming the declared ones) when it declares some. */
  allowUndeclaredTopics: boolean;
}

export interface BotqueueConfig {
  /** Broker URL; relative sqlite paths are already resolved against the working directory. */
  url: string;
  host: string;
  /** 0: any free port (the one chosen is printed). */
  port: number;
  adminToken: string | undefined;
  logLevel: string;
  /** The whole shutdown (HTTP, workers, broker) finishes within this, in ms. */
  shutdownTimeoutMs: number;
  maxMessageBytes: number;
  topics: Record<string, TopicConfig>;
  handlers: HandlerConfig[];
  /** Absolute path of the file read, or undefined when none was found. */
  configPath: string | undefined;
  /** HTTP settings; `loadConfig` always sets them (see `httpSettings` for a config built by hand). */
  http?: HttpConfig;
  /** Platform webhooks (mounted only for platforms whose secret is set); `loadConfig` always sets them. */
  webhooks?: WebhooksConfig;
}

/** What a config file's default export may hold (every field optional). */
export interface BotqueueConfigFile {
  url?: string;
  host?: string;
  port?: number;
  /** Prefer the BOTQUEUE_ADMIN_TOKEN environment variable: a config file is easily committed. */
  adminToken?: string;
  logLevel?: LogLevel;
  shutdownTimeoutMs?: number;
  maxMessageBytes?: number;
  http?: Partial<HttpConfig>;
  topics?: Record<string, Partial<TopicConfig>>;
  handlers?: Array<{ topic: string; module: string; export?: string; options?: Partial<WorkerOptions> }>;
  /** Platform webhooks; prefer the environment for their secrets (TELEGRAM_SECRET_TOKEN, SLACK_SIGNING_SECRET...). */
  webhooks?: WebhooksConfigFile;
}

/** Identity function that gives a JavaScript config file its types. */
export function defineConfig(config: BotqueueConfigFile): BotqueueConfigFile {
  return config;
}

export const CONFIG_FILE_NAMES = ['botqueue.config.ts', 'botqueue.config.mjs', 'botqueue.config.js', 'botqueue.config.json'] as const;
const LOADABLE = new Set(['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs', '.json']);

export const DEFAULT_PORT = 3000;
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
export const DEFAULT_TOPIC: TopicConfig = { partitions: DEFAULT_PARTITIONS, dedupWindowMs: DEFAULT_DEDUP_WINDOW_MS, onExhausted: 'dead-letter', maxBacklog: undefined };
/** Handlers get this share of the shutdown deadline; the rest is for handing partitions back and closing the broker. */
const HANDLER_SHARE_OF_SHUTDOWN = 0.8;
const MIN_TOKEN_LENGTH = 16;

/** The HTTP settings of a config, with the defaults for any not given. */
export function httpSettings(config: Pick<BotqueueConfig, 'maxMessageBytes' | 'http'>): HttpConfig {
  return (
    config.http ?? {
      publishRequiresToken: false,
      maxBatch: 1000,
      bodyLimitBytes: defaultBodyLimit(config.maxMessageBytes),
      allowUndeclaredTopics: true,
    }
  );
}

function defaultBodyLimit(maxMessageBytes: number): number {
  return 4 * maxMessageBytes + 64 * 1024;
}

export interface LoadConfigOptions {
  /** Where to look for the config file and resolve relative paths. Default `process.cwd()`. */
  cwd?: string;
  /** An explicit config file (relative to cwd); it must exist. */
  path?: string;
  /** Default `process.env`. */
  env?: NodeJS.ProcessEnv;
}

/**
 * Finds, loads and validates the config, then applies the environment (BOTQUEUE_URL,
 * BOTQUEUE_PORT, BOTQUEUE_HOST, BOTQUEUE_ADMIN_TOKEN, BOTQUEUE_LOG_LEVEL). No file: the
 * defaults, no topics, no handlers. Throws BOTQUEUE_INVALID_OPTION naming the bad field.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<BotqueueConfig> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const env = options.env ?? process.env;
  const path = findConfigFile(cwd, options.path);
  const label = path === undefined ? 'config' : displayPath(cwd, path);
  const raw = path === undefined ? {} : await readConfigFile(path, label);
  return resolveConfig(raw, { cwd, env, path, label });
}

function findConfigFile(cwd: string, explicit: string | undefined): string | undefined {
  if (explicit !== undefined) {
    const path = resolve(cwd, explicit);
    if (!existsSync(path) || !statSync(path).isFile()) throw invalid(`config file not found: ${path}`, 'configPath');
    if (!LOADABLE.has(extname(path))) {
      throw invalid(`config file ${path} must end in .ts, .mjs, .js or .json (found "${extname(path)}")`, 'configPath');
    }
    return path;
  }
  const found = CONFIG_FILE_NAMES.map((name) => resolve(cwd, name)).filter((path) => existsSync(path));
  if (found.length > 1) {
    throw invalid(`found several config files in ${cwd}: ${found.map((p) => displayPath(cwd, p)).join(', ')}; keep one (botqueue reads only one)`, 'configPath');
  }
  return found[0];
}

async function readConfigFile(path: string, label: string): Promise<unknown> {
  if (extname(path) === '.json') {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (error) {
      throw invalid(`${label}: cannot read it: ${(error as Error).message}`, 'configPath', error);
    }
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw invalid(`${label} is not valid JSON: ${(error as Error).message}`, 'configPath', error);
    }
  }
  let namespace: Record<string, unknown>;
  try {
    namespace = await importModule(path);
  } catch (error) {
    throw invalid(`${label} could not be loaded: ${(error as Error).message}`, 'configPath', error);
  }
  let value = defaultExport(namespace);
  if (typeof value === 'function') value = await (value as () => unknown)();
  if (value === undefined) {
    throw invalid(`${label} has no default export: write \`export default { topics: { ... }, handlers: [ ... ] }\``, 'configPath');
  }
  return value;
}

interface Context {
  cwd: string;
  env: NodeJS.ProcessEnv;
  path: string | undefined;
  label: string;
}

/** Validates a config object (as a config file's default export) and applies the environment. */
export function resolveConfig(raw: unknown, context: Context): BotqueueConfig {
  const { cwd, env, path, label } = context;
  const file = new FieldChecker(label);
  const top = file.object(raw, '', ['url', 'host', 'port', 'adminToken', 'logLevel', 'shutdownTimeoutMs', 'maxMessageBytes', 'http', 'topics', 'handlers', 'webhooks']);

  const fileUrl = file.optionalString(top.url, 'url');
  const fileHost = file.optionalString(top.host, 'host');
  const filePort = top.port === undefined ? undefined : file.integer(top.port, 'port', 0, 65_535);
  const fileToken = file.optionalString(top.adminToken, 'adminToken');
  const fileLogLevel = top.logLevel === undefined ? undefined : file.oneOf(top.logLevel, 'logLevel', LOG_LEVELS);
  const shutdownTimeoutMs = top.shutdownTimeoutMs === undefined ? DEFAULT_SHUTDOWN_TIMEOUT_MS : file.integer(top.shutdownTimeoutMs, 'shutdownTimeoutMs', 0, 3_600_000);
  const maxMessageBytes = top.maxMessageBytes === undefined ? DEFAULT_MAX_MESSAGE_BYTES : file.integer(top.maxMessageBytes, 'maxMessageBytes', 1, MAX_MESSAGE_BYTES_LIMIT);

  // Environment variables override the file.
  const fromEnv = new FieldChecker(undefined);
  const envValue = (name: string): string | undefined => {
    const value = env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  };
  const envUrl = envValue('BOTQUEUE_URL');
  const envPortText = envValue('BOTQUEUE_PORT');
  let envPort: number | undefined;
  if (envPortText !== undefined) {
    if (!/^\d{1,5}$/.test(envPortText) || Number(envPortText) > 65_535) {
      throw invalid(`BOTQUEUE_PORT must be an integer from 0 to 65535 (0: any free port), got ${JSON.stringify(envPortText)}`, 'port');
    }
    envPort = Number(envPortText);
  }
  const envHost = envValue('BOTQUEUE_HOST');
  const envToken = env.BOTQUEUE_ADMIN_TOKEN === undefined || env.BOTQUEUE_ADMIN_TOKEN === '' ? undefined : env.BOTQUEUE_ADMIN_TOKEN;
  const envLogLevelText = envValue('BOTQUEUE_LOG_LEVEL');
  const envLogLevel = envLogLevelText === undefined ? undefined : fromEnv.oneOf(envLogLevelText.toLowerCase(), 'BOTQUEUE_LOG_LEVEL', LOG_LEVELS);

  const adminToken = envToken ?? fileToken;
  if (adminToken !== undefined && adminToken.length < MIN_TOKEN_LENGTH) {
    const where = envToken !== undefined ? 'BOTQUEUE_ADMIN_TOKEN' : `${label}: adminToken`;
    throw invalid(`${where} must be at least ${MIN_TOKEN_LENGTH} characters (got ${adminToken.length}); generate one with: openssl rand -hex 32`, 'adminToken');
  }
  const hostGiven = envHost ?? fileHost;
  const host = hostGiven ?? (adminToken === undefined ? '127.0.0.1' : '0.0.0.0');
  if (adminToken === undefined && !isLoopback(host)) {
    const where = envHost !== undefined ? 'BOTQUEUE_HOST' : `${label}: host`;
    throw invalid(
      `${where} is ${JSON.stringify(host)}, not a loopback address, and no admin token is set: set BOTQUEUE_ADMIN_TOKEN (at least ${MIN_TOKEN_LENGTH} characters) so that the admin routes are protected, or listen on 127.0.0.1`,
      'host',
    );
  }

  const topics = resolveTopics(file, top.topics);
  // A config that declares topics refuses others by default: a mistyped topic is a 404, not a new topic.
  const http = resolveHttp(file, top.http, maxMessageBytes, adminToken, Object.keys(topics).length > 0);
  const handlers = resolveHandlers(file, top.handlers, topics, shutdownTimeoutMs, path === undefined ? cwd : dirname(path));

  return {
    url: resolveSqliteUrl(envUrl ?? fileUrl ?? DEFAULT_URL, cwd),
    host,
    port: envPort ?? filePort ?? DEFAULT_PORT,
    adminToken,
    logLevel: envLogLevel ?? fileLogLevel ?? 'info',
    shutdownTimeoutMs,
    maxMessageBytes,
    topics,
    handlers,
    configPath: path,
    http,
    webhooks: resolveWebhooks(top.webhooks, env, label),
  };
}

function resolveHttp(file: FieldChecker, input: unknown, maxMessageBytes: number, adminToken: string | undefined, declaresTopics: boolean): HttpConfig {
  const defaults = { ...httpSettings({ maxMessageBytes, http: undefined }), allowUndeclaredTopics: !declaresTopics };
  if (input === undefined) return defaults;
  const http = file.object(input, 'http', ['publishRequiresToken', 'maxBatch', 'bodyLimitBytes', 'allowUndeclaredTopics']);
  const result: HttpConfig = {
    publishRequiresToken: http.publishRequiresToken === undefined ? defaults.publishRequiresToken : file.boolean(http.publishRequiresToken, 'http.publishRequiresToken'),
    maxBatch: http.maxBatch === undefined ? defaults.maxBatch : file.integer(http.maxBatch, 'http.maxBatch', 1, 100_000),
    bodyLimitBytes: http.bodyLimitBytes === undefined ? defaults.bodyLimitBytes : file.integer(http.bodyLimitBytes, 'http.bodyLimitBytes', 1024, 1024 * 1024 * 1024),
    allowUndeclaredTopics:
      http.allowUndeclaredTopics === undefined ? defaults.allowUndeclaredTopics : file.boolean(http.allowUndeclaredTopics, 'http.allowUndeclaredTopics'),
  };
  if (result.publishRequiresToken && adminToken === undefined) {
    throw file.fail('http.publishRequiresToken', 'is true but no admin token is set: set BOTQUEUE_ADMIN_TOKEN (at least 16 characters)');
  }
  return result;
}

function resolveTopics(file: FieldChecker, input: unknown): Record<string, TopicConfig> {
  const topics: Record<string, TopicConfig> = {};
  if (input === undefined) return topics;
  const entries = file.object(input, 'topics', undefined);
  for (const [name, value] of Object.entries(entries)) {
    const path = `topics${propertyPath(name)}`;
    try {
      checkName('topic', name);
    } catch {
      throw file.fail(path, 'is not a valid topic name: use 1-200 letters, digits, ".", "_" or "-", starting with a letter or digit');
    }
    const topic = file.object(value ?? {}, path, ['partitions', 'dedupWindowMs', 'onExhausted', 'maxBacklog']);
    topics[name] = {
      partitions: topic.partitions === undefined ? DEFAULT_TOPIC.partitions : file.integer(topic.partitions, `${path}.partitions`, MIN_PARTITIONS, MAX_PARTITIONS),
      dedupWindowMs: topic.dedupWindowMs === undefined ? DEFAULT_TOPIC.dedupWindowMs : file.integer(topic.dedupWindowMs, `${path}.dedupWindowMs`, MIN_DEDUP_WINDOW_MS),
      onExhausted: topic.onExhausted === undefined ? DEFAULT_TOPIC.onExhausted : file.oneOf(topic.onExhausted, `${path}.onExhausted`, ['dead-letter', 'park-key'] as const),
      maxBacklog: topic.maxBacklog === undefined ? undefined : file.integer(topic.maxBacklog, `${path}.maxBacklog`, 1),
    };
  }
  return topics;
}

function resolveHandlers(file: FieldChecker, input: unknown, topics: Record<string, TopicConfig>, shutdownTimeoutMs: number, baseDir: string): HandlerConfig[] {
  if (input === undefined) return [];
  if (!Array.isArray(input)) throw file.fail('handlers', `must be an array of { topic, module, export?, options? }, got ${describe(input)}`);
  const handlers: HandlerConfig[] = [];
  const seen = new Map<string, number>();
  input.forEach((value: unknown, index) => {
    const path = `handlers[${index}]`;
    const entry = file.object(value, path, ['topic', 'module', 'export', 'options']);
    const topic = file.string(entry.topic, `${path}.topic`);
    const settings = Object.hasOwn(topics, topic) ? topics[topic] : undefined;
    if (settings === undefined) {
      const declared = Object.keys(topics);
      throw file.fail(
        `${path}.topic`,
        `names topic ${JSON.stringify(topic)}, which is not declared in topics (${declared.length === 0 ? 'none declared' : `declared: ${declared.join(', ')}`}); add topics: { ${JSON.stringify(topic)}: {} }`,
      );
    }
    const moduleText = file.string(entry.module, `${path}.module`);
    const module = isAbsolute(moduleText) ? moduleText : resolve(baseDir, moduleText);
    if (!existsSync(module)) throw file.fail(`${path}.module`, `names ${JSON.stringify(moduleText)}, but there is no file at ${module}`);
    const exportName = entry.export === undefined ? 'default' : file.string(entry.export, `${path}.export`);
    const given = entry.options === undefined ? {} : file.object(entry.options, `${path}.options`, undefined);
    let options: Partial<WorkerOptions>;
    try {
      resolveWorkerOptions(given);
      options = { ...(given as Partial<WorkerOptions>) };
    } catch (error) {
      if (error instanceof BotqueueError) throw file.fail(`${path}.options`, error.message.replace(/^worker options: /, ''), error, ': ');
      throw error;
    }
    if (options.onExhausted !== undefined && options.onExhausted !== settings.onExhausted) {
      throw file.fail(
        `${path}.options.onExhausted`,
        `is '${options.onExhausted}' but topics${propertyPath(topic)}.onExhausted is '${settings.onExhausted}'; set the failure policy on the topic only`,
      );
    }
    options.onExhausted = settings.onExhausted;
    if (options.shutdownTimeoutMs === undefined) options.shutdownTimeoutMs = Math.floor(shutdownTimeoutMs * HANDLER_SHARE_OF_SHUTDOWN);
    else if (options.shutdownTimeoutMs > shutdownTimeoutMs) {
      throw file.fail(`${path}.options.shutdownTimeoutMs`, `(${options.shutdownTimeoutMs}) must not exceed shutdownTimeoutMs (${shutdownTimeoutMs}), the whole service's deadline`);
    }
    const group = options.group ?? 'default';
    const sameGroup = seen.get(`${topic}\n${group}`);
    if (sameGroup !== undefined) {
      throw file.fail(
        path,
        `handles topic ${JSON.stringify(topic)} in group ${JSON.stringify(group)} like handlers[${sameGroup}]: each message would reach only one of them; give it another options.group`,
      );
    }
    seen.set(`${topic}\n${group}`, index);
    handlers.push({ topic, module, export: exportName, options });
  });
  return handlers;
}

// ------------------------------------------------------------------------- helpers

/** `sqlite:` URLs with a relative path are resolved against `cwd`; other URLs are kept. */
export function resolveSqliteUrl(url: string, cwd: string): string {
  if (!/^sqlite:/i.test(url)) return url;
  const rest = url.slice('sqlite:'.length);
  const mark = rest.indexOf('?');
  let path = mark === -1 ? rest : rest.slice(0, mark);
  const query = mark === -1 ? '' : rest.slice(mark);
  if (path.startsWith('//')) path = path.slice(2);
  let decoded: string;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    return url; // connect() reports the bad escape
  }
  if (decoded === '' || decoded === ':memory:' || isAbsolute(decoded)) return url;
  const absolute = resolve(cwd, decoded).replace(/%/g, '%25').replace(/\?/g, '%3F');
  return `sqlite:${absolute}${query}`;
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function displayPath(cwd: string, path: string): string {
  const rel = relative(cwd, path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

function propertyPath(name: string): string {
  return /^[A-Za-z_$][\w$]*$/.test(name) ? `.${name}` : `[${JSON.stringify(name)}]`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return `a ${typeof value}`;
}

function invalid(message: string, option: string, cause?: unknown): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, message, { cause, details: { option } });
}

/** Checks fields of one source (a file, or the environment when `label` is undefined) with messages that name them. */
class FieldChecker {
  constructor(private readonly label: string | undefined) {}

  fail(path: string, message: string, cause?: unknown, separator = ' '): BotqueueError {
    return invalid(`${this.label === undefined ? '' : `${this.label}: `}${path}${separator}${message}`, path, cause);
  }

  object(value: unknown, path: string, known: string[] | undefined): Record<string, unknown> {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      throw this.fail(path === '' ? 'the default export' : path, `must be an object, got ${describe(value)}`);
    }
    const record = value as Record<string, unknown>;
    if (known !== undefined) {
      for (const key of Object.keys(record)) {
        if (known.includes(key)) continue;
        const hint = known.find((k) => k.toLowerCase() === key.toLowerCase() || k.toLowerCase().startsWith(key.toLowerCase().slice(0, 4)));
        const field = path === '' ? key : `${path}.${key}`;
        throw this.fail(field, `is not a known field${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; known fields${path === '' ? '' : ` of ${path}`}: ${known.join(', ')}`);
      }
    }
    return record;
  }

  string(value: unknown, path: string): string {
    if (typeof value !== 'string' || value.length === 0) throw this.fail(path, `must be a non-empty string, got ${describe(value)}`);
    return value;
  }

  optionalString(value: unknown, path: string): string | undefined {
    return value === undefined ? undefined : this.string(value, path);
  }

  integer(value: unknown, path: string, min: number, max?: number): number {
    const range = max === undefined ? `>= ${min}` : `from ${min} to ${max}`;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || (max !== undefined && value > max)) {
      throw this.fail(path, `must be an integer ${range}, got ${describe(value)}`);
    }
    return value;
  }

  boolean(value: unknown, path: string): boolean {
    if (typeof value !== 'boolean') throw this.fail(path, `must be true or false, got ${describe(value)}`);
    return value;
  }

  oneOf<T extends string>(value: unknown, path: string, allowed: readonly T[]): T {
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      throw this.fail(path, `must be one of ${allowed.map((v) => `'${v}'`).join(', ')}, got ${describe(value)}`);
    }
    return value as T;
  }
}
