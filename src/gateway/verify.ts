/**
 * Signature checks of the platforms' webhooks, always on the raw body bytes (a JSON parser
 * that re-serialises would change them), constant-time and length-checked. Each returns a
 * reason when the request must be refused, undefined when it is authentic.
 */
import { createHmac, createPublicKey, timingSafeEqual, verify as verifySignature, type KeyObject } from 'node:crypto';

/** Why a request failed its check; also the label of the rejection counter. */
export type SignatureFailure = 'missing_signature' | 'bad_signature' | 'stale_timestamp';

/** Slack's documented window, used for the generic route and Discord too. */
export const TIMESTAMP_WINDOW_S = 5 * 60;

const HEX_SHA256 = /^[0-9a-f]{64}$/i;
const UNIX_SECONDS = /^\d{1,12}$/;

/** Equal strings, in time independent of where they differ (the length is not secret). */
export function safeEqual(given: string, expected: string): boolean {
  const a = Buffer.from(given, 'utf8');
  const b = Buffer.from(expected, 'utf8');
  return a.length === b.length && timingSafeEqual(a, b);
}

function hmacHex(secret: string, ...parts: Array<string | Buffer>): string {
  const mac = createHmac('sha256', secret);
  for (const part of parts) mac.update(part);
  return mac.digest('hex');
}

/** A hex digest given with a prefix (`v0=`, `sha256=`), compared as bytes in constant time. */
function hexMatches(header: string, prefix: string, expectedHex: string): boolean {
  if (!header.startsWith(prefix)) return false;
  const hex = header.slice(prefix.length);
  if (!HEX_SHA256.test(hex)) return false;
  return timingSafeEqual(Buffer.from(hex.toLowerCase(), 'hex'), Buffer.from(expectedHex, 'hex'));
}

function staleTimestamp(timestamp: string, nowS: number): boolean {
  return Math.abs(nowS - Number(timestamp)) > TIMESTAMP_WINDOW_S;
}

/** Telegram: `X-Telegram-Bot-Api-Secret-Token` equals the `secret_token` given to setWebhook. */
export function checkTelegram(header: string | undefined, secretToken: string): SignatureFailure | undefined {
  if (header === undefined || header === '') return 'missing_signature';
  return safeEqual(header, secretToken) ? undefined : 'bad_signature';
}

/** Slack v0: `X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:" + ts + ":" + body))`, ts within 5 minutes. */
export function checkSlack(signature: string | undefined, timestamp: string | undefined, body: Buffer, secret: string, nowS: number): SignatureFailure | undefined {
  if (signature === undefined || timestamp === undefined) return 'missing_signature';
  if (!UNIX_SECONDS.test(timestamp)) return 'bad_signature';
  // The signature first: a stale timestamp on a forged request is still a forgery.
  if (!hexMatches(signature, 'v0=', hmacHex(secret, `v0:${timestamp}:`, body))) return 'bad_signature';
  return staleTimestamp(timestamp, nowS) ? 'stale_timestamp' : undefined;
}

/** WhatsApp (Meta): `X-Hub-Signature-256: sha256=hex(HMAC-SHA256(app secret, body))`; no timestamp. */
export function checkWhatsApp(signature: string | undefined, body: Buffer, appSecret: string): SignatureFailure | undefined {
  if (signature === undefined) return 'missing_signature';
  return hexMatches(signature, 'sha256=', hmacHex(appSecret, body)) ? undefined : 'bad_signature';
}

/** Generic: `X-Botqueue-Signature: sha256=hex(HMAC-SHA256(secret, ts + "." + body))`, `X-Botqueue-Timestamp` within 5 minutes. */
export function checkGeneric(signature: string | undefined, timestamp: string | undefined, body: Buffer, secret: string, nowS: number): SignatureFailure | undefined {
  if (signature === undefined || timestamp === undefined) return 'missing_signature';
  if (!UNIX_SECONDS.test(timestamp)) return 'bad_signature';
  if (!hexMatches(signature, 'sha256=', hmacHex(secret, `${timestamp}.`, body))) return 'bad_signature';
  return staleTimestamp(timestamp, nowS) ? 'stale_timestamp' : undefined;
}

/** The DER header of an Ed25519 SubjectPublicKeyInfo; the 32 raw key bytes follow it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/** A raw 32-byte Ed25519 public key (64 hex characters, as the Discord portal shows it) as a KeyObject. */
export function ed25519PublicKey(hex: string): KeyObject {
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error('an Ed25519 public key must be 64 hex characters (32 bytes)');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, Buffer.from(hex, 'hex')]), format: 'der', type: 'spki' });
}

/** Ed25519 over `message`; false for a signature that is not 128 hex characters. */
export function ed25519Verifies(key: KeyObject, message: Buffer, signatureHex: string): boolean {
  if (!/^[0-9a-f]{128}$/i.test(signatureHex)) return false;
  try {
    return verifySignature(null, message, key, Buffer.from(signatureHex, 'hex'));
  } catch {
    return false;
  }
}

/**
 * Discord: `X-Signature-Ed25519` over `X-Signature-Timestamp` + body. Discord documents no
 * freshness window; we hold its timestamp to the same 5 minutes as Slack's, so a captured
 * request cannot be replayed later (within the window, the interaction id dedupes it).
 */
export function checkDiscord(signature: string | undefined, timestamp: string | undefined, body: Buffer, key: KeyObject, nowS: number): SignatureFailure | undefined {
  if (signature === undefined || timestamp === undefined) return 'missing_signature';
  if (!UNIX_SECONDS.test(timestamp)) return 'bad_signature';
  if (!ed25519Verifies(key, Buffer.concat([Buffer.from(timestamp, 'utf8'), body]), signature)) return 'bad_signature';
  return staleTimestamp(timestamp, nowS) ? 'stale_timestamp' : undefined;
}
