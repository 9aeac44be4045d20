/**
 * basic.publish of a botqueue message, encoded here as one buffer and handed to amqplib's
 * channel buffer, instead of through `channel.publish`.
 *
 * Why: for every message, `channel.publish` builds an options object and an empty header table
 * that it then encodes, and it allocates four zero-filled buffers (method, properties, body
 * frame, and the one they are copied into). That was about half of the client's CPU per publish
 * (a CPU profile of `npm run bench:rabbitmq:cpu`). A botqueue message needs one property
 * (delivery-mode 2) and its body is a string, so its three frames are written straight into one
 * buffer: the method frame is the same for every message of a (channel, exchange, routing key)
 * and is copied from a cache, the header frame is fixed but for the body size, and the body is
 * UTF-8 encoded in place.
 *
 * The frame layout is AMQP 0-9-1's (section 4.2.6 of the specification). The hand-over uses
 * amqplib's internals (amqplib 2.3.1, pinned): the channel's number `ch`, its buffer in
 * `connection.channels`, `connection.frameMax`, `connection.sentSinceLastCheck` (heartbeats) and
 * `pushConfirmCallback` (a confirm channel's callback queue). `framePublisher` returns undefined
 * when any of them is not where expected, and the caller then uses `channel.publish`;
 * test/conformance/rabbitmq-connection.test.ts fails in that case so that someone notices, and
 * test/unit/rabbitmq-publish-frames.test.ts checks the bytes against amqplib's own encoders.
 */
import type { ConfirmChannel } from 'amqplib';

const FRAME_METHOD = 1;
const FRAME_HEADER = 2;
const FRAME_BODY = 3;
const FRAME_END = 0xce;
/** Frame type, channel, payload size. */
const FRAME_HEADER_BYTES = 7;
const FRAME_OVERHEAD = FRAME_HEADER_BYTES + 1;
const BASIC_CLASS = 60;
const BASIC_PUBLISH = 40;
/** Property flags: delivery-mode only. */
const DELIVERY_MODE_FLAG = 0x1000;
const PERSISTENT = 2;
/** Class, weight, body size, flags, delivery-mode. */
const HEADER_PAYLOAD_BYTES = 2 + 2 + 8 + 2 + 1;
const HEADER_FRAME_BYTES = FRAME_OVERHEAD + HEADER_PAYLOAD_BYTES;

/** The method frame of basic.publish to `exchange` with `routingKey` (not mandatory, not immediate). */
export function encodePublishMethod(channel: number, exchange: string, routingKey: string): Buffer {
  const exchangeBytes = Buffer.byteLength(exchange);
  const routingKeyBytes = Buffer.byteLength(routingKey);
  if (exchangeBytes > 255) throw new TypeError(`exchange name of ${exchangeBytes} bytes: AMQP allows 255`);
  if (routingKeyBytes > 255) throw new TypeError(`routing key of ${routingKeyBytes} bytes: AMQP allows 255`);
  // class, method, ticket, exchange (length + bytes), routing key (length + bytes), bits
  const size = 2 + 2 + 2 + 1 + exchangeBytes + 1 + routingKeyBytes + 1;
  const frame = Buffer.alloc(FRAME_OVERHEAD + size);
  frame[0] = FRAME_METHOD;
  frame.writeUInt16BE(channel, 1);
  frame.writeUInt32BE(size, 3);
  frame.writeUInt16BE(BASIC_CLASS, 7);
  frame.writeUInt16BE(BASIC_PUBLISH, 9);
  // ticket (11-12) stays 0
  let at = 13;
  frame[at++] = exchangeBytes;
  at += frame.write(exchange, at, 'utf8');
  frame[at++] = routingKeyBytes;
  at += frame.write(routingKey, at, 'utf8');
  frame[at++] = 0; // mandatory, immediate: both off
  frame[at] = FRAME_END;
  return frame;
}

/**
 * The method, header and body frames of one persistent message with this body, in one buffer.
 * A body larger than a frame allows (frameMax) is split over several body frames.
 */
export function encodePublishFrames(channel: number, frameMax: number, method: Buffer, body: string): Buffer {
  const bodyBytes = Buffer.byteLength(body);
  const maxBody = frameMax - FRAME_OVERHEAD;
  if (!(maxBody > 0)) throw new Error(`frameMax ${frameMax} leaves no room for a body frame`);
  const bodyFrames = Math.ceil(bodyBytes / maxBody);
  const out = Buffer.allocUnsafe(method.length + HEADER_FRAME_BYTES + bodyFrames * FRAME_OVERHEAD + bodyBytes);
  let at = method.copy(out, 0);
  out[at] = FRAME_HEADER;
  out.writeUInt16BE(channel, at + 1);
  out.writeUInt32BE(HEADER_PAYLOAD_BYTES, at + 3);
  out.writeUInt16BE(BASIC_CLASS, at + 7);
  out.writeUInt16BE(0, at + 9); // weight
  // Body size as a 64-bit integer: the high half is 0 below 4 GiB.
  out.writeUInt32BE(Math.floor(bodyBytes / 0x1_0000_0000), at + 11);
  out.writeUInt32BE(bodyBytes >>> 0, at + 15);
  out.writeUInt16BE(DELIVERY_MODE_FLAG, at + 19);
  out[at + 21] = PERSISTENT;
  out[at + 22] = FRAME_END;
  at += HEADER_FRAME_BYTES;
  if (bodyFrames === 1) {
    at = writeBodyFrameHeader(out, at, channel, bodyBytes);
    at += out.write(body, at, 'utf8');
    out[at] = FRAME_END;
    return out;
  }
  const bytes = Buffer.from(body, 'utf8');
  for (let offset = 0; offset < bytes.length; offset += maxBody) {
    const length = Math.min(maxBody, bytes.length - offset);
    at = writeBodyFrameHeader(out, at, channel, length);
    at += bytes.copy(out, at, offset, offset + length);
    out[at++] = FRAME_END;
  }
  return out;
}

function writeBodyFrameHeader(out: Buffer, at: number, channel: number, length: number): number {
  out[at] = FRAME_BODY;
  out.writeUInt16BE(channel, at + 1);
  out.writeUInt32BE(length, at + 3);
  return at + FRAME_HEADER_BYTES;
}

const MAX_CACHED_METHODS = 4_096;

/** What of amqplib's internals the frame publisher uses. */
interface ChannelInternals {
  ch?: unknown;
  sendMessage?: unknown;
  pushConfirmCallback?: unknown;
  connection?: {
    channels?: Array<{ channel: unknown; buffer: { write(chunk: Buffer): boolean } } | null | undefined>;
    frameMax?: unknown;
    sentSinceLastCheck?: boolean;
  };
}

export interface FramePublisher {
  /**
   * Publishes one persistent message with this body; `onConfirm` gets null when RabbitMQ
   * confirmed it, an error otherwise (as amqplib's confirm callbacks). Returns false when the
   * channel's buffer is full (wait for the channel's 'drain'). Throws when the channel is closed.
   */
  publish(exchange: string, routingKey: string, body: string, onConfirm: (error: unknown) => void): boolean;
}

/** A frame publisher for this confirm channel, or undefined when amqplib's internals are not as expected. */
export function framePublisher(channel: ConfirmChannel): FramePublisher | undefined {
  const internals = channel as unknown as ChannelInternals;
  const connection = internals.connection;
  const number = internals.ch;
  const pushConfirm = internals.pushConfirmCallback;
  const openSendMessage = internals.sendMessage;
  if (typeof number !== 'number' || typeof pushConfirm !== 'function' || typeof openSendMessage !== 'function') return undefined;
  if (connection === undefined || !Array.isArray(connection.channels) || typeof connection.frameMax !== 'number') return undefined;
  const entry = connection.channels[number];
  if (entry?.channel !== channel || typeof entry.buffer?.write !== 'function') return undefined;
  const buffer = entry.buffer;
  const frameMax = connection.frameMax;
  const methods = new Map<string, Map<string, Buffer>>();
  let cachedMethods = 0;
  return {
    publish(exchange, routingKey, body, onConfirm) {
      // amqplib replaces a closed channel's sendMessage with one that throws "Channel closed":
      // call it to fail exactly as channel.publish would.
      if (internals.sendMessage !== openSendMessage) {
        (internals.sendMessage as () => void)();
        throw new Error('Channel closed');
      }
      if (connection.channels![number]?.channel !== channel) throw new Error('Channel closed');
      // By exchange, then routing key: no key string to build per message.
      let byRoutingKey = methods.get(exchange);
      let method = byRoutingKey?.get(routingKey);
      if (method === undefined) {
        method = encodePublishMethod(number, exchange, routingKey);
        // Topics x partitions, plus queues a redrive publishes to: bounded, but not by us.
        if (++cachedMethods > MAX_CACHED_METHODS) {
          methods.clear();
          cachedMethods = 1;
          byRoutingKey = undefined;
        }
        if (byRoutingKey === undefined) {
          byRoutingKey = new Map();
          methods.set(exchange, byRoutingKey);
        }
        byRoutingKey.set(routingKey, method);
      }
      const frames = encodePublishFrames(number, frameMax, method, body);
      const writable = buffer.write(frames);
      connection.sentSinceLastCheck = true;
      (pushConfirm as (cb: (error: unknown) => void) => void).call(channel, onConfirm);
      return writable;
    },
  };
}
