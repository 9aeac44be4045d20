import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { validateOptions, type OptionSpec } from '../../core/options.js';
import { redactUrl } from '../../core/redact.js';

export interface RabbitmqOptions {
  /**
   * Prefix of every exchange and queue botqueue declares (and of its PostgreSQL schema), so its
   * objects are recognisable in the management UI and several deployments can share a vhost.
   */
  namespace?: string;
  /** The shared store (PostgreSQL URL). Default: the `store` URL parameter, then `BOTQUEUE_STORE_URL`. */
  storeUrl?: string;
  /** Deliveries held unacked per partition queue (basic.qos). Bounds a worker's memory per partition. */
  prefetch?: number;
  /** AMQP heartbeat in seconds: how soon a frozen or partitioned process loses its partitions to a standby. */
  heartbeatSeconds?: number;
  /**
   * `x-delivery-limit` of every partition queue: RabbitMQ dead-letters a message delivered this
   * often. Deliveries also count channel losses and crashes, so it is a safety net sized well
   * above any `maxAttempts`, never the retry counter.
   */
  deliveryLimit?: number;
  /** Publishes in flight (awaiting their confirm) per connection before publish waits. */
  maxUnconfirmed?: number;
  /** The clock (epoch ms), so tests can drive time. Default: the store's (database server's) clock. Not settable from a URL. */
  now?: () => number;
}

export interface ResolvedRabbitmqOptions {
  namespace: string;
  storeUrl: string;
  prefetch: number;
  heartbeatSeconds: number;
  deliveryLimit: number;
  maxUnconfirmed: number;
  now: (() => number) | undefined;
}

const SPEC: OptionSpec = {
  namespace: { type: 'string' },
  storeUrl: { type: 'string' },
  prefetch: { type: 'integer', min: 1, max: 65_535 },
  heartbeatSeconds: { type: 'integer', min: 1, max: 600 },
  deliveryLimit: { type: 'integer', min: 2, max: 1_000_000 },
  maxUnconfirmed: { type: 'integer', min: 1, max: 1_000_000 },
  now: { type: 'function' },
};

const NAMESPACE = /^[a-z][a-z0-9_]{0,39}$/;

/** Parameters botqueue reads from the URL's query; the rest of the URL goes to amqplib as is. */
const URL_PARAMS = new Set(['namespace', 'store', 'prefetch', 'heartbeat', 'deliveryLimit', 'maxUnconfirmed']);

function invalid(message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, message, { details: { option } });
}

/**
 * `amqp://user:pass@host:5672/vhost?namespace=botqueue&store=postgres://...&prefetch=256&heartbeat=5`.
 * Returns the URL amqplib connects to (botqueue's parameters removed) and the resolved options.
 */
export function parseRabbitmqUrl(url: string, options: RabbitmqOptions = {}, env: NodeJS.ProcessEnv = process.env): { amqpUrl: string; options: ResolvedRabbitmqOptions } {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalid(`RabbitMQ URL ${JSON.stringify(redactUrl(url))} is not a valid URL; write e.g. amqp://guest:guest@127.0.0.1:5672`, 'url');
  }
  if (parsed.protocol !== 'amqp:' && parsed.protocol !== 'amqps:') throw invalid(`RabbitMQ URL must start with amqp:// or amqps://`, 'url');
  const fromUrl: Record<string, unknown> = {};
  for (const [name, value] of parsed.searchParams) {
    if (!URL_PARAMS.has(name)) continue;
    if (name === 'store') fromUrl.storeUrl = value;
    else if (name === 'heartbeat') fromUrl.heartbeatSeconds = Number(value);
    else if (name === 'namespace') fromUrl.namespace = value;
    else fromUrl[name] = /^\d+$/.test(value) ? Number(value) : value;
  }
  for (const name of URL_PARAMS) parsed.searchParams.delete(name);
  const where = `RabbitMQ URL ${JSON.stringify(redactUrl(url))}`;
  const merged = validateOptions<RabbitmqOptions>(where, SPEC, { ...fromUrl, ...options }, {});
  const namespace = merged.namespace ?? 'botqueue';
  if (!NAMESPACE.test(namespace)) {
    throw invalid(`${where}: namespace must be 1-40 characters of a-z, 0-9 or "_", starting with a letter; got ${JSON.stringify(namespace)}`, 'namespace');
  }
  const storeUrl = merged.storeUrl ?? env.BOTQUEUE_STORE_URL;
  if (storeUrl === undefined || storeUrl.length === 0) {
    throw new BotqueueError(
      ErrorCodes.STORE_REQUIRED,
      'the RabbitMQ backend needs a shared store for deduplication, ctx.once, leases and dead letters: ' +
        'set BOTQUEUE_STORE_URL=postgres://user@host:5432/db (or ?store=... in the URL). ' +
        'A local file cannot serve: workers on other hosts would each deduplicate against their own copy.',
      { details: { option: 'storeUrl' } },
    );
  }
  if (!/^postgres(ql)?:\/\//.test(storeUrl)) throw invalid(`${where}: the store must be a postgres:// URL, got ${JSON.stringify(redactUrl(storeUrl))}`, 'storeUrl');
  return {
    amqpUrl: parsed.toString(),
    options: {
      namespace,
      storeUrl,
      prefetch: merged.prefetch ?? 256,
      heartbeatSeconds: merged.heartbeatSeconds ?? 5,
      deliveryLimit: merged.deliveryLimit ?? 50,
      maxUnconfirmed: merged.maxUnconfirmed ?? 4096,
      now: merged.now,
    },
  };
}
