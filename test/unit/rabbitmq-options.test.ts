import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseRabbitmqUrl } from '../../src/brokers/rabbitmq/options.js';
import { ErrorCodes } from '../../src/core/errors.js';

const STORE = 'postgres://postgres@127.0.0.1:5432/test';

test('without a shared store the RabbitMQ backend refuses to start, and says how to give one', () => {
  assert.throws(() => parseRabbitmqUrl('amqp://guest:guest@127.0.0.1:5672', {}, {}), (error: Error & { code?: string }) => {
    assert.equal(error.code, ErrorCodes.STORE_REQUIRED);
    assert.match(error.message, /BOTQUEUE_STORE_URL=postgres:\/\//);
    assert.match(error.message, /local file/);
    return true;
  });
  assert.throws(() => parseRabbitmqUrl('amqp://127.0.0.1?store=', {}, {}), { code: ErrorCodes.STORE_REQUIRED });
});

test('the store comes from the option, then ?store=, then BOTQUEUE_STORE_URL; it must be PostgreSQL', () => {
  assert.equal(parseRabbitmqUrl('amqp://127.0.0.1', {}, { BOTQUEUE_STORE_URL: STORE }).options.storeUrl, STORE);
  const fromUrl = parseRabbitmqUrl(`amqp://127.0.0.1?store=${encodeURIComponent(STORE)}`, {}, { BOTQUEUE_STORE_URL: 'postgres://other/db' });
  assert.equal(fromUrl.options.storeUrl, STORE);
  assert.equal(parseRabbitmqUrl('amqp://127.0.0.1', { storeUrl: STORE }, { BOTQUEUE_STORE_URL: 'postgres://other/db' }).options.storeUrl, STORE);
  assert.throws(() => parseRabbitmqUrl('amqp://127.0.0.1?store=sqlite:./x.db', {}, {}), { code: ErrorCodes.INVALID_OPTION, message: /postgres:\/\// });
});

test("botqueue's parameters are read and removed from the URL amqplib gets; the rest stays", () => {
  const { amqpUrl, options } = parseRabbitmqUrl(`amqps://u:p@rabbit:5671/vh?namespace=bots&prefetch=64&heartbeat=10&deliveryLimit=20&frameMax=8192&store=${encodeURIComponent(STORE)}`, {}, {});
  assert.equal(amqpUrl, 'amqps://u:p@rabbit:5671/vh?frameMax=8192');
  assert.deepEqual({ ...options, now: undefined }, { namespace: 'bots', storeUrl: STORE, prefetch: 64, heartbeatSeconds: 10, deliveryLimit: 20, maxUnconfirmed: 4096, now: undefined });
});

test('bad parameters are named; a password never appears in an error', () => {
  const env = { BOTQUEUE_STORE_URL: STORE };
  assert.throws(() => parseRabbitmqUrl('amqp://u:secret@h?namespace=Bad-Name', {}, env), (error: Error & { code?: string }) => {
    assert.equal(error.code, ErrorCodes.INVALID_OPTION);
    assert.match(error.message, /namespace/);
    assert.doesNotMatch(error.message, /secret/);
    return true;
  });
  assert.throws(() => parseRabbitmqUrl('amqp://u:secret@h?prefetch=0', {}, env), (error: Error) => /prefetch/.test(error.message) && !/secret/.test(error.message));
  assert.throws(() => parseRabbitmqUrl('amqp://h', { prefech: 5 } as never, env), { code: ErrorCodes.INVALID_OPTION, message: /did you mean "prefetch"/ });
  assert.throws(() => parseRabbitmqUrl('redis://h', {}, env), { code: ErrorCodes.INVALID_OPTION });
});
