/**
 * What the operator commands (stats, dlq, topics, groups) need, from one of two places: the
 * store itself (a client on the URL in force) or, with `--server URL` / BOTQUEUE_SERVER, a
 * running server's admin API (with BOTQUEUE_ADMIN_TOKEN). A read-only command never creates a
 * store: a missing SQLite file is an error naming the path and where the URL came from.
 */
import type { StatsOptions } from '../brokers/idle.js';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { DeadLetter, DeadLetterFilter, DeadLetterListOptions, TopicStats } from '../brokers/broker.js';
import { connect, describeUrl, type DeadLetters } from '../client.js';
import { ErrorCodes } from '../core/errors.js';
import { loadSettings, type CommandContext } from './context.js';
import { CliError } from './errors.js';

export interface Admin {
  stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]>;
  /** Webhook requests the server refused, by platform and reason (only a running server counts them). */
  webhookRejections?(): Promise<Record<string, Record<string, number>>>;
  readonly deadLetters: DeadLetters;
  deleteTopic(topic: string): Promise<void>;
  deleteGroup(topic: string, group: string): Promise<void>;
}

/** `--server`, else BOTQUEUE_SERVER, else undefined (work on the store). */
export function serverOf(ctx: CommandContext): string | undefined {
  const server = ctx.globals.server ?? ctx.io.env.BOTQUEUE_SERVER;
  return server === undefined || server === '' ? undefined : server;
}

export async function withAdmin<T>(ctx: CommandContext, options: { readOnly: boolean }, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const server = serverOf(ctx);
  if (server !== undefined) {
    const token = ctx.io.env.BOTQUEUE_ADMIN_TOKEN;
    if (token !== undefined && token !== '') ctx.secrets.push(token);
    return fn(new RemoteAdmin(server, token === '' ? undefined : token));
  }
  const settings = await loadSettings(ctx);
  if (options.readOnly) await checkStoreExists(ctx, settings.url);
  const bq = await connect(settings.url, { maxMessageBytes: settings.maxMessageBytes });
  try {
    return await fn(bq);
  } finally {
    await bq.close();
  }
}

async function checkStoreExists(ctx: CommandContext, url: string): Promise<void> {
  const described = await describeUrl(url, ctx.io.env);
  if (described.backend !== 'sqlite' || described.path === undefined || described.path === ':memory:') return;
  const path = resolve(ctx.io.cwd, described.path);
  if (existsSync(path)) return;
  const from = ctx.globals.url !== undefined ? '--url' : ctx.io.env.BOTQUEUE_URL !== undefined && ctx.io.env.BOTQUEUE_URL !== '' ? 'BOTQUEUE_URL' : 'the config file or the default';
  throw new CliError(
    `no botqueue store at ${path} (the URL in force is ${described.url}, from ${from}); this command reads and never creates one (${ErrorCodes.STORE_NOT_FOUND})`,
    'run it in the service directory, pass --url sqlite:/path/to/botqueue.db (or set BOTQUEUE_URL), or ask a running server with --server URL',
  );
}

interface ErrorBody {
  code?: string;
  message?: string;
}

/** The admin API of a running server, over HTTP. */
export class RemoteAdmin implements Admin {
  readonly deadLetters: DeadLetters;
  private rejected: Record<string, Record<string, number>> | undefined;
  private readonly base: string;

  constructor(
    server: string,
    private readonly token: string | undefined,
  ) {
    let url: URL;
    try {
      url = new URL(server);
    } catch {
      throw new CliError(`--server must be a URL such as http://127.0.0.1:3000, got ${JSON.stringify(server)}`, 'pass --server http://host:port or set BOTQUEUE_SERVER');
    }
    this.base = url.href.replace(/\/$/, '');
    this.deadLetters = {
      list: async (opts: DeadLetterListOptions = {}) => {
        const query = new URLSearchParams();
        for (const name of ['topic', 'group', 'key', 'errorContains', 'limit', 'afterDlqId'] as const) {
          const value = opts[name];
          if (value !== undefined) query.set(name, String(value));
        }
        if (opts.dlqIds !== undefined) {
          const letters = await Promise.all(opts.dlqIds.map((id) => this.request<{ deadLetter: DeadLetterJson }>('GET', `/v1/dead-letters/${id}`).catch(() => undefined)));
          return letters.filter((l) => l !== undefined).map((l) => fromJson(l.deadLetter));
        }
        const page = await this.request<{ deadLetters: DeadLetterJson[] }>('GET', `/v1/dead-letters?${query.toString()}`);
        return page.deadLetters.map(fromJson);
      },
      redrive: async (filter: DeadLetterFilter) => (await this.request<{ redriven: number }>('POST', '/v1/dead-letters/redrive', filter)).redriven,
      purge: async (filter: DeadLetterFilter) => (await this.request<{ purged: number }>('POST', '/v1/dead-letters/purge', filter)).purged,
    };
  }

  async stats(topic?: string, options?: StatsOptions): Promise<TopicStats[]> {
    const query = new URLSearchParams();
    if (topic !== undefined) query.set('topic', topic);
    if (options?.idleAfterMs !== undefined) query.set('idleAfterMs', String(options.idleAfterMs));
    const text = query.toString();
    const answer = await this.request<{ topics: TopicStats[]; webhooks?: { rejected?: Record<string, Record<string, number>> } }>('GET', `/v1/stats${text === '' ? '' : `?${text}`}`);
    this.rejected = answer.webhooks?.rejected ?? {};
    return answer.topics;
  }

  /** From the last stats answer (`/v1/stats` carries them), or a stats call of its own. */
  async webhookRejections(): Promise<Record<string, Record<string, number>>> {
    if (this.rejected === undefined) await this.stats();
    return this.rejected ?? {};
  }

  async deleteTopic(topic: string): Promise<void> {
    await this.request('DELETE', `/v1/topics/${encodeURIComponent(topic)}`);
  }

  async deleteGroup(topic: string, group: string): Promise<void> {
    await this.request('DELETE', `/v1/topics/${encodeURIComponent(topic)}/groups/${encodeURIComponent(group)}`);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let answer: Response;
    try {
      answer = await fetch(`${this.base}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      throw new CliError(`could not reach the server at ${this.base}: ${(error as Error).message}`, 'check --server / BOTQUEUE_SERVER and that `botqueue start` runs there', { cause: error });
    }
    const text = await answer.text();
    if (!answer.ok) {
      let parsed: ErrorBody = {};
      try {
        parsed = JSON.parse(text) as ErrorBody;
      } catch {
        // not JSON: shown as it is
      }
      const hint = answer.status === 401 ? 'set BOTQUEUE_ADMIN_TOKEN to the server\'s admin token' : 'see docs/errors.md for the code';
      throw new CliError(`the server answered ${answer.status}: ${parsed.message ?? text.slice(0, 200)}${parsed.code === undefined ? '' : ` (${parsed.code})`}`, hint);
    }
    return (text === '' ? {} : JSON.parse(text)) as T;
  }
}

type DeadLetterJson = Omit<DeadLetter, 'payload'> & { payload: unknown };

/** The API sends payloads as JSON; the commands expect JSON text, as the library gives it. */
function fromJson(letter: DeadLetterJson): DeadLetter {
  return { ...letter, payload: JSON.stringify(letter.payload) };
}
