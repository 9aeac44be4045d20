import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { murmur2, partitionForKey, toPositive } from '../../src/core/partitioner.js';

const utf8 = (text: string): Uint8Array => new TextEncoder().encode(text);

/**
 * The vectors of Apache Kafka's own unit test, `UtilsTest.testMurmur2`
 * (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java), which checks
 * `Utils.murmur2(key.getBytes(UTF_8))` against these signed 32-bit results.
 */
const KAFKA_UTILS_TEST_VECTORS: ReadonlyArray<readonly [string, number]> = [
  ['21', -973932308],
  ['foobar', -790332482],
  ['a-little-bit-long-string', -985981536],
  ['a-little-bit-longer-string', -1486304829],
  ['lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8', -58897971],
  ['abc', 479470107],
];

/**
 * librdkafka's `unittest_murmur2` (src/rdmurmur2.c), whose `java_murmur2_results` were taken
 * from the Java client; given there as unsigned 32-bit values. Together with the Kafka vectors
 * above they cover every tail length (length % 4 = 0, 1, 2, 3) and the empty key.
 */
const LIBRDKAFKA_VECTORS: ReadonlyArray<readonly [string, number]> = [
  ['kafka', 0xd067cf64],
  ['giberish123456789', 0x8f552b0c],
  ['1234', 0x9fc97b14],
  ['234', 0xe7c009ca],
  ['34', 0x873930da],
  ['4', 0x5a4b5ca1],
  ['PreAmbleWillBeRemoved,ThePrePartThatIs', 0x78424f1c],
  ['reAmbleWillBeRemoved,ThePrePartThatIs', 0x4a62b377],
  ['eAmbleWillBeRemoved,ThePrePartThatIs', 0xe0e4e09e],
  ['AmbleWillBeRemoved,ThePrePartThatIs', 0x62b8b43f],
  ['', 0x106e08d9],
];

describe('murmur2', () => {
  for (const [key, expected] of KAFKA_UTILS_TEST_VECTORS) {
    test(`equals Kafka Utils.murmur2 for ${JSON.stringify(key)} (UtilsTest.testMurmur2)`, () => {
      assert.equal(murmur2(utf8(key)), expected);
    });
  }

  for (const [key, unsigned] of LIBRDKAFKA_VECTORS) {
    test(`equals librdkafka's Java reference for ${JSON.stringify(key)} (length % 4 = ${key.length % 4})`, () => {
      assert.equal(murmur2(utf8(key)), unsigned | 0);
    });
  }

  test('returns a signed 32-bit integer for any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const h = murmur2(bytes);
        assert.ok(Number.isInteger(h), `not an integer: ${h}`);
        assert.ok(h >= -(2 ** 31) && h <= 2 ** 31 - 1, `out of int32 range: ${h}`);
        assert.equal(h, h | 0);
        assert.equal(murmur2(bytes), h, 'not deterministic');
      }),
    );
  });

  test('does not read past the array (a longer buffer view hashes only its own bytes)', () => {
    const backing = utf8('foobar-and-more');
    const view = backing.subarray(0, 6);
    assert.equal(murmur2(view), -790332482);
  });
});

describe('toPositive', () => {
  test('clears the sign bit like Kafka Utils.toPositive', () => {
    assert.equal(toPositive(-790332482), 1357151166);
    assert.equal(toPositive(-973932308), -973932308 & 0x7fffffff);
    assert.equal(toPositive(479470107), 479470107);
    assert.equal(toPositive(0), 0);
    assert.equal(toPositive(-1), 0x7fffffff);
  });

  test('maps Integer.MIN_VALUE to 0 (where Math.abs would overflow)', () => {
    assert.equal(toPositive(-(2 ** 31)), 0);
  });
});

describe('partitionForKey', () => {
  test('matches Kafka: partitionForKey("foobar", 50) === 16', () => {
    assert.equal(partitionForKey('foobar', 50), 16);
    assert.equal(1357151166 % 50, 16);
  });

  test('equals (murmur2 & 0x7fffffff) % n for every Kafka vector', () => {
    for (const [key, hash] of KAFKA_UTILS_TEST_VECTORS) {
      for (const n of [1, 2, 3, 7, 12, 50, 64, 1000]) {
        assert.equal(partitionForKey(key, n), (hash & 0x7fffffff) % n, `key ${key}, n ${n}`);
      }
    }
  });

  test('a single partition always gets 0', () => {
    for (const [key] of KAFKA_UTILS_TEST_VECTORS) assert.equal(partitionForKey(key, 1), 0);
  });

  test('property: in [0, n), an integer, and stable across calls', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.integer({ min: 1, max: 10_000 }), (key, n) => {
        const p = partitionForKey(key, n);
        assert.ok(Number.isInteger(p));
        assert.ok(p >= 0 && p < n, `partition ${p} outside [0, ${n})`);
        assert.equal(partitionForKey(key, n), p);
      }),
    );
  });

  test('property: non-ASCII keys are hashed as their UTF-8 bytes', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.integer({ min: 1, max: 4096 }), (key, n) => {
        const direct = (murmur2(new TextEncoder().encode(key)) & 0x7fffffff) % n;
        assert.equal(partitionForKey(key, n), direct);
      }),
    );
  });

  test('non-ASCII examples use UTF-8, not UTF-16 code units or Latin-1', () => {
    for (const key of ['chat:Ω', 'élève', '日本語のチャット', 'emoji:🤖', 'tg:42:ümlaut']) {
      const bytes = utf8(key);
      assert.notEqual(bytes.length, key.length, `${key} should have multi-byte characters`);
      const expected = (murmur2(bytes) & 0x7fffffff) % 97;
      assert.equal(partitionForKey(key, 97), expected, key);
    }
    // "é" is C3 A9 in UTF-8; a Latin-1 encoder would give the single byte E9.
    assert.equal(murmur2(utf8('é')), murmur2(Uint8Array.of(0xc3, 0xa9)));
    assert.notEqual(murmur2(utf8('é')), murmur2(Uint8Array.of(0xe9)));
  });
});
