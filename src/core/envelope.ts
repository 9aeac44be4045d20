import { randomUUID } from 'node:crypto';
import { BotqueueError, ErrorCodes } from './errors.js';
import { partitionForKey } from './partitioner.js';

/** What a producer hands to `publish`. */
export interface PublishInput<P = unknown> {
  /** Ordering key, normally the conversation (`chat:42`). Messages of one key run one at a time, in order. */
  key?: string;
  /** Idempotency key: the same id on the same topic inside the dedup window is the same message. Generated when absent. */
  id?: string;
  /** Any JSON-serialisable value. */
  payload: P;
  /** String headers kept with the message (trace ids, the platform's name...). */
  headers?: Record<string, string>;
  /** Hold the message (and, on a keyed topic, the key's later messages) this long. */
  delayMs?: number;
}

/** What the broker stores: the envelope with its payload already serialised and sized. */
export interface PreparedMessage {
  id: string;
  /** `null` for a message without key (no order constraint). */
  key: string | null;
  partition: number;
  /** The payload as JSON text. */
  payload: string;
  headers: Record<string, string>;
  /** Epoch ms before which the message is not handed out; 0 for none. */
  notBefore: number;
  /** False when the id was generated here: no other publish can carry it, so no dedup record. */
  dedup: boolean;
}

/** The receipt `publish` returns per message. */
export interface PublishReceipt {
  id: string;
  topic: string;
  partition: number;
  /** Increases per partition in publish order (not necessarily by one). */
  seq: number;
  /** True when the id was already published inside the dedup window; nothing new was stored. */
  duplicate: boolean;
}

/** A message as a handler sees it. */
export interface Envelope<P = unknown> {
  id: string;
  topic: string;
  key: string | null;
  partition: number;
  seq: number;
  payload: P;
  headers: Record<string, string>;
  publishedAt: number;
  /** 1 for the first delivery, counting persisted failed attempts. */
  attempt: number;
  notBefore: number;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_ID_LENGTH = 512;
const MAX_KEY_LENGTH = 512;

function bad(message: string, field: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_MESSAGE, message, { details: { field } });
}

function checkIdentifier(value: unknown, field: 'key' | 'id', max: number): string {
  if (typeof value !== 'string') throw bad(`message ${field} must be a non-empty string, got ${value === null ? 'null' : typeof value}`, field);
  if (value.length === 0) throw bad(`message ${field} must be a non-empty string, got an empty string`, field);
  if (value.length > max) throw bad(`message ${field} must be at most ${max} characters, got ${value.length}`, field);
  return value;
}

function serialisePayload(payload: unknown): string {
  if (payload === undefined) throw bad('message payload is missing: pass any JSON-serialisable value (null is fine)', 'payload');
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (error) {
    throw new BotqueueError(ErrorCodes.INVALID_MESSAGE, `message payload is not JSON-serialisable: ${(error as Error).message}`, {
      cause: error,
      details: { field: 'payload' },
    });
  }
  if (json === undefined) throw bad(`message payload is not JSON-serialisable (a ${typeof payload})`, 'payload');
  return json;
}

function checkHeaders(headers: unknown): Record<string, string> {
  if (headers === undefined) return {};
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) throw bad('message headers must be an object of strings', 'headers');
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (typeof value !== 'string') throw bad(`message header "${name}" must be a string, got ${typeof value}`, 'headers');
    out[name] = value;
  }
  return out;
}

const KNOWN_FIELDS = new Set(['key', 'id', 'payload', 'headers', 'delayMs']);

/**
 * Validates one message and prepares it for the broker: key and id checked, payload
 * serialised once, size checked, partition computed. Nothing is stored when this throws.
 */
export function prepareMessage(input: unknown, partitions: number, maxMessageBytes: number, now: number, index?: number): PreparedMessage {
  try {
    if (typeof input !== 'object' || input === null || Array.isArray(input)) throw bad('a message must be an object { key?, id?, payload, headers?, delayMs? }', 'message');
    for (const field in input) {
      if (Object.hasOwn(input, field) && !KNOWN_FIELDS.has(field)) throw bad(`unknown message field "${field}"; known fields: key, id, payload, headers, delayMs`, field);
    }
    const m = input as Record<string, unknown>;
    const key = m.key === undefined ? null : checkIdentifier(m.key, 'key', MAX_KEY_LENGTH);
    const given = m.id !== undefined;
    const id = given ? checkIdentifier(m.id, 'id', MAX_ID_LENGTH) : randomUUID();
    const headers = checkHeaders(m.headers);
    let notBefore = 0;
    if (m.delayMs !== undefined) {
      if (typeof m.delayMs !== 'number' || !Number.isFinite(m.delayMs) || m.delayMs < 0) throw bad('message delayMs must be a finite number >= 0', 'delayMs');
      if (m.delayMs > 0) notBefore = now + Math.ceil(m.delayMs);
    }
    const payload = serialisePayload(m.payload);
    let headerBytes = 0;
    for (const name in headers) headerBytes += Buffer.byteLength(name) + Buffer.byteLength(headers[name]!);
    // A UTF-16 unit is at most 3 UTF-8 bytes: most payloads are too short to be over the limit
    // whatever their characters, and skip counting their bytes.
    const size = payload.length * 3 + headerBytes <= maxMessageBytes ? 0 : Buffer.byteLength(payload) + headerBytes;
    if (size > maxMessageBytes) {
      throw new BotqueueError(ErrorCodes.MESSAGE_TOO_LARGE, `message is ${size} bytes, over the limit of ${maxMessageBytes} bytes (maxMessageBytes)`, {
        details: { size, limit: maxMessageBytes },
      });
    }
    const partition = key === null ? Math.floor(Math.random() * partitions) : partitionForKey(key, partitions);
    return { id, key, partition, payload, headers, notBefore, dedup: given };
  } catch (error) {
    if (error instanceof BotqueueError && index !== undefined) {
      throw new BotqueueError(error.code, `message #${index}: ${error.message}`, { cause: error.cause, details: { ...error.details, index } });
    }
    throw error;
  }
}

/** Topic names go into URLs, metrics labels and file names: keep them plain. */
const TOPIC_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

export function checkName(kind: 'topic' | 'group', name: unknown): string {
  if (typeof name !== 'string' || !TOPIC_NAME.test(name)) {
    throw new BotqueueError(
      ErrorCodes.INVALID_OPTION,
      `${kind} name must be 1-200 characters of letters, digits, ".", "_" or "-", starting with a letter or digit; got ${JSON.stringify(name)}`,
      { details: { option: kind } },
    );
  }
  return name;
}
