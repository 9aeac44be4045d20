/**
 * Slack requests → botqueue messages. Events API callbacks arrive as JSON (id `slack:<event_id>`);
 * slash commands form-encoded, and interactivity form-encoded with one `payload` field holding
 * JSON (id `slack:<trigger_id>`, unique per invocation). Key `slack:<team>:<channel>`.
 * `url_verification` is answered by the route (after the signature check), never stored.
 */
import { createHash } from 'node:crypto';
import { isObject, parseJsonBody } from './body.js';
import { notAnUpdate, platformHeaders, type GatewayMessage } from './message.js';

export type SlackRequest = { kind: 'url_verification'; challenge: string } | { kind: 'ssl_check' } | { kind: 'message'; message: GatewayMessage };

function text(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' && value.length <= 200 ? value : undefined;
}

/** The channel of an event: `channel` (a string, or an object with an id), `item.channel`, `channel_id`. */
function channelOf(object: Record<string, unknown>): string | undefined {
  if (isObject(object.channel)) return text(object.channel.id);
  return text(object.channel) ?? (isObject(object.item) ? text(object.item.channel) : undefined) ?? text(object.channel_id) ?? (isObject(object.container) ? text(object.container.channel_id) : undefined);
}

function teamOf(object: Record<string, unknown>): string | undefined {
  if (isObject(object.team)) return text(object.team.id);
  return text(object.team_id) ?? text(object.context_team_id) ?? text(object.enterprise_id) ?? (isObject(object.enterprise) ? text(object.enterprise.id) : undefined);
}

/** A body that carries no id of its own is identified by its bytes: a retry sends the same ones. */
function bodyDigest(body: Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

export function slackRequest(parsed: Record<string, unknown>, rawBody: Buffer, options: { topic: string; receivedAt: number }): SlackRequest {
  if (parsed.type === 'url_verification') {
    const challenge = text(parsed.challenge);
    if (challenge === undefined) throw notAnUpdate('a url_verification request needs a challenge string');
    return { kind: 'url_verification', challenge };
  }
  // Slack checking a slash command's certificate: answered 200, nothing to store.
  if (parsed.ssl_check === '1') return { kind: 'ssl_check' };
  // Events API: the event is inside; slash commands and interactivity have the fields at the top.
  const event = isObject(parsed.event) ? parsed.event : parsed;
  const team = teamOf(parsed) ?? teamOf(event);
  const channel = channelOf(event) ?? channelOf(parsed);
  const eventId = text(parsed.event_id);
  const id = eventId ?? text(parsed.trigger_id) ?? `body:${bodyDigest(rawBody)}`;
  if (parsed.type === 'event_callback' && eventId === undefined) throw notAnUpdate('a Slack event_callback needs an event_id');
  if (team === undefined && channel === undefined && eventId === undefined && text(parsed.trigger_id) === undefined && text(parsed.type) === undefined) {
    throw notAnUpdate('not a Slack event, command or interaction (no team, channel, event_id, trigger_id or type)');
  }
  const thread = text(event.thread_ts) ?? text(event.ts) ?? (isObject(parsed.message) ? text(parsed.message.thread_ts) ?? text(parsed.message.ts) : undefined);
  return {
    kind: 'message',
    message: {
      topic: options.topic,
      key: `slack:${team ?? 'no-team'}:${channel ?? 'no-channel'}`,
      id: `slack:${id}`,
      payload: parsed,
      headers: platformHeaders('slack', options.receivedAt, { chat: channel, bot: team, thread }),
    },
  };
}

/**
 * The payload of a form-encoded request: interactivity sends `payload=<JSON>` (what Bolt hands
 * to a listener as `body`); a slash command's fields are the payload themselves.
 */
export function slackFormPayload(fields: Record<string, string>): Record<string, unknown> {
  if (Object.keys(fields).length === 1 && fields.payload !== undefined) {
    const inner = parseJsonBody(Buffer.from(fields.payload, 'utf8'));
    if (!isObject(inner)) throw notAnUpdate('the payload field of a Slack interaction must be a JSON object');
    return inner;
  }
  return fields;
}


