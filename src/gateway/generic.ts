/**
 * Signed generic webhooks (`POST /webhooks/generic/:topic`) → one botqueue message whose payload
 * is the JSON body. Its id is derived from the signature, so the same signed request sent again
 * (a retry, or a replay inside the 5-minute window) is the same message; outside the window it
 * is refused as stale. The optional `X-Botqueue-Key` header sets the ordering key: it is not
 * signed, but it can only reorder a message the sender signed, never forge or repeat one.
 */
import { createHash } from 'node:crypto';
import { platformHeaders, type GatewayMessage } from './message.js';

export const GENERIC_KEY_HEADER = 'x-botqueue-key';

export function genericMessage(parsed: unknown, options: { topic: string; signature: string; key: string | undefined; receivedAt: number }): GatewayMessage {
  return {
    topic: options.topic,
    key: options.key,
    id: `generic:${createHash('sha256').update(options.signature.toLowerCase()).digest('hex').slice(0, 48)}`,
    payload: parsed,
    headers: platformHeaders('generic', options.receivedAt, {}),
  };
}
