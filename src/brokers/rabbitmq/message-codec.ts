/**
 * How a botqueue message travels as an AMQP message: the body is the payload's JSON text, the
 * envelope fields are headers. A message RabbitMQ moved (alternate exchange, dead-lettering)
 * keeps its headers, so it can be read back anywhere.
 */
import type { Options } from 'amqplib';
import type { PreparedMessage } from '../../core/envelope.js';

const H = {
  id: 'bq-id',
  seq: 'bq-seq',
  key: 'bq-key',
  partition: 'bq-partition',
  publishedAt: 'bq-published-at',
  notBefore: 'bq-not-before',
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
  const headers: Record<string, unknown> = {
    [H.id]: message.id,
    [H.seq]: seq,
    [H.partition]: message.partition,
    [H.publishedAt]: publishedAt,
  };
  if (message.key !== null) headers[H.key] = message.key;
  if (message.notBefore > 0) headers[H.notBefore] = message.notBefore;
  if (Object.keys(message.headers).length > 0) headers[H.headers] = JSON.stringify(message.headers);
  return { persistent: true, contentType: 'application/json', messageId: message.id, headers };
}

/** Decodes what `encodeProperties` wrote; undefined for a message botqueue did not publish. */
export function decodeMessage(properties: { headers?: Record<string, unknown> | undefined }, content: Buffer): DecodedMessage | undefined {
  const headers = properties.headers ?? {};
  const id = headers[H.id];
  const seq = toNumber(headers[H.seq]);
  const partition = toNumber(headers[H.partition]);
  if (typeof id !== 'string' || seq === undefined || partition === undefined) return undefined;
  const key = headers[H.key];
  const userHeaders = headers[H.headers];
  return {
    id,
    seq,
    key: typeof key === 'string' ? key : null,
    partition,
    publishedAt: toNumber(headers[H.publishedAt]) ?? 0,
    notBefore: toNumber(headers[H.notBefore]) ?? 0,
    headers: typeof userHeaders === 'string' ? (JSON.parse(userHeaders) as Record<string, string>) : {},
    payload: content.toString('utf8'),
  };
}

/** The same message again (redrive, copy to a new group), as a PreparedMessage. */
export function toPrepared(message: DecodedMessage): PreparedMessage {
  return { id: message.id, key: message.key, partition: message.partition, payload: message.payload, headers: message.headers, notBefore: message.notBefore, dedup: false };
}

/** AMQP tables carry large integers as int64, which amqplib may hand back as numbers or bigint-like objects. */
function toNumber(value: unknown): number | undefined {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  if (typeof value === 'bigint') return Number(value);
  if (typeof value === 'string' && /^-?\d+$/.test(value)) return Number(value);
  if (typeof value === 'object' && value !== null && 'value' in value) return toNumber((value).value);
  return undefined;
}
