import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BotqueueError, describeError, ErrorCodes, isBotqueueError, PermanentError } from '../../src/core/errors.js';

describe('ErrorCodes', () => {
  test('every code is a distinct BOTQUEUE_* string', () => {
    const values = Object.values(ErrorCodes);
    assert.ok(values.length >= 12);
    for (const v of values) assert.match(v, /^BOTQUEUE_[A-Z_]+$/);
    assert.equal(new Set(values).size, values.length, 'a code is reused');
  });
});

describe('BotqueueError', () => {
  test('carries code, message, name, and is an Error', () => {
    const e = new BotqueueError(ErrorCodes.TOPIC_MISMATCH, 'topic "t" has 4 partitions, not 8');
    assert.ok(e instanceof Error);
    assert.ok(e instanceof BotqueueError);
    assert.equal(e.code, 'BOTQUEUE_TOPIC_MISMATCH');
    assert.equal(e.message, 'topic "t" has 4 partitions, not 8');
    assert.equal(e.name, 'BotqueueError');
    assert.ok(e.stack?.includes('topic "t" has 4 partitions'));
  });

  test('retriable defaults to false and can be set', () => {
    assert.equal(new BotqueueError(ErrorCodes.CLOSED, 'closed').retriable, false);
    assert.equal(new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'busy', { retriable: true }).retriable, true);
    assert.equal(new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'busy', { retriable: false }).retriable, false);
  });

  test('keeps the cause', () => {
    const cause = new Error('SQLITE_BUSY');
    const e = new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'store failed', { cause, retriable: true });
    assert.equal(e.cause, cause);
    const withString = new BotqueueError(ErrorCodes.BROKER_UNAVAILABLE, 'store failed', { cause: 'text cause' });
    assert.equal(withString.cause, 'text cause');
  });

  test('without a cause there is no own cause property', () => {
    const e = new BotqueueError(ErrorCodes.CLOSED, 'closed');
    assert.equal(e.cause, undefined);
    assert.equal(Object.hasOwn(e, 'cause'), false);
  });

  test('a falsy cause other than undefined is kept', () => {
    const e = new BotqueueError(ErrorCodes.CLOSED, 'closed', { cause: 0 });
    assert.equal(Object.hasOwn(e, 'cause'), true);
    assert.equal(e.cause, 0);
  });

  test('details are kept, undefined when absent', () => {
    assert.deepEqual(new BotqueueError(ErrorCodes.INVALID_OPTION, 'x', { details: { option: 'a' } }).details, { option: 'a' });
    assert.equal(new BotqueueError(ErrorCodes.INVALID_OPTION, 'x').details, undefined);
  });

  test('name follows the subclass', () => {
    class LeaseLost extends BotqueueError {}
    const e = new LeaseLost(ErrorCodes.LEASE_LOST, 'lost');
    assert.equal(e.name, 'LeaseLost');
    assert.ok(e instanceof BotqueueError);
  });
});

describe('PermanentError', () => {
  test('is a BotqueueError with code BOTQUEUE_PERMANENT_FAILURE, not retriable', () => {
    const e = new PermanentError('payload has no chat id');
    assert.ok(e instanceof PermanentError);
    assert.ok(e instanceof BotqueueError);
    assert.ok(e instanceof Error);
    assert.equal(e.code, ErrorCodes.PERMANENT_FAILURE);
    assert.equal(e.code, 'BOTQUEUE_PERMANENT_FAILURE');
    assert.equal(e.retriable, false);
    assert.equal(e.name, 'PermanentError');
    assert.equal(e.message, 'payload has no chat id');
    assert.equal(e.cause, undefined);
  });

  test('keeps a cause', () => {
    const cause = new TypeError('bad json');
    assert.equal(new PermanentError('bad payload', { cause }).cause, cause);
  });

  test('isBotqueueError recognises it by class and by code', () => {
    const e = new PermanentError('stop');
    assert.equal(isBotqueueError(e), true);
    assert.equal(isBotqueueError(e, ErrorCodes.PERMANENT_FAILURE), true);
    assert.equal(isBotqueueError(e, ErrorCodes.CLOSED), false);
  });
});

describe('isBotqueueError', () => {
  test('rejects plain errors and look-alikes', () => {
    assert.equal(isBotqueueError(new Error('x')), false);
    assert.equal(isBotqueueError({ code: 'BOTQUEUE_CLOSED', message: 'x' }), false);
    assert.equal(isBotqueueError('BOTQUEUE_CLOSED'), false);
    assert.equal(isBotqueueError(undefined), false);
    assert.equal(isBotqueueError(null), false);
  });

  test('filters by code', () => {
    const e = new BotqueueError(ErrorCodes.CLOSED, 'closed');
    assert.equal(isBotqueueError(e, ErrorCodes.CLOSED), true);
    assert.equal(isBotqueueError(e, ErrorCodes.LEASE_LOST), false);
  });
});

describe('describeError', () => {
  test('an Error gives message, name and stack', () => {
    const e = new TypeError('boom');
    const info = describeError(e);
    assert.equal(info.message, 'boom');
    assert.equal(info.name, 'TypeError');
    assert.equal(info.stack, e.stack);
    assert.equal(info.code, undefined);
    assert.equal(Object.hasOwn(info, 'code'), false);
  });

  test('a BotqueueError gives its code', () => {
    const info = describeError(new PermanentError('nope'));
    assert.equal(info.code, 'BOTQUEUE_PERMANENT_FAILURE');
    assert.equal(info.name, 'PermanentError');
    assert.equal(info.message, 'nope');
  });

  test('a string code of a Node error is kept, a numeric one is not', () => {
    const sys = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
    assert.equal(describeError(sys).code, 'ECONNREFUSED');
    const numeric = Object.assign(new Error('http'), { code: 503 });
    assert.equal(describeError(numeric).code, undefined);
  });

  test('the stack is cut to 8192 characters', () => {
    const e = new Error('deep');
    e.stack = 'x'.repeat(20_000);
    assert.equal(describeError(e).stack?.length, 8192);
  });

  test('an Error without stack has no stack field', () => {
    const e = new Error('no stack');
    delete e.stack;
    const info = describeError(e);
    assert.equal(Object.hasOwn(info, 'stack'), false);
    assert.equal(info.message, 'no stack');
  });

  test('a string is its own message', () => {
    assert.deepEqual(describeError('rate limited'), { message: 'rate limited' });
    assert.deepEqual(describeError(''), { message: '' });
  });

  test('an object is described as JSON', () => {
    assert.deepEqual(describeError({ status: 429, retryAfter: 3 }), { message: '{"status":429,"retryAfter":3}' });
    assert.deepEqual(describeError([1, 'a']), { message: '[1,"a"]' });
    assert.deepEqual(describeError(42), { message: '42' });
    assert.deepEqual(describeError(null), { message: 'null' });
  });

  test('a circular object does not throw', () => {
    const circular: Record<string, unknown> = { name: 'loop' };
    circular.self = circular;
    let info: ReturnType<typeof describeError> | undefined;
    assert.doesNotThrow(() => {
      info = describeError(circular);
    });
    assert.equal(info?.message, '[object Object]');
  });

  test('values JSON cannot express do not throw and give a readable message', () => {
    assert.deepEqual(describeError(undefined), { message: 'undefined' });
    assert.deepEqual(describeError(10n), { message: '10' });
    assert.deepEqual(describeError(Symbol('s')), { message: 'Symbol(s)' });
    assert.equal(typeof describeError(() => 1).message, 'string');
  });

  test('the result survives a JSON round trip (it can be stored)', () => {
    for (const value of [new Error('x'), new PermanentError('p'), 'str', { a: 1 }, undefined, 5n]) {
      const info = describeError(value);
      assert.deepEqual(JSON.parse(JSON.stringify(info)), info);
    }
  });
});
