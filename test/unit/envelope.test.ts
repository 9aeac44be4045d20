import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { checkName, DEFAULT_MAX_MESSAGE_BYTES, prepareMessage, type PreparedMessage } from '../../src/core/envelope.js';
import { BotqueueError, ErrorCodes, type ErrorCode } from '../../src/core/errors.js';
import { partitionForKey } from '../../src/core/partitioner.js';

const NOW = 1_700_000_000_000;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const prep = (input: unknown, opts: { partitions?: number; max?: number; index?: number } = {}): PreparedMessage =>
  prepareMessage(input, opts.partitions ?? 8, opts.max ?? DEFAULT_MAX_MESSAGE_BYTES, NOW, opts.index);

/** Asserts that `fn` throws a BotqueueError with `code`, and returns it. */
function throwsCode(fn: () => unknown, code: ErrorCode, ...fragments: (string | RegExp)[]): BotqueueError {
  let caught: unknown;
  assert.throws(fn, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof BotqueueError, `expected a BotqueueError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(caught.message.includes(f), `message lacks ${JSON.stringify(f)}: ${caught.message}`);
    else assert.match(caught.message, f);
  }
  return caught;
}

const invalid = (fn: () => unknown, field: string, ...fragments: (string | RegExp)[]): BotqueueError => {
  const e = throwsCode(fn, ErrorCodes.INVALID_MESSAGE, ...fragments);
  assert.equal(e.details?.field, field);
  return e;
};

describe('prepareMessage: the message object', () => {
  test('a non-object message is rejected', () => {
    for (const input of [undefined, null, 'hello', 42, [{ payload: 1 }], true]) {
      invalid(() => prep(input), 'message', 'a message must be an object');
    }
  });

  test('an unknown field is rejected and named', () => {
    invalid(() => prep({ payload: 1, delay: 5 }), 'delay', 'unknown message field "delay"');
    invalid(() => prep({ payload: 1, Key: 'chat:1' }), 'Key', '"Key"');
    invalid(() => prep({ payload: 1, partition: 3 }), 'partition', '"partition"');
  });

  test('an unknown field set to undefined is still rejected', () => {
    invalid(() => prep({ payload: 1, extra: undefined }), 'extra', '"extra"');
  });

  test('a minimal message is accepted', () => {
    const m = prep({ payload: null });
    assert.equal(m.payload, 'null');
    assert.equal(m.key, null);
    assert.deepEqual(m.headers, {});
    assert.equal(m.notBefore, 0);
  });
});

describe('prepareMessage: key and id', () => {
  for (const field of ['key', 'id'] as const) {
    test(`rejects an empty ${field}`, () => {
      invalid(() => prep({ [field]: '', payload: 1 }), field, `message ${field} must be a non-empty string`, 'empty string');
    });

    test(`rejects a non-string ${field}`, () => {
      for (const value of [42, null, {}, ['a'], true, Symbol('k')]) {
        invalid(() => prep({ [field]: value, payload: 1 }), field, `message ${field} must be a non-empty string`);
      }
      invalid(() => prep({ [field]: null, payload: 1 }), field, 'got null');
      invalid(() => prep({ [field]: 7, payload: 1 }), field, 'got number');
    });

    test(`rejects a ${field} over 512 characters, accepts 512`, () => {
      invalid(() => prep({ [field]: 'k'.repeat(513), payload: 1 }), field, 'at most 512 characters', 'got 513');
      assert.equal(prep({ [field]: 'k'.repeat(512), payload: 1 })[field], 'k'.repeat(512));
    });
  }

  test('an absent id is generated (a UUID) and not deduplicated', () => {
    const a = prep({ payload: 1 });
    const b = prep({ payload: 1 });
    assert.match(a.id, UUID);
    assert.notEqual(a.id, b.id);
    assert.equal(a.dedup, false);
  });

  test('an id given as undefined counts as absent', () => {
    const m = prep({ id: undefined, payload: 1 });
    assert.match(m.id, UUID);
    assert.equal(m.dedup, false);
  });

  test('a given id is kept and deduplicated', () => {
    const m = prep({ id: 'update:123456', payload: 1 });
    assert.equal(m.id, 'update:123456');
    assert.equal(m.dedup, true);
  });

  test('a given id that looks like a UUID is still deduplicated', () => {
    const m = prep({ id: '0b1c2d3e-4f50-4a6b-8c7d-8e9fa0b1c2d3', payload: 1 });
    assert.equal(m.dedup, true);
  });
});

describe('prepareMessage: partition', () => {
  test('a keyed message goes to partitionForKey(key, partitions)', () => {
    for (const key of ['chat:42', 'foobar', 'tg:-100123', 'emoji:🤖', 'ü']) {
      for (const n of [1, 2, 8, 50, 64]) {
        assert.equal(prep({ key, payload: 1 }, { partitions: n }).partition, partitionForKey(key, n), `key ${key}, n ${n}`);
      }
    }
    assert.equal(prep({ key: 'foobar', payload: 1 }, { partitions: 50 }).partition, 16);
  });

  test('property: keyed partition equals partitionForKey and stays in range', () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1, maxLength: 64 }), fc.integer({ min: 1, max: 256 }), (key, n) => {
        const m = prep({ key, payload: 0 }, { partitions: n });
        assert.equal(m.key, key);
        assert.equal(m.partition, partitionForKey(key, n));
      }),
    );
  });

  test('a message without key gets some partition in [0, n)', () => {
    const seen = new Set<number>();
    for (let i = 0; i < 400; i++) {
      const p = prep({ payload: i }, { partitions: 4 }).partition;
      assert.ok(Number.isInteger(p) && p >= 0 && p < 4, `partition ${p}`);
      seen.add(p);
    }
    assert.equal(seen.size, 4, 'keyless messages should spread over the partitions');
    assert.equal(prep({ payload: 1 }, { partitions: 1 }).partition, 0);
  });
});

describe('prepareMessage: payload', () => {
  test('payload undefined (or missing) is rejected', () => {
    invalid(() => prep({ key: 'k', payload: undefined }), 'payload', 'payload is missing');
    invalid(() => prep({ key: 'k' }), 'payload', 'payload is missing');
  });

  test('a BigInt payload is rejected with the cause kept', () => {
    const e = invalid(() => prep({ payload: { amount: 10n } }), 'payload', 'not JSON-serialisable');
    assert.ok(e.cause instanceof TypeError);
    invalid(() => prep({ payload: 10n }), 'payload', 'not JSON-serialisable');
  });

  test('a circular payload is rejected', () => {
    const loop: Record<string, unknown> = { chat: 1 };
    loop.self = loop;
    const e = invalid(() => prep({ payload: loop }), 'payload', 'not JSON-serialisable');
    assert.ok(e.cause instanceof TypeError);
  });

  test('a payload JSON turns into nothing (function, symbol) is rejected', () => {
    invalid(() => prep({ payload: () => 1 }), 'payload', 'not JSON-serialisable', 'a function');
    invalid(() => prep({ payload: Symbol('s') }), 'payload', 'not JSON-serialisable', 'a symbol');
    invalid(() => prep({ payload: { toJSON: () => undefined } }), 'payload', 'not JSON-serialisable');
  });

  test('a toJSON that throws is reported as not serialisable', () => {
    const e = invalid(() => prep({ payload: { toJSON: () => { throw new Error('nope'); } } }), 'payload', 'nope');
    assert.ok(e.cause instanceof Error);
  });

  test('JSON values are serialised once, as JSON text', () => {
    assert.equal(prep({ payload: { text: 'hi', n: [1, 2] } }).payload, '{"text":"hi","n":[1,2]}');
    assert.equal(prep({ payload: 'plain' }).payload, '"plain"');
    assert.equal(prep({ payload: 0 }).payload, '0');
    assert.equal(prep({ payload: false }).payload, 'false');
    assert.equal(prep({ payload: null }).payload, 'null');
  });

  test('property: the stored payload parses back to the input', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const m = prep({ payload: value });
        assert.deepEqual(JSON.parse(m.payload), JSON.parse(JSON.stringify(value)));
      }),
      { numRuns: 200 },
    );
  });
});

describe('prepareMessage: size limit', () => {
  test('the default limit is 256 KiB', () => {
    assert.equal(DEFAULT_MAX_MESSAGE_BYTES, 262_144);
  });

  test('a payload over the default limit is BOTQUEUE_MESSAGE_TOO_LARGE', () => {
    const big = 'x'.repeat(DEFAULT_MAX_MESSAGE_BYTES); // + 2 quote characters
    const e = throwsCode(() => prep({ payload: big }), ErrorCodes.MESSAGE_TOO_LARGE, `${DEFAULT_MAX_MESSAGE_BYTES + 2} bytes`, 'maxMessageBytes');
    assert.deepEqual(e.details, { size: DEFAULT_MAX_MESSAGE_BYTES + 2, limit: DEFAULT_MAX_MESSAGE_BYTES });
  });

  test('exactly at the limit passes, one byte over fails', () => {
    const payload = 'x'.repeat(98); // "xx...x" is 100 bytes of JSON
    assert.equal(prep({ payload }, { max: 100 }).payload.length, 100);
    throwsCode(() => prep({ payload: payload + 'x' }, { max: 100 }), ErrorCodes.MESSAGE_TOO_LARGE, '101 bytes', 'limit of 100 bytes');
  });

  test('a lower configured limit is respected', () => {
    const e = throwsCode(() => prep({ payload: { text: 'a'.repeat(64) } }, { max: 32 }), ErrorCodes.MESSAGE_TOO_LARGE, 'limit of 32 bytes');
    assert.equal(e.details?.limit, 32);
    assert.doesNotThrow(() => prep({ payload: { text: 'a'.repeat(64) } }));
  });

  test('size counts UTF-8 bytes, not characters', () => {
    const payload = 'é'.repeat(10); // 20 bytes + 2 quotes = 22
    assert.doesNotThrow(() => prep({ payload }, { max: 22 }));
    throwsCode(() => prep({ payload }, { max: 21 }), ErrorCodes.MESSAGE_TOO_LARGE, '22 bytes');
  });

  test('headers count towards the size', () => {
    const payload = 'x'.repeat(8); // 10 bytes
    assert.doesNotThrow(() => prep({ payload }, { max: 10 }));
    throwsCode(() => prep({ payload, headers: { a: 'b' } }, { max: 10 }), ErrorCodes.MESSAGE_TOO_LARGE, '12 bytes');
    assert.doesNotThrow(() => prep({ payload, headers: { a: 'b' } }, { max: 12 }));
  });
});

describe('prepareMessage: headers', () => {
  test('string headers are kept (as a copy)', () => {
    const headers = { traceId: 'abc', platform: 'telegram' };
    const m = prep({ payload: 1, headers });
    assert.deepEqual(m.headers, headers);
    assert.notEqual(m.headers, headers);
  });

  test('headers that are not an object are rejected', () => {
    for (const headers of [null, 'trace=1', 5, ['a'], true]) {
      invalid(() => prep({ payload: 1, headers }), 'headers', 'headers must be an object of strings');
    }
  });

  test('a non-string header value is rejected and named', () => {
    invalid(() => prep({ payload: 1, headers: { attempt: 3 } }), 'headers', 'header "attempt" must be a string', 'got number');
    invalid(() => prep({ payload: 1, headers: { a: 'ok', b: null } }), 'headers', 'header "b"');
    invalid(() => prep({ payload: 1, headers: { a: undefined } }), 'headers', 'header "a"');
  });
});

describe('prepareMessage: delayMs', () => {
  test('a positive delay sets notBefore = now + ceil(delayMs)', () => {
    assert.equal(prep({ payload: 1, delayMs: 5_000 }).notBefore, NOW + 5_000);
    assert.equal(prep({ payload: 1, delayMs: 0.2 }).notBefore, NOW + 1);
    assert.equal(prep({ payload: 1, delayMs: 1.5 }).notBefore, NOW + 2);
  });

  test('delay 0 or absent means no notBefore', () => {
    assert.equal(prep({ payload: 1, delayMs: 0 }).notBefore, 0);
    assert.equal(prep({ payload: 1 }).notBefore, 0);
    assert.equal(prep({ payload: 1, delayMs: undefined }).notBefore, 0);
  });

  test('negative, non-finite and non-number delays are rejected', () => {
    for (const delayMs of [-1, -0.5, Number.NaN, Infinity, -Infinity, '100', null, 10n]) {
      invalid(() => prep({ payload: 1, delayMs }), 'delayMs', 'delayMs must be a finite number >= 0');
    }
  });
});

describe('prepareMessage: batches (index)', () => {
  test('the index is named in the message and details of an invalid-message error', () => {
    const e = invalid(() => prep({ key: '', payload: 1 }, { index: 3 }), 'key', /^message #3: /);
    assert.equal(e.details?.index, 3);
  });

  test('the index is named for a too-large message too, keeping size and limit', () => {
    const e = throwsCode(() => prep({ payload: 'x'.repeat(100) }, { max: 10, index: 7 }), ErrorCodes.MESSAGE_TOO_LARGE, /^message #7: /);
    assert.deepEqual(e.details, { size: 102, limit: 10, index: 7 });
  });

  test('index 0 is named too', () => {
    const e = invalid(() => prep('nope', { index: 0 }), 'message', /^message #0: /);
    assert.equal(e.details?.index, 0);
  });

  test('the cause survives the re-wrapping', () => {
    const e = invalid(() => prep({ payload: 1n }, { index: 2 }), 'payload', 'message #2');
    assert.ok(e.cause instanceof TypeError);
  });

  test('without an index no index is added', () => {
    const e = invalid(() => prep({ key: '', payload: 1 }), 'key');
    assert.doesNotMatch(e.message, /#/);
    assert.equal(e.details?.index, undefined);
  });

  test('a valid message with an index is prepared as without one', () => {
    const m = prep({ key: 'chat:1', id: 'u1', payload: { a: 1 } }, { index: 5 });
    assert.equal(m.id, 'u1');
    assert.equal(m.payload, '{"a":1}');
  });
});

describe('checkName', () => {
  test('accepts plain names', () => {
    for (const name of ['updates', 'a', '0', 'chat.updates_v2-eu', 'A'.repeat(200), 'x-'.repeat(100)]) {
      assert.equal(checkName('topic', name), name);
      assert.equal(checkName('group', name), name);
    }
  });

  test('rejects everything else, naming the kind', () => {
    const bad: unknown[] = ['', '-updates', '.hidden', '_x', 'a b', 'a/b', 'a:b', 'ä', 'A'.repeat(201), 'updates\n', '\nupdates', 42, null, undefined, ['a']];
    for (const name of bad) {
      for (const kind of ['topic', 'group'] as const) {
        let caught: unknown;
        assert.throws(() => checkName(kind, name), (error: unknown) => {
          caught = error;
          return true;
        }, `${kind} ${JSON.stringify(name)} was accepted`);
        assert.ok(caught instanceof BotqueueError);
        assert.equal(caught.code, ErrorCodes.INVALID_OPTION);
        assert.ok(caught.message.startsWith(`${kind} name must be`), caught.message);
        assert.equal(caught.details?.option, kind);
      }
    }
  });

  test('property: accepts exactly the names matching the documented pattern', () => {
    const alphabet = fc.constantFrom(...'aZ09._-/ é'.split(''));
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 12 }).map((cs) => cs.join('')), (name) => {
        const valid = /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name) && name.length <= 200;
        if (valid) assert.equal(checkName('topic', name), name);
        else assert.throws(() => checkName('topic', name), BotqueueError);
      }),
    );
  });
});
