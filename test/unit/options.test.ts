import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BotqueueError, ErrorCodes } from '../../src/core/errors.js';
import { validateOptions, type OptionSpec } from '../../src/core/options.js';

interface WorkerOpts {
  concurrency: number;
  visibilityMs: number;
  ratio: number;
  policy: string;
  name: string;
  verbose: boolean;
  onError: (e: unknown) => void;
  extra: object;
}

const SPEC: OptionSpec = {
  concurrency: { type: 'integer', min: 1, max: 1024 },
  visibilityMs: { type: 'integer', min: 1_000 },
  ratio: { type: 'number', min: 0, max: 1 },
  policy: { type: 'string', oneOf: ['dead-letter', 'park-key'] },
  name: { type: 'string', nonEmpty: true },
  verbose: { type: 'boolean' },
  onError: { type: 'function' },
  extra: { type: 'object' },
};

const noop = (): void => undefined;

const DEFAULTS: WorkerOpts = {
  concurrency: 8,
  visibilityMs: 30_000,
  ratio: 0.5,
  policy: 'dead-letter',
  name: 'worker',
  verbose: false,
  onError: noop,
  extra: {},
};

const validate = (input: unknown): WorkerOpts => validateOptions('createWorker', SPEC, input, DEFAULTS);

/** Asserts that `fn` throws BOTQUEUE_INVALID_OPTION naming `option`, and returns the error. */
function throwsInvalid(fn: () => unknown, option: string | undefined, ...fragments: (string | RegExp)[]): BotqueueError {
  let caught: unknown;
  assert.throws(fn, (error: unknown) => {
    caught = error;
    return true;
  });
  assert.ok(caught instanceof BotqueueError, `expected a BotqueueError, got ${String(caught)}`);
  assert.equal(caught.code, ErrorCodes.INVALID_OPTION);
  assert.equal(caught.code, 'BOTQUEUE_INVALID_OPTION');
  assert.equal(caught.retriable, false);
  assert.match(caught.message, /^createWorker: /, 'the message starts with where the options were given');
  if (option !== undefined) {
    assert.ok(caught.message.includes(`"${option}"`), `message does not name "${option}": ${caught.message}`);
    assert.equal(caught.details?.option, option);
  }
  for (const f of fragments) {
    if (typeof f === 'string') assert.ok(caught.message.includes(f), `message lacks ${JSON.stringify(f)}: ${caught.message}`);
    else assert.match(caught.message, f);
  }
  return caught;
}

describe('validateOptions: unknown options', () => {
  test('an unknown option is an error that names it and lists the known ones', () => {
    throwsInvalid(() => validate({ concurency: 4 }), 'concurency', 'unknown option', 'known options: concurrency, visibilityMs');
  });

  test('suggests the closest known option', () => {
    throwsInvalid(() => validate({ concurency: 4 }), 'concurency', 'did you mean "concurrency"?');
    throwsInvalid(() => validate({ CONCURRENCY: 4 }), 'CONCURRENCY', 'did you mean "concurrency"?');
  });

  test('no suggestion when nothing is close', () => {
    const e = throwsInvalid(() => validate({ zzzzzz: 1 }), 'zzzzzz');
    assert.doesNotMatch(e.message, /did you mean/);
  });

  test('an unknown option is an error even when its value is undefined', () => {
    throwsInvalid(() => validate({ bogus: undefined }), 'bogus', 'unknown option');
  });

  test('the first unknown option is named even when others are valid', () => {
    throwsInvalid(() => validate({ concurrency: 2, timeoutMs: 5 }), 'timeoutMs');
  });

  test('property: any name outside the spec is rejected and named', () => {
    const known = new Set(Object.keys(SPEC));
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 20 }).filter((name) => !known.has(name) && !(name in Object.prototype)),
        fc.anything(),
        (name, value) => {
          const input: Record<string, unknown> = {};
          Object.defineProperty(input, name, { value, enumerable: true, configurable: true, writable: true });
          throwsInvalid(() => validate(input), name, 'unknown option');
        },
      ),
    );
  });

  // Regression: names inherited from Object.prototype (and "__proto__" from parsed JSON) are
  // unknown options, not silently accepted.
  for (const name of ['constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
    test(`the inherited name "${name}" is rejected as an unknown option`, () => {
      throwsInvalid(() => validate({ [name]: 5 }), name, 'unknown option');
    });
  }

  test('"__proto__" from parsed JSON is rejected and does not change the result\'s prototype', () => {
    const input: unknown = JSON.parse('{"__proto__": {"polluted": true}}');
    let result: WorkerOpts | undefined;
    try {
      result = validate(input);
    } catch (error) {
      assert.ok(error instanceof BotqueueError && error.code === ErrorCodes.INVALID_OPTION);
    }
    if (result !== undefined) {
      assert.equal((result as unknown as { polluted?: boolean }).polluted, undefined, 'prototype of the result was replaced');
      assert.fail('"__proto__" was accepted as an option');
    }
  });
});

describe('validateOptions: types', () => {
  test('integer: rejects non-numbers, fractions, NaN and infinities', () => {
    throwsInvalid(() => validate({ concurrency: '4' }), 'concurrency', 'must be an integer', 'got the string "4"');
    throwsInvalid(() => validate({ concurrency: 2.5 }), 'concurrency', 'must be an integer', 'got the number 2.5');
    throwsInvalid(() => validate({ concurrency: Number.NaN }), 'concurrency', 'must be an integer');
    throwsInvalid(() => validate({ concurrency: Infinity }), 'concurrency', 'must be an integer');
    throwsInvalid(() => validate({ concurrency: null }), 'concurrency', 'got null');
    throwsInvalid(() => validate({ concurrency: [4] }), 'concurrency', 'got an array');
    throwsInvalid(() => validate({ concurrency: 4n }), 'concurrency', 'got a bigint');
  });

  test('number: accepts fractions, rejects non-finite values and strings', () => {
    assert.equal(validate({ ratio: 0.25 }).ratio, 0.25);
    throwsInvalid(() => validate({ ratio: Number.NaN }), 'ratio', 'must be a finite number');
    throwsInvalid(() => validate({ ratio: -Infinity }), 'ratio', 'must be a finite number');
    throwsInvalid(() => validate({ ratio: '0.5' }), 'ratio', 'must be a finite number');
  });

  test('string: rejects non-strings; nonEmpty rejects ""', () => {
    throwsInvalid(() => validate({ name: 42 }), 'name', 'must be a string', 'got the number 42');
    throwsInvalid(() => validate({ name: '' }), 'name', 'must not be empty');
    throwsInvalid(() => validate({ policy: '' }), 'policy', 'must be one of');
    assert.equal(validate({ name: 'w-1' }).name, 'w-1');
  });

  test('boolean: rejects truthy/falsy non-booleans', () => {
    throwsInvalid(() => validate({ verbose: 1 }), 'verbose', 'must be true or false');
    throwsInvalid(() => validate({ verbose: 'true' }), 'verbose', 'must be true or false');
    throwsInvalid(() => validate({ verbose: null }), 'verbose', 'got null');
    assert.equal(validate({ verbose: true }).verbose, true);
  });

  test('function: rejects non-functions', () => {
    throwsInvalid(() => validate({ onError: 'log' }), 'onError', 'must be a function');
    throwsInvalid(() => validate({ onError: {} }), 'onError', 'must be a function', 'got a object');
    const f = (): void => undefined;
    assert.equal(validate({ onError: f }).onError, f);
  });

  test('object: rejects null, arrays and primitives', () => {
    throwsInvalid(() => validate({ extra: null }), 'extra', 'must be an object', 'got null');
    throwsInvalid(() => validate({ extra: [] }), 'extra', 'must be an object', 'got an array');
    throwsInvalid(() => validate({ extra: 'x' }), 'extra', 'must be an object');
    throwsInvalid(() => validate({ extra: () => 1 }), 'extra', 'must be an object', 'got a function');
    const obj = { a: 1 };
    assert.equal(validate({ extra: obj }).extra, obj);
  });

  test('long strings are cut in the message', () => {
    const long = 'x'.repeat(500);
    const e = throwsInvalid(() => validate({ concurrency: long }), 'concurrency');
    assert.ok(e.message.includes(`"${'x'.repeat(40)}"`));
    assert.ok(!e.message.includes('x'.repeat(41)));
  });
});

describe('validateOptions: bounds and oneOf', () => {
  test('integer min and max are inclusive', () => {
    assert.equal(validate({ concurrency: 1 }).concurrency, 1);
    assert.equal(validate({ concurrency: 1024 }).concurrency, 1024);
    throwsInvalid(() => validate({ concurrency: 0 }), 'concurrency', 'must be at least 1', 'got 0');
    throwsInvalid(() => validate({ concurrency: -3 }), 'concurrency', 'must be at least 1');
    throwsInvalid(() => validate({ concurrency: 1025 }), 'concurrency', 'must be at most 1024', 'got 1025');
  });

  test('a min without a max leaves the top open', () => {
    assert.equal(validate({ visibilityMs: 1e12 }).visibilityMs, 1e12);
    throwsInvalid(() => validate({ visibilityMs: 999 }), 'visibilityMs', 'must be at least 1000');
  });

  test('number min and max', () => {
    assert.equal(validate({ ratio: 0 }).ratio, 0);
    assert.equal(validate({ ratio: 1 }).ratio, 1);
    throwsInvalid(() => validate({ ratio: -0.01 }), 'ratio', 'must be at least 0');
    throwsInvalid(() => validate({ ratio: 1.01 }), 'ratio', 'must be at most 1');
  });

  test('oneOf accepts the listed values only, and lists them', () => {
    assert.equal(validate({ policy: 'park-key' }).policy, 'park-key');
    assert.equal(validate({ policy: 'dead-letter' }).policy, 'dead-letter');
    throwsInvalid(() => validate({ policy: 'Park-Key' }), 'policy', "must be one of 'dead-letter', 'park-key'", 'got the string "Park-Key"');
    throwsInvalid(() => validate({ policy: 'drop' }), 'policy');
  });

  test('property: integers inside the bounds pass, outside fail', () => {
    fc.assert(
      fc.property(fc.integer({ min: -5_000, max: 5_000 }), (n) => {
        if (n >= 1 && n <= 1024) assert.equal(validate({ concurrency: n }).concurrency, n);
        else throwsInvalid(() => validate({ concurrency: n }), 'concurrency');
      }),
    );
  });
});

describe('validateOptions: defaults and absent values', () => {
  test('missing options take their defaults', () => {
    const result = validate({ concurrency: 3 });
    assert.deepEqual(result, { ...DEFAULTS, concurrency: 3 });
  });

  test('undefined and null input give a copy of the defaults', () => {
    for (const input of [undefined, null]) {
      const result = validate(input);
      assert.deepEqual(result, DEFAULTS);
      assert.notEqual(result, DEFAULTS, 'the defaults object itself must not be handed out');
    }
  });

  test('an option given as undefined counts as absent and keeps its default', () => {
    const result = validate({ concurrency: undefined, policy: undefined, verbose: true });
    assert.equal(result.concurrency, 8);
    assert.equal(result.policy, 'dead-letter');
    assert.equal(result.verbose, true);
  });

  test('does not mutate the input or the defaults', () => {
    const input = { concurrency: 2 };
    const before = { ...DEFAULTS };
    const result = validate(input);
    assert.deepEqual(input, { concurrency: 2 });
    assert.deepEqual(DEFAULTS, before);
    result.concurrency = 99;
    assert.equal(DEFAULTS.concurrency, 8);
  });

  test('an empty object gives the defaults', () => {
    assert.deepEqual(validate({}), DEFAULTS);
  });
});

describe('validateOptions: non-object input', () => {
  const cases: ReadonlyArray<readonly [unknown, string]> = [
    [42, 'the number 42'],
    ['concurrency=4', 'the string "concurrency=4"'],
    [true, 'a boolean'],
    [[{ concurrency: 4 }], 'an array'],
    [() => ({}), 'a function'],
    [Symbol('x'), 'a symbol'],
  ];
  for (const [input, described] of cases) {
    test(`rejects ${described}`, () => {
      const e = throwsInvalid(() => validate(input), undefined, 'options must be an object', `got ${described}`);
      assert.equal(e.details, undefined);
    });
  }
});
