import { test } from 'node:test';
import { missingServices, reportMissing } from '../support/services.js';
import { buildMockCluster } from '../support/kafka-cluster.js';
import { kafkaFactory } from './kafka-harness.js';
import { describeConformance } from './suite.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
const missing = [await missingServices(), buildMockCluster()].filter((m) => m !== undefined).join(' and ') || undefined;
if (!reportMissing('conformance: kafka', missing, register)) {
  describeConformance(await kafkaFactory('bqk'));
}
