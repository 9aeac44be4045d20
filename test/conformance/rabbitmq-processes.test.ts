import { afterEach, test } from 'node:test';
import { missingServices, reportMissing } from '../support/services.js';
import { describeProcessConformance } from './processes-suite.js';
import { rabbitmqFactory } from './rabbitmq-harness.js';

const register = (name: string, options: { skip?: string }, fn: () => void): void => void test(name, options, fn);
if (!reportMissing('conformance across processes: rabbitmq', await missingServices(), register)) {
  const factory = rabbitmqFactory('bqp');
  afterEach(() => factory.cleanupUsed());
  describeProcessConformance('rabbitmq', () => factory.url());
}
