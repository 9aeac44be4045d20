import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { validateOptions, type OptionSpec } from '../../core/options.js';
import { redactUrl } from '../../core/redact.js';

export interface KafkaOptions {
  /** Prefix of every Kafka topic and consumer group botqueue uses (and of its PostgreSQL schema). */
  namespace?: string;
  /** The shared store (PostgreSQL URL). Default: the `store` URL parameter, then `BOTQUEUE_STORE_URL`. */
  storeUrl?: string;
  /** Messages read ahead and held per owned partition. Bounds a worker's memory per partition. */
  prefetch?: number;
  /** Kafka client id shown in the brokers' logs and quotas. */
  clientId?: string;
  /**
   * Creates a Kafka topic when the cluster refuses the Admin API (librdkafka's mock cluster
   * does). Default: CreateTopics through the controller. Not settable from a URL.
   */
  createTopic?: (name: string, partitions: number) => Promise<void>;
  /** The clock (epoch ms), so tests can drive time. Not settable from a URL. */
  now?: () => number;
}

export interface ResolvedKafkaOptions {
  brokers: string[];
  namespace: string;
  storeUrl: string;
  prefetch: number;
  clientId: string;
  createTopic: ((name: string, partitions: number) => Promise<void>) | undefined;
  now: (() => number) | undefined;
}

const SPEC: OptionSpec = {
  namespace: { type: 'string' },
  storeUrl: { type: 'string' },
  prefetch: { type: 'integer', min: 1, max: 100_000 },
  clientId: { type: 'string' },
  createTopic: { type: 'function' },
  now: { type: 'function' },
};

const NAMESPACE = /^[a-z][a-z0-9_]{0,39}$/;
const HOST_PORT = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+):(\d{1,5})$/i;
const URL_PARAMS: Record<string, keyof KafkaOptions> = { namespace: 'namespace', store: 'storeUrl', prefetch: 'prefetch', clientId: 'clientId' };

function invalid(message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, message, { details: { option } });
}

/**
 * `kafka://host:9092,host2:9092?namespace=botqueue&store=postgres://...&prefetch=512`.
 * Several bootstrap brokers are separated by commas; botqueue's parameters are the only ones
 * accepted (a typo is refused, not ignored).
 */
export function parseKafkaUrl(url: string, options: KafkaOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedKafkaOptions {
  const where = `Kafka URL ${JSON.stringify(redactUrl(url))}`;
  const match = /^kafka:\/\/([^/?#]*)\/?(?:\?([^#]*))?$/i.exec(url);
  if (match === null) throw invalid(`${where} is not valid; write e.g. kafka://127.0.0.1:9092,127.0.0.1:9093?store=postgres://...`, 'url');
  const brokers = match[1]!.split(',').filter((b) => b !== '');
  if (brokers.length === 0) throw invalid(`${where} names no broker; write kafka://host:port[,host:port...]`, 'url');
  for (const broker of brokers) {
    const hp = HOST_PORT.exec(broker);
    if (hp === null || Number(hp[2]) < 1 || Number(hp[2]) > 65_535) throw invalid(`${where}: "${broker}" is not host:port`, 'url');
  }
  const fromUrl: Record<string, unknown> = {};
  for (const [name, value] of new URLSearchParams(match[2] ?? '')) {
    const option = URL_PARAMS[name];
    if (option === undefined) throw invalid(`${where}: unknown parameter "${name}"; known: ${Object.keys(URL_PARAMS).join(', ')}`, name);
    fromUrl[option] = option === 'prefetch' && /^\d+$/.test(value) ? Number(value) : value;
  }
  const merged = validateOptions<KafkaOptions>(where, SPEC, { ...fromUrl, ...options }, {});
  const namespace = merged.namespace ?? 'botqueue';
  if (!NAMESPACE.test(namespace)) {
    throw invalid(`${where}: namespace must be 1-40 characters of a-z, 0-9 or "_", starting with a letter; got ${JSON.stringify(namespace)}`, 'namespace');
  }
  const storeUrl = merged.storeUrl ?? env.BOTQUEUE_STORE_URL;
  if (storeUrl === undefined || storeUrl.length === 0) {
    throw new BotqueueError(
      ErrorCodes.STORE_REQUIRED,
      'the Kafka backend needs a shared store for deduplication, ctx.once, leases, retries and dead letters: ' +
        'set BOTQUEUE_STORE_URL=postgres://user@host:5432/db (or ?store=... in the URL). ' +
        'A local file cannot serve: workers on other hosts would each deduplicate against their own copy.',
      { details: { option: 'storeUrl' } },
    );
  }
  if (!/^postgres(ql)?:\/\//.test(storeUrl)) throw invalid(`${where}: the store must be a postgres:// URL, got ${JSON.stringify(redactUrl(storeUrl))}`, 'storeUrl');
  return {
    brokers,
    namespace,
    storeUrl,
    prefetch: merged.prefetch ?? 512,
    clientId: merged.clientId ?? 'botqueue',
    createTopic: merged.createTopic,
    now: merged.now,
  };
}
