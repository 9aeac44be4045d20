import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BotqueueError, ErrorCodes } from '../../src/core/errors.js';
import { toHttpAnswer } from '../../src/service/http-errors.js';

test('a missing topic or group is a 404, a topic with other settings a 409', () => {
  const status = (code: (typeof ErrorCodes)[keyof typeof ErrorCodes]): [number, string] => {
    const answer = toHttpAnswer(new BotqueueError(code, 'x'));
    return [answer.statusCode, answer.body.code];
  };
  assert.deepEqual(status(ErrorCodes.TOPIC_NOT_FOUND), [404, 'BOTQUEUE_TOPIC_NOT_FOUND']);
  assert.deepEqual(status(ErrorCodes.GROUP_NOT_FOUND), [404, 'BOTQUEUE_GROUP_NOT_FOUND']);
  assert.deepEqual(status(ErrorCodes.TOPIC_MISMATCH), [409, 'BOTQUEUE_TOPIC_MISMATCH']);
});

test('an error message answered over HTTP carries no password', () => {
  const error = new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'PostgreSQL store could not open the store at postgres://bot:hunter2pw@db:5432/app: refused');
  assert.doesNotMatch(toHttpAnswer(error).body.message, /hunter2pw/);
});
