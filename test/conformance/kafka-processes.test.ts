import { test } from 'node:test';
import { missingServices, reportMissing } from '../support/services.js';
import { buildMockCluster } from '../support/kafka-cluster.js';
import { describeProcessConformance } from './processes-suite.js';
import { kafkaFactory } from './kafka-harness.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
const missing = [await missingServices(), buildMockCluster()].filter((m) => m !== undefined).join(' and ') || undefined;
if (!reportMissing('conformance across processes: kafka', missing, register)) {
  // One mock cluster in this process; the children reach it over loopback (topics are created here first).
  const factory = await kafkaFactory('bqkp');
  describeProcessConformance('kafka', () => factory.url());
  const { after } = await import('node:test');
  after(() => factory.cleanup());
}
