/**
 * The in-memory backend (`memory:`): the broker port kept in this process's memory, for tests
 * and experiments. Nothing survives the process.
 *
 * @example
 * const broker = await open('memory:');
 */
import type { Broker } from '../broker.js';
import { MemoryBroker } from './memory-broker.js';
import { parseMemoryUrl } from './url.js';

export { MemoryBroker, type MemoryBrokerOptions } from './memory-broker.js';

/** Opens a fresh, empty memory broker for `memory:` or `memory:name` (the name is only a label). */
export function open(url: string): Promise<Broker> {
  try {
    parseMemoryUrl(url);
    return Promise.resolve(new MemoryBroker());
  } catch (error) {
    return Promise.reject(error instanceof Error ? error : new Error(String(error)));
  }
}
