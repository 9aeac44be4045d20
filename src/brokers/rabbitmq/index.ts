/**
 * The RabbitMQ backend (AMQP 0-9-1), for deployments past one machine: quorum queues per
 * topic, group and partition, single active consumer, publisher confirms, manual acks, and a
 * shared PostgreSQL store for what every worker must agree on.
 *
 * @example
 * const broker = await open('amqp://guest:guest@127.0.0.1:5672?store=postgres://postgres@127.0.0.1:5432/app');
 */
import { BrokerEventEmitter } from '../events.js';
import { AmqpConnection } from './connection.js';
import { Names } from './names.js';
import { parseRabbitmqUrl, type RabbitmqOptions } from './options.js';
import { RabbitmqBroker } from './rabbitmq-broker.js';
import { openPostgresStore } from '../../stores/postgres/index.js';

export type { RabbitmqOptions } from './options.js';
export { RabbitmqBroker } from './rabbitmq-broker.js';

/** Opens the backend the URL names; the store comes from `?store=`, `options.storeUrl` or `BOTQUEUE_STORE_URL`. */
export async function open(url: string, options: RabbitmqOptions = {}): Promise<RabbitmqBroker> {
  const { amqpUrl, options: resolved } = parseRabbitmqUrl(url, options);
  const names = new Names(resolved.namespace);
  const events = new BrokerEventEmitter();
  const store = await openPostgresStore(resolved.storeUrl, {
    schema: names.schema,
    now: resolved.now,
    onConnectionError: (error) => events.report('connection-lost', { connection: 'store', error }),
  });
  // Two connections, as RabbitMQ advises: flow control throttles a connection that publishes
  // too fast, and that must not hold back the acks and deliveries of the consumers.
  const connections: AmqpConnection[] = [];
  try {
    connections.push(await AmqpConnection.open(amqpUrl, resolved.heartbeatSeconds, 'botqueue-consume', events));
    connections.push(await AmqpConnection.open(amqpUrl, resolved.heartbeatSeconds, 'botqueue-publish', events));
  } catch (error) {
    await Promise.all(connections.map((c) => c.close()));
    await store.close();
    throw error;
  }
  return new RabbitmqBroker({ consume: connections[0]!, publish: connections[1]! }, store, names, resolved, events);
}
