import { afterEach, test } from 'node:test';
import { missingServices, reportMissing } from '../support/services.js';
import { rabbitmqFactory } from './rabbitmq-harness.js';
import { describeConformance } from './suite.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
if (!reportMissing('conformance: rabbitmq', await missingServices(), register)) {
  const factory = rabbitmqFactory('bqc');
  // Root-level hook: runs after every test of the suite, so no test's queues outlive it.
  afterEach(() => factory.cleanupUsed());
  describeConformance(factory);
}
