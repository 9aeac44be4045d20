/**
 * The platforms' published signature vectors (research/platforms.md §6), checked against the
 * verifiers the webhook routes use, with their negative cases.
 */
import assert from 'node:assert/strict';
import { createHmac, createPrivateKey, sign } from 'node:crypto';
import { describe, test } from 'node:test';
import { checkDiscord, checkGeneric, checkSlack, checkTelegram, checkWhatsApp, ed25519PublicKey, ed25519Verifies } from '../../src/gateway/verify.js';

const SLACK_SECRET = '8f742231b10e8888abcd99yyyzzz85a5';
const SLACK_TS = '1531420618';
const SLACK_BODY = Buffer.from(
  'token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c',
);
const SLACK_SIGNATURE = 'v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503';

const RFC8032_SEED = '9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60';
const RFC8032_PUBLIC = 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a';
const RFC8032_SIGNATURE =
  'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b';

describe('Slack v0 signature: the documented example', () => {
  test('the body is the documented one (362 bytes)', () => assert.equal(SLACK_BODY.length, 362));
  test('accepts the documented signature at its own timestamp', () => assert.equal(checkSlack(SLACK_SIGNATURE, SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS)), undefined));
  test('accepts it 300 s later, refuses it 301 s later as stale', () => {
    assert.equal(checkSlack(SLACK_SIGNATURE, SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS) + 300), undefined);
    assert.equal(checkSlack(SLACK_SIGNATURE, SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS) + 301), 'stale_timestamp');
  });
  test('refuses one changed body byte, another version, a changed timestamp, a short signature', () => {
    const changed = Buffer.from(SLACK_BODY);
    changed[10] = changed[10]! ^ 1;
    assert.equal(checkSlack(SLACK_SIGNATURE, SLACK_TS, changed, SLACK_SECRET, Number(SLACK_TS)), 'bad_signature');
    assert.equal(checkSlack(SLACK_SIGNATURE.replace('v0=', 'v1='), SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS)), 'bad_signature');
    assert.equal(checkSlack(SLACK_SIGNATURE, '1531420619', SLACK_BODY, SLACK_SECRET, Number(SLACK_TS)), 'bad_signature');
    assert.equal(checkSlack(SLACK_SIGNATURE.slice(0, -2), SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS)), 'bad_signature');
    assert.equal(checkSlack(undefined, SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS)), 'missing_signature');
  });
  test('accepts the hex digits in upper case', () => {
    assert.equal(checkSlack(`v0=${SLACK_SIGNATURE.slice(3).toUpperCase()}`, SLACK_TS, SLACK_BODY, SLACK_SECRET, Number(SLACK_TS)), undefined);
  });
});

describe('WhatsApp X-Hub-Signature-256: the SDK vector', () => {
  const header = 'sha256=0c61947b610d4f45e65f3d680e26027121ec2413e77598bcb6cfc6e0d9888221';
  test('accepts secret TEST_APP_SECRET, body "test"', () => assert.equal(checkWhatsApp(header, Buffer.from('test'), 'TEST_APP_SECRET'), undefined));
  test('accepts the third-party example (secret "secret")', () =>
    assert.equal(checkWhatsApp('sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914', Buffer.from('test'), 'secret'), undefined));
  test('refuses another body, another secret, no prefix, no header', () => {
    assert.equal(checkWhatsApp(header, Buffer.from('tesT'), 'TEST_APP_SECRET'), 'bad_signature');
    assert.equal(checkWhatsApp(header, Buffer.from('test'), 'OTHER'), 'bad_signature');
    assert.equal(checkWhatsApp(header.slice('sha256='.length), Buffer.from('test'), 'TEST_APP_SECRET'), 'bad_signature');
    assert.equal(checkWhatsApp(undefined, Buffer.from('test'), 'TEST_APP_SECRET'), 'missing_signature');
  });
});

describe('Ed25519: RFC 8032 §7.1 test 1 and the Discord-format vector', () => {
  const key = ed25519PublicKey(RFC8032_PUBLIC);
  test('the raw public key wrapped in SPKI DER verifies the RFC signature of the empty message', () => {
    assert.equal(ed25519Verifies(key, Buffer.alloc(0), RFC8032_SIGNATURE), true);
  });
  test('the seed reproduces the RFC signature (Ed25519 is deterministic)', () => {
    const privateKey = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), Buffer.from(RFC8032_SEED, 'hex')]), format: 'der', type: 'pkcs8' });
    assert.equal(sign(null, Buffer.alloc(0), privateKey).toString('hex'), RFC8032_SIGNATURE);
  });
  test('refuses a flipped bit, a one-byte message, a short signature', () => {
    const flipped = Buffer.from(RFC8032_SIGNATURE, 'hex');
    flipped[0] = flipped[0]! ^ 1;
    assert.equal(ed25519Verifies(key, Buffer.alloc(0), flipped.toString('hex')), false);
    assert.equal(ed25519Verifies(key, Buffer.from([0]), RFC8032_SIGNATURE), false);
    assert.equal(ed25519Verifies(key, Buffer.alloc(0), RFC8032_SIGNATURE.slice(2)), false);
  });
  const body = Buffer.from('{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong","type":1,"version":1}');
  const signature =
    'f0bd878adcef1f6d475c9644421905bd02b5de38e0d3ecfc6f58a711962c69ccc8dd7c9db312f9bdf08b1e1b8182e27a844da728c5e0dbb5507bf9931c1ed80b';
  test('Discord PING signed with the RFC key at 1700000000 is valid; timestamp 1700000001 is not', () => {
    assert.equal(checkDiscord(signature, '1700000000', body, key, 1_700_000_000), undefined);
    assert.equal(checkDiscord(signature, '1700000001', body, key, 1_700_000_000), 'bad_signature');
    assert.equal(checkDiscord(signature, '1700000000', body, key, 1_700_000_000 + 301), 'stale_timestamp');
    assert.equal(checkDiscord(undefined, '1700000000', body, key, 1_700_000_000), 'missing_signature');
  });
  test('a public key that is not 64 hex characters is refused', () => assert.throws(() => ed25519PublicKey('abcd')));
});

describe('Telegram secret token and the generic HMAC', () => {
  test('Telegram: equal accepted; missing, different or longer refused', () => {
    assert.equal(checkTelegram('s3cret_Token-1', 's3cret_Token-1'), undefined);
    assert.equal(checkTelegram(undefined, 's3cret_Token-1'), 'missing_signature');
    assert.equal(checkTelegram('s3cret_Token-2', 's3cret_Token-1'), 'bad_signature');
    assert.equal(checkTelegram('s3cret_Token-11', 's3cret_Token-1'), 'bad_signature');
  });
  test('generic: sha256=HMAC(secret, "<ts>.<body>") within 5 minutes', () => {
    const secret = 'generic-secret-0123456789';
    const body = Buffer.from('{"hello":"world"}');
    const hex = createHmac('sha256', secret).update(`1700000000.${body.toString()}`).digest('hex');
    assert.equal(checkGeneric(`sha256=${hex}`, '1700000000', body, secret, 1_700_000_100), undefined);
    assert.equal(checkGeneric(`sha256=${hex}`, '1700000000', body, secret, 1_700_000_301), 'stale_timestamp');
    assert.equal(checkGeneric(`sha256=${hex}`, '1700000001', body, secret, 1_700_000_000), 'bad_signature');
    assert.equal(checkGeneric(`sha256=${hex}`, 'abc', body, secret, 1_700_000_000), 'bad_signature');
    assert.equal(checkGeneric(undefined, '1700000000', body, secret, 1_700_000_000), 'missing_signature');
  });
});
