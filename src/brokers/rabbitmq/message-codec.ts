/**
 * How a botqueue message travels as an AMQP message. The body is one line of envelope, then the
 * payload's JSON text:
 *
 *     ["bq1",seq,partition,publishedAt,notBefore,key,headers?]\n{"the":"payload"}
 *
 * and the id is the standard message-id property. The envelope is in the body, not in AMQP
 * headers, because a header table costs encoding on the way out and a field-by-field parse on
 * the way in, per message (it was the largest single item of the publish profile), while one
 * JSON line costs one JSON.parse. JSON text never holds a raw newline, so the first one ends the
 * envelope. A message RabbitMQ moved (alternate exchange, dead-lettering) keeps its body, so it
 * can be read back anywhere.
 */
import type { Options } from 'amqplib';
import type { PreparedMessage } from '../../core/envelope.js';
import type { Delivery } from '../broker.js';

const VERSION = 'bq1';
/** Marks the body format for people looking at a queue in the management UI. */
export const CONTENT_TYPE = 'application/vnd.botqueue.v1';

/**
 * A decoded message is already a Delivery (no attempts yet), so that the consumer can hand it
 * on without copying it into another object: one object per message fewer to collect.
 */
export type DecodedMessage = Delivery;

export interface EncodedMessage {
  content: Buffer;
  properties: Options.Publish;
}

export function encodeMessage(message: PreparedMessage, seq: number, publishedAt: number): EncodedMessage {
  // Written by hand rather than JSON.stringify of an array: the numbers are integers, so only
  // the key and the headers need escaping.
  let line = `["${VERSION}",${seq},${message.partition},${publishedAt},${message.notBefore},${message.key === null ? 'null' : JSON.stringify(message.key)}`;
  for (const _ in message.headers) {
    line += `,${JSON.stringify(message.headers)}`;
    break;
  }
  return {
    content: Buffer.from(`${line}]\n${message.payload}`, 'utf8'),
    properties: { persistent: true, contentType: CONTENT_TYPE, messageId: message.id },
  };
}

/** Decodes what `encodeMessage` wrote; undefined for a message botqueue did not publish. */
export function decodeMessage(properties: { messageId?: unknown; headers?: Record<string, unknown> | undefined }, content: Buffer): DecodedMessage | undefined {
  const id = properties.messageId;
  if (typeof id !== 'string') return undefined;
  // One UTF-8 decode of the whole body; the envelope line and the payload are slices of it.
  const text = content.toString('utf8');
  const end = text.indexOf('\n');
  if (end < 0) return decodeHeaderFormat(id, properties.headers, text);
  let envelope: unknown;
  try {
    envelope = JSON.parse(text.slice(0, end));
  } catch {
    return undefined;
  }
  if (!Array.isArray(envelope) || envelope[0] !== VERSION) return undefined;
  const [, seq, partition, publishedAt, notBefore, key, headers] = envelope as [string, unknown, unknown, unknown, unknown, unknown, unknown];
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(partition)) return undefined;
  return {
    seq: seq as number,
    id,
    key: typeof key === 'string' ? key : null,
    partition: partition as number,
    payload: text.slice(end + 1),
    headers: isStringRecord(headers) ? headers : {},
    publishedAt: typeof publishedAt === 'number' ? publishedAt : 0,
    notBefore: typeof notBefore === 'number' ? notBefore : 0,
    attempts: 0,
    firstFailedAt: null,
    parked: false,
  };
}

/**
 * The format before 2026-11-28 (envelope in AMQP headers, body = payload), still read so that
 * messages already in the queues when botqueue is upgraded are handled, not dropped as foreign.
 */
function decodeHeaderFormat(id: string, headers: Record<string, unknown> | undefined, payload: string): DecodedMessage | undefined {
  const numbers = headerText(headers?.bq);
  if (numbers === undefined) return undefined;
  const [seq, partition, publishedAt, notBefore] = numbers.split(';').map(Number);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(partition)) return undefined;
  let userHeaders: unknown;
  try {
    userHeaders = JSON.parse(headerText(headers?.['bq-headers']) ?? '{}');
  } catch {
    userHeaders = {};
  }
  return {
    seq: seq!,
    id,
    key: headerText(headers?.['bq-key']) ?? null,
    partition: partition!,
    payload,
    headers: isStringRecord(userHeaders) ? userHeaders : {},
    publishedAt: Number.isFinite(publishedAt) ? publishedAt! : 0,
    notBefore: Number.isFinite(notBefore) ? notBefore! : 0,
    attempts: 0,
    firstFailedAt: null,
    parked: false,
  };
}

/** A header's text: amqplib hands long strings back as strings, or as Buffers for byte arrays. */
function headerText(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}

/** The same message again (redrive, copy to a new group), as a PreparedMessage. */
export function toPrepared(message: Pick<DecodedMessage, 'id' | 'key' | 'partition' | 'payload' | 'headers' | 'notBefore'>): PreparedMessage {
  return { id: message.id, key: message.key, partition: message.partition, payload: message.payload, headers: message.headers, notBefore: message.notBefore, dedup: false };
}

function isStringRecord(value: unknown): value is Record<string, string> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  for (const item of Object.values(value)) if (typeof item !== 'string') return false;
  return true;
}
