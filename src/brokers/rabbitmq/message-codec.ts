/**
 * How a botqueue message travels as an AMQP message. The body is one line of envelope, then the
 * payload's JSON text:
 *
 *     ["bq2",seq,partition,publishedAt,notBefore,id,key,headers?]\n{"the":"payload"}
 *
 * and the only AMQP property is delivery-mode 2 (persistent). Everything is in the body, because
 * what amqplib does per property and header costs CPU on both sides for every message (a header
 * table was the largest single item of the publish profile; each string property is measured,
 * written and read back), and because AMQP's message-id holds at most 255 bytes while a
 * botqueue id may have 512 characters. JSON text never holds a raw newline, so the first one ends
 * the envelope. A message RabbitMQ moved (alternate exchange, dead-lettering) keeps its body, so
 * it can be read back anywhere.
 *
 * Two earlier formats are still read, so that messages queued before an upgrade are handled,
 * not dropped as foreign: `bq1` (the same line without the id, which was the message-id
 * property) and the header format (envelope in AMQP headers, body = payload).
 */
import type { PreparedMessage } from '../../core/envelope.js';
import type { Delivery } from '../broker.js';

const VERSION = 'bq2';
const PREFIX = `["${VERSION}",`;

/**
 * A decoded message is already a Delivery (no attempts yet), so that the consumer can hand it
 * on without copying it into another object: one object per message fewer to collect.
 */
export type DecodedMessage = Delivery;

/** The AMQP properties of a received message that decoding may need (the earlier formats). */
export interface ReceivedProperties {
  messageId?: unknown;
  headers?: Record<string, unknown> | undefined;
}

/** The body of a message: envelope line, newline, payload. */
export function encodeBody(message: PreparedMessage, seq: number, publishedAt: number): string {
  // Written by hand rather than JSON.stringify of an array: the numbers are integers, so only
  // the id, the key and the headers need escaping.
  let line = `${PREFIX}${seq},${message.partition},${publishedAt},${message.notBefore},${JSON.stringify(message.id)},${message.key === null ? 'null' : JSON.stringify(message.key)}`;
  for (const _ in message.headers) {
    line += `,${JSON.stringify(message.headers)}`;
    break;
  }
  return `${line}]\n${message.payload}`;
}

/** Decodes what `encodeBody` wrote (or an earlier format); undefined for a message botqueue did not publish. */
export function decodeMessage(properties: ReceivedProperties, content: Buffer): DecodedMessage | undefined {
  // One UTF-8 decode of the whole body; the envelope's strings and the payload are slices of it.
  const text = content.toString('utf8');
  const end = text.indexOf('\n');
  if (end < 0) return typeof properties.messageId === 'string' ? decodeHeaderFormat(properties.messageId, properties.headers, text) : undefined;
  if (text.startsWith(PREFIX)) return readCommonLine(text, end) ?? parseLine(text, end, undefined);
  if (typeof properties.messageId === 'string') return parseLine(text, end, properties.messageId);
  return undefined;
}

/**
 * The envelope line as encodeBody writes it when nothing in it needs escaping and there are no
 * headers (nearly every message), read without JSON.parse: no array, no intermediate strings.
 * Anything else returns undefined and goes to `parseLine`, which reads every valid line;
 * test/unit/rabbitmq-codec.test.ts checks that both agree.
 */
function readCommonLine(text: string, end: number): DecodedMessage | undefined {
  const line = new LineCursor(text, end, PREFIX.length);
  const seq = line.integer();
  const partition = line.integer();
  const publishedAt = line.integer();
  const notBefore = line.integer();
  const id = line.plainString(COMMA);
  if (seq < 0 || partition < 0 || publishedAt < 0 || notBefore < 0 || id === undefined) return undefined;
  const key = text.startsWith('null]', line.at) ? line.skip(5) : line.plainString(CLOSE_BRACKET);
  if (key === undefined || line.at !== end) return undefined;
  return delivery(seq, partition, publishedAt, notBefore, id, key, {}, text.slice(end + 1));
}

const COMMA = 0x2c;
const CLOSE_BRACKET = 0x5d;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Reads the simple JSON values of one line from left to right; a failed read leaves `at` where it was. */
class LineCursor {
  constructor(
    private readonly text: string,
    private readonly end: number,
    public at: number,
  ) {}

  /** A non-negative integer of at most 16 digits followed by a comma; -1 when it is not that. */
  integer(): number {
    const { text, end, at } = this;
    let value = 0;
    let i = at;
    for (; i < end && i - at < 16; i++) {
      const digit = text.charCodeAt(i) - 48;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
    }
    if (i === at || i >= end || text.charCodeAt(i) !== COMMA || value > Number.MAX_SAFE_INTEGER) return -1;
    // A leading zero is not JSON (except 0 itself): leave such a line to JSON.parse, which refuses it.
    if (text.charCodeAt(at) === 48 && i - at > 1) return -1;
    this.at = i + 1;
    return value;
  }

  /** A JSON string without escapes followed by `then`; undefined when it is not that. */
  plainString(then: number): string | undefined {
    const { text, end, at } = this;
    if (text.charCodeAt(at) !== QUOTE) return undefined;
    for (let i = at + 1; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c === QUOTE) {
        if (i + 1 >= end || text.charCodeAt(i + 1) !== then) return undefined;
        this.at = i + 2;
        return text.slice(at + 1, i);
      }
      // Escapes, and control characters (not valid raw in JSON): JSON.parse decides.
      if (c === BACKSLASH || c < 0x20) return undefined;
    }
    return undefined;
  }

  /** Moves past `length` characters already matched; the value they stand for is null. */
  skip(length: number): null {
    this.at += length;
    return null;
  }
}

/**
 * Any envelope line, by JSON.parse: `bq2`, or `bq1` with the id from the message-id property.
 * Exported as the reference the tests hold the fast reader to.
 */
export function parseLine(text: string, end: number, propertyId: string | undefined): DecodedMessage | undefined {
  let envelope: unknown;
  try {
    envelope = JSON.parse(text.slice(0, end));
  } catch {
    return undefined;
  }
  if (!Array.isArray(envelope)) return undefined;
  let fields: unknown[];
  let id: unknown;
  if (envelope[0] === VERSION) {
    id = envelope[5];
    fields = [envelope[1], envelope[2], envelope[3], envelope[4], envelope[6], envelope[7]];
  } else if (envelope[0] === 'bq1' && propertyId !== undefined) {
    id = propertyId;
    fields = envelope.slice(1, 7);
  } else {
    return undefined;
  }
  const [seq, partition, publishedAt, notBefore, key, headers] = fields;
  if (typeof id !== 'string' || !Number.isSafeInteger(seq) || !Number.isSafeInteger(partition)) return undefined;
  return delivery(
    seq as number,
    partition as number,
    typeof publishedAt === 'number' ? publishedAt : 0,
    typeof notBefore === 'number' ? notBefore : 0,
    id,
    typeof key === 'string' ? key : null,
    isStringRecord(headers) ? headers : {},
    text.slice(end + 1),
  );
}

function delivery(
  seq: number,
  partition: number,
  publishedAt: number,
  notBefore: number,
  id: string,
  key: string | null,
  headers: Record<string, string>,
  payload: string,
): DecodedMessage {
  return { seq, id, key, partition, payload, headers, publishedAt, notBefore, attempts: 0, firstFailedAt: null, parked: false };
}

/** The format before bq1 (envelope in AMQP headers, body = payload). */
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
  return delivery(
    seq!,
    partition!,
    Number.isFinite(publishedAt) ? publishedAt! : 0,
    Number.isFinite(notBefore) ? notBefore! : 0,
    id,
    headerText(headers?.['bq-key']) ?? null,
    isStringRecord(userHeaders) ? userHeaders : {},
    payload,
  );
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
