/**
 * The service's log lines an operator relies on: a dead letter (with its error, never the
 * payload), a lost broker connection, and the level from BOTQUEUE_LOG_LEVEL. ECS field names.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { PermanentError, connect } from '../../src/index.js';
import { logClientEvents } from '../../src/service/client-log.js';
import { resolveConfig } from '../../src/service/config.js';
import { startHandlers } from '../../src/service/handlers.js';
import { createLogger } from '../../src/service/logger.js';
import { waitFor } from './harness.js';

const open: Array<{ close(): Promise<unknown> }> = [];
after(async () => {
  for (const thing of open.reverse()) await thing.close();
});

function memoryLogger(level = 'info') {
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level, role: 'gateway', destination: { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) } });
  return { lines, logger };
}

test('a dead letter is one warn line with the error and no payload; a lost connection is a line with its error', async () => {
  const bq = await connect('memory:');
  open.push(bq);
  const { lines, logger } = memoryLogger();
  logClientEvents(bq, logger);
  const config = resolveConfig(
    { topics: { jobs: { partitions: 2 } }, handlers: [{ topic: 'jobs', module: import.meta.filename, export: 'unused', options: { group: 'g' } }] },
    { cwd: process.cwd(), env: {}, path: undefined, label: 'config' },
  );
  const running = await startHandlers(bq, config, [() => Promise.reject(new PermanentError('card declined'))], logger);
  open.push({ close: () => running.close() });
  await running.ready;
  await bq.publish('jobs', { key: 'chat:777', id: 'm-1', payload: { secretText: 'do not log me' } });
  await waitFor('the dead-letter line', () => lines.some((l) => l.message === 'message dead-lettered'));
  const line = lines.find((l) => l.message === 'message dead-lettered')!;
  assert.equal(line['log.level'], 'warn');
  assert.equal(line['ecs.version'], '8.11.0');
  assert.equal((line.error as { message: string }).message, 'card declined');
  assert.equal(line['botqueue.topic'], 'jobs');
  assert.equal(line['botqueue.message_id'], 'm-1');
  assert.doesNotMatch(JSON.stringify(lines), /do not log me|chat:777/, 'no payload or key at info');

  bq.broker.events.report('connection-lost', { connection: 'rabbitmq consume', error: new Error('socket closed') });
  const lost = lines.find((l) => l.message === 'connection lost; waiting for it to come back')!;
  assert.equal(lost['log.level'], 'warn');
  assert.equal((lost.error as { message: string }).message, 'socket closed');
});

test('BOTQUEUE_LOG_LEVEL sets the level', () => {
  const config = resolveConfig({}, { cwd: process.cwd(), env: { BOTQUEUE_LOG_LEVEL: 'debug' }, path: undefined, label: 'config' });
  assert.equal(config.logLevel, 'debug');
  const { lines, logger } = memoryLogger(config.logLevel);
  logger.debug('shown at debug');
  assert.equal(lines.length, 1);
  const quiet = memoryLogger('warn');
  quiet.logger.info('hidden');
  assert.equal(quiet.lines.length, 0);
});
