/**
 * WhatsApp Cloud API notifications → botqueue messages. One POST may batch several entries,
 * changes, messages and statuses: each message and each status is its own botqueue message,
 * with payload `{ metadata, contacts?, message }` or `{ metadata, status }` (its element of the
 * POST plus the metadata of its change). Ids: `whatsapp:<wamid>` for a message,
 * `whatsapp:<wamid>:<status>` for a status (one wamid goes through sent, delivered, read).
 * Key `whatsapp:<phone number id>:<user>`. A change with neither (an account or template
 * notification) is stored whole, identified by its content.
 */
import { createHash } from 'node:crypto';
import { isObject } from './body.js';
import { idText, notAnUpdate, platformHeaders, type GatewayMessage } from './message.js';

function list(value: unknown): unknown[] {
  return Array.isArray(value) ? value : [];
}

export function whatsappMessages(parsed: unknown, options: { topic: string; receivedAt: number }): GatewayMessage[] {
  if (!isObject(parsed) || !Array.isArray(parsed.entry)) throw notAnUpdate('a WhatsApp notification is a JSON object with an entry array');
  const out: GatewayMessage[] = [];
  const add = (key: string, id: string, payload: unknown, phone: string | undefined, user: string | undefined): void => {
    out.push({ topic: options.topic, key, id, payload, headers: platformHeaders('whatsapp', options.receivedAt, { chat: user, bot: phone }) });
  };
  for (const entry of parsed.entry) {
    if (!isObject(entry)) throw notAnUpdate('each entry of a WhatsApp notification is an object');
    for (const change of list(entry.changes)) {
      if (!isObject(change)) throw notAnUpdate('each change of a WhatsApp entry is an object');
      const value = isObject(change.value) ? change.value : {};
      const metadata = isObject(value.metadata) ? value.metadata : undefined;
      const phone = metadata === undefined ? undefined : idText(metadata.phone_number_id);
      const messages = list(value.messages);
      const statuses = list(value.statuses);
      for (const message of messages) {
        const id = isObject(message) ? idText(message.id) : undefined;
        if (!isObject(message) || id === undefined) throw notAnUpdate('each WhatsApp message needs an id');
        const from = idText(message.from);
        add(`whatsapp:${phone ?? 'no-phone'}:${from ?? 'unknown'}`, `whatsapp:${id}`, { metadata, contacts: value.contacts, message }, phone, from);
      }
      for (const status of statuses) {
        const id = isObject(status) ? idText(status.id) : undefined;
        if (!isObject(status) || id === undefined) throw notAnUpdate('each WhatsApp status needs an id');
        const recipient = idText(status.recipient_id);
        const state = typeof status.status === 'string' ? status.status : 'unknown';
        add(`whatsapp:${phone ?? 'no-phone'}:${recipient ?? 'unknown'}`, `whatsapp:${id}:${state}`, { metadata, status }, phone, recipient);
      }
      if (messages.length === 0 && statuses.length === 0) {
        const digest = createHash('sha256').update(JSON.stringify(change)).digest('hex');
        add(`whatsapp:${phone ?? idText(entry.id) ?? 'no-phone'}`, `whatsapp:change:${digest}`, { entryId: entry.id, change }, phone, undefined);
      }
    }
  }
  return out;
}
