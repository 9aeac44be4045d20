/**
 * How a botqueue message travels as an AMQP message: the body is the payload's JSON text, the
 * envelope fields are headers. A message RabbitMQ moved (alternate exchange, dead-lettering)
 * keeps its headers, so it can be read back anywhere.
 */
import type { Options } from 'amqplib';
import type { PreparedMessage } from '../../core/envelope.js';

/**
 * The numbers travel in one header ("seq;partition;publishedAt;notBefore"), the id as the
 * standard message-id property: every header table entry costs encoding on the way out and
 * parsing on the way in, per message.
 */
const H = {
  numbers: 'bq',
  key: 'bq-key',
  headers: 'bq-headers',
} as const;

export interface DecodedMessage {
  id: string;
  seq: number;
  key: string | null;
  partition: number;
  publishedAt: number;
  notBefore: number;
  headers: Record<string, string>;
  payload: string;
}

export function encodeProperties(message: PreparedMessage, seq: number, publishedAt: number): Options.Publish {
  const headers: Record<string, unknown> = { [H.numbers]: `${seq};${message.partition};${publishedAt};${message.notBefore}` };
  if (message.key !== null) headers[H.key] = message.key;
  if (Object.keys(message.headers).length > 0) headers[H.headers] = JSON.stringify(message.headers);
  return { persistent: true, contentType: 'application/json', messageId: message.id, headers };
}

/** Decodes what `encodeProperties` wrote; undefined for a message botqueue did not publish. */
export function decodeMessage(properties: { headers?: Record<string, unknown> | undefined; messageId?: unknown }, content: Buffer): DecodedMessage | undefined {
  const headers = properties.headers ?? {};
  const id = properties.messageId;
  const numbers = text(headers[H.numbers]);
  if (typeof id !== 'string' || numbers === undefined) return undefined;
  const [seq, partition, publishedAt, notBefore] = numbers.split(';').map(Number);
  if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(partition)) return undefined;
  const key = text(headers[H.key]);
  const userHeaders = text(headers[H.headers]);
  return {
    id,
    seq: seq!,
    key: key ?? null,
    partition: partition!,
    publishedAt: Number.isFinite(publishedAt) ? publishedAt! : 0,
    notBefore: Number.isFinite(notBefore) ? notBefore! : 0,
    headers: userHeaders === undefined ? {} : (JSON.parse(userHeaders) as Record<string, string>),
    payload: content.toString('utf8'),
  };
}

/** The same message again (redrive, copy to a new group), as a PreparedMessage. */
export function toPrepared(message: DecodedMessage): PreparedMessage {
  return { id: message.id, key: message.key, partition: message.partition, payload: message.payload, headers: message.headers, notBefore: message.notBefore, dedup: false };
}

/** A header's text: amqplib hands long strings back as strings, or as Buffers for byte arrays. */
function text(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (Buffer.isBuffer(value)) return value.toString('utf8');
  return undefined;
}
