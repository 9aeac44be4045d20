import { MemoryBroker } from '../../src/brokers/memory/index.js';
import { describeConformance } from './suite.js';

describeConformance({
  name: 'memory',
  url: () => 'memory:',
  brokerWithClock: (now) => Promise.resolve(new MemoryBroker({ now })),
  cleanup: () => Promise.resolve(),
});
