/**
 * A botqueue message as a Kafka record: the key is the message key (so Kafka's own partitioner
 * and tools agree with botqueue), the value is the payload's JSON text, the timestamp is the
 * publish time, and botqueue's fields travel as headers. A record written by a plain Kafka
 * producer (no botqueue headers) is read too: its id is made from its place in the log, as is
 * the id of a message published without one.
 */
import type { PreparedMessage } from '../../core/envelope.js';
import type { Delivery } from '../broker.js';
import type { RawMessage } from './kafkajs-parts.js';

const ID = 'botqueue-id';
const HEADERS = 'botqueue-headers';
const NOT_BEFORE = 'botqueue-not-before';
/** Set on a dead letter redriven to one group: the other groups skip the record. */
const ONLY_GROUP = 'botqueue-group';

export interface OutgoingRecord {
  key: Buffer | null;
  value: Buffer;
  partition: number;
  headers: Record<string, string>;
  timestamp: string;
}

export function toRecord(message: PreparedMessage, publishedAt: number, onlyGroup?: string): OutgoingRecord {
  // A generated id (dedup false) is not sent: the record's place in the log is its id (see
  // generatedId), which spares the header (kafkajs encodes headers slowly: a 1,000-record
  // batch with one header went out at 0.4× the rate of the same batch without).
  const headers: Record<string, string> = {};
  if (message.dedup || onlyGroup !== undefined) headers[ID] = message.id;
  if (Object.keys(message.headers).length > 0) headers[HEADERS] = JSON.stringify(message.headers);
  if (message.notBefore > 0) headers[NOT_BEFORE] = String(message.notBefore);
  if (onlyGroup !== undefined) headers[ONLY_GROUP] = onlyGroup;
  return {
    key: message.key === null ? null : Buffer.from(message.key, 'utf8'),
    value: Buffer.from(message.payload, 'utf8'),
    partition: message.partition,
    headers,
    timestamp: String(publishedAt),
  };
}

function header(message: RawMessage, name: string): string | undefined {
  const value = message.headers[name];
  if (value === undefined) return undefined;
  return (Array.isArray(value) ? value[0] : value)?.toString('utf8');
}

/** A record's text as JSON text: a plain producer's text that is not JSON becomes a JSON string (dead letters keep JSON). */
export function jsonPayload(text: string): string {
  try {
    JSON.parse(text);
    return text;
  } catch {
    return JSON.stringify(text);
  }
}

/** The id of a record that carries none: a generated id, or a plain Kafka producer's record. */
export function generatedId(topic: string, partition: number, offset: number): string {
  return `kafka:${topic}:${partition}:${offset}`;
}

export interface DecodedRecord {
  delivery: Delivery;
  /** The group this record is for alone (a redriven dead letter), or undefined for every group. */
  onlyGroup: string | undefined;
}

/** seq = offset + 1, so that seq 0 ("nothing yet") comes before the first record. */
export function fromRecord(topic: string, partition: number, message: RawMessage): DecodedRecord {
  const offset = Number(message.offset);
  const headersText = header(message, HEADERS);
  let headers: Record<string, string> = {};
  if (headersText !== undefined) {
    try {
      headers = JSON.parse(headersText) as Record<string, string>;
    } catch {
      headers = {};
    }
  }
  return {
    delivery: {
      seq: offset + 1,
      id: header(message, ID) ?? generatedId(topic, partition, offset),
      key: message.key === null ? null : message.key.toString('utf8'),
      partition,
      // Not parsed here: the worker parses it once (payloadMayBeText), dead letters use jsonPayload.
      payload: message.value === null ? 'null' : message.value.toString('utf8'),
      payloadMayBeText: true,
      headers,
      publishedAt: Number(message.timestamp),
      notBefore: Number(header(message, NOT_BEFORE) ?? 0),
      attempts: 0,
      firstFailedAt: null,
      parked: false,
    },
    onlyGroup: header(message, ONLY_GROUP),
  };
}

/**
 * The commit's metadata. Offsets settled above the committed one, so that a member taking the
 * partition over does not run them again: "+d1,d2,..." deltas from the committed offset. Then,
 * when some message of the partition may have a state in the store (failed attempts, parked),
 * ";h<offset>": no message at or past that offset has one, so a reader reads the store only for
 * the messages below it (a store round trip per Fetch otherwise, for states that almost never
 * exist). Kafka caps metadata (offset.metadata.max.bytes, 4,096 by default): past the cap the
 * rest of the settled offsets is left out, and those messages may run twice (at least once,
 * never lost). Numbers are base 36.
 */
const MAX_METADATA = 4_000;

export function encodeSettled(committed: number, settled: Iterable<number>, horizon = 0): string {
  const sorted = [...settled].filter((o) => o >= committed).sort((a, b) => a - b);
  const tail = horizon > committed ? `;h${horizon.toString(36)}` : '';
  let text = '';
  let previous = committed;
  for (const offset of sorted) {
    const part = `${text === '' ? '' : ','}${(offset - previous).toString(36)}`;
    if (text.length + part.length + tail.length > MAX_METADATA) break;
    text += part;
    previous = offset;
  }
  return `${text === '' ? '' : `+${text}`}${tail}`;
}

export function decodeSettled(committed: number, metadata: string | null): Set<number> {
  const settled = new Set<number>();
  if (metadata === null || !metadata.startsWith('+')) return settled;
  let previous = committed;
  for (const part of metadata.slice(1).split(';')[0]!.split(',')) {
    const delta = parseInt(part, 36);
    if (!Number.isFinite(delta) || delta < 0) break;
    previous += delta;
    settled.add(previous);
  }
  return settled;
}

/** The offset from which no message has a state in the store (see above); 0 when none has one. */
export function decodeHorizon(metadata: string | null): number {
  const match = metadata === null ? null : /;h([0-9a-z]+)$/.exec(metadata);
  return match === null ? 0 : parseInt(match[1]!, 36);
}
