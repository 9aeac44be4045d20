import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MIN_SECRET_LENGTH, passwordsOf, redactSecrets, redactUrl } from '../../src/core/redact.js';

describe('redactUrl', () => {
  test('masks the password, or a user without a password (it may be a token)', () => {
    assert.equal(redactUrl('amqp://bot:s3cret@rabbit:5672/vhost'), 'amqp://bot:***@rabbit:5672/vhost');
    assert.equal(redactUrl('redis://tokenonly@host'), 'redis://***@host');
    assert.equal(redactUrl('redis://:pw@host'), 'redis://:***@host');
    assert.equal(redactUrl('amqp://u:p%40ss@h'), 'amqp://u:***@h');
  });

  test('leaves URLs without credentials as they are', () => {
    for (const url of ['sqlite:/srv/q.db', 'sqlite:./data/bq.db?synchronous=FULL', 'memory:', 'amqp://rabbit:5672/v?namespace=a', 'file:///srv/node_modules/@scope/x.js']) {
      assert.equal(redactUrl(url), url);
    }
  });

  test('masks a password holding a raw @ or / whole (up to the last @ before the query)', () => {
    assert.equal(redactUrl('amqp://u:p@ss@h:5672/v'), 'amqp://u:***@h:5672/v');
    assert.equal(redactUrl('postgres://u:p@s:/s!@h:5432/db?x=1'), 'postgres://u:***@h:5432/db?x=1');
    assert.equal(redactUrl('x://h?store=postgres%3A%2F%2Fu%3Ap%40s%2Fs%40h%2Fdb&y=1'), 'x://h?store=postgres%3A%2F%2Fu%3A***%40h%2Fdb&y=1');
  });

  test('masks the store URL nested in the query, raw, percent-encoded once and twice', () => {
    assert.equal(redactUrl('amqp://u:p@h?store=postgres://su:spw@db/app&namespace=a'), 'amqp://u:***@h?store=postgres://su:***@db/app&namespace=a');
    assert.equal(redactUrl('amqp://u:p@h?store=postgres%3A%2F%2Fsu%3Aspw%40db%2Fapp'), 'amqp://u:***@h?store=postgres%3A%2F%2Fsu%3A***%40db%2Fapp');
    assert.equal(redactUrl('amqp://h?store=postgres%3a%2f%2fsu%3ap%2540w%40db'), 'amqp://h?store=postgres%3a%2f%2fsu%3a***%40db', 'lower-case escapes, an encoded @ in the password');
    assert.equal(redactUrl('x://h?u=amqp%253A%252F%252Fu%253Apw%2540h'), 'x://h?u=amqp%253A%252F%252Fu%253A***%2540h');
  });
});

describe('redactSecrets', () => {
  test('masks the password of every URL in a free text, and keeps users readable', () => {
    const text = 'cannot connect to amqp://guest:pw1@127.0.0.1:1 ("postgres://postgres:pw2@db/x"); set BOTQUEUE_STORE_URL=postgres://user@host:5432/db';
    assert.equal(redactSecrets(text), 'cannot connect to amqp://guest:***@127.0.0.1:1 ("postgres://postgres:***@db/x"); set BOTQUEUE_STORE_URL=postgres://user@host:5432/db');
  });

  test('masks a known secret before the URL patterns could cut it', () => {
    assert.equal(redactSecrets('at postgres://u:a@b/c@h/db', 'a@b/c'), 'at postgres://u:***@h/db');
  });

  test('masks known secrets as written, percent-encoded and JSON-escaped', () => {
    const secret = 'S3cr"et!/x';
    const text = `a ${secret} b ${encodeURIComponent(secret)} c ${new URLSearchParams({ s: secret }).toString().slice(2)} d ${JSON.stringify(secret)}`;
    assert.equal(redactSecrets(text, secret, undefined, null), 'a *** b *** c *** d "***"');
  });

  test('stays linear on long lines: it runs on every log line', () => {
    for (const text of ['a'.repeat(200_000), `x://u:${'p'.repeat(200_000)}`, `x%3A%2F%2Fu%3A${'p'.repeat(200_000)}`]) {
      const started = performance.now();
      redactSecrets(text, 'secret');
      assert.ok(performance.now() - started < 500, `${text.slice(0, 20)}… took ${Math.round(performance.now() - started)} ms`);
    }
  });

  test(`skips known secrets shorter than ${MIN_SECRET_LENGTH} characters, which would garble the text`, () => {
    assert.equal(redactSecrets('a cab', 'ab', ''), 'a cab');
  });
});

describe('passwordsOf', () => {
  test('finds the passwords of the URLs and of the URLs nested in them, as written and decoded', () => {
    assert.deepEqual(new Set(passwordsOf('amqp://u:p%40ss@h?store=postgres%3A%2F%2Fsu%3Asp%2540w%40db', undefined)), new Set(['p%40ss', 'p@ss', 'sp%2540w', 'sp%40w', 'sp@w']));
  });

  test('leaves out a user without a password (a name, most often)', () => {
    assert.deepEqual(passwordsOf('postgres://postgres@db/app', 'sqlite:./q.db'), []);
  });
});
