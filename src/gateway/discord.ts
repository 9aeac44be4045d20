/**
 * Discord interactions → botqueue messages: id `discord:<interaction id>`, key
 * `discord:<channel id>`. Discord does not redeliver an interaction, and its token is the only
 * way to answer, so it travels in the `bq-interaction-token` header (valid 15 min).
 * The route answers PING (type 1) itself and never stores it.
 */
import { isObject } from './body.js';
import { idText, notAnUpdate, platformHeaders, type GatewayMessage } from './message.js';

export const InteractionType = { PING: 1, APPLICATION_COMMAND: 2, MESSAGE_COMPONENT: 3, AUTOCOMPLETE: 4, MODAL_SUBMIT: 5 } as const;
export const CallbackType = { PONG: 1, CHANNEL_MESSAGE: 4, DEFERRED_CHANNEL_MESSAGE: 5, DEFERRED_UPDATE_MESSAGE: 6, AUTOCOMPLETE_RESULT: 8 } as const;
/** The message flag that shows a reply to the invoking user only. */
export const EPHEMERAL = 64;

export type DiscordRequest = { kind: 'ping' } | { kind: 'interaction'; type: number; message: GatewayMessage };

export function discordRequest(parsed: unknown, options: { topic: string; receivedAt: number }): DiscordRequest {
  if (!isObject(parsed) || typeof parsed.type !== 'number') throw notAnUpdate('a Discord interaction is a JSON object with a numeric type');
  if (parsed.type === InteractionType.PING) return { kind: 'ping' };
  const id = idText(parsed.id);
  const token = typeof parsed.token === 'string' && parsed.token !== '' && parsed.token.length <= 1000 ? parsed.token : undefined;
  if (id === undefined || token === undefined) throw notAnUpdate('a Discord interaction needs an id and a token');
  const channel = idText(parsed.channel_id) ?? (isObject(parsed.channel) ? idText(parsed.channel.id) : undefined);
  const user = isObject(parsed.member) && isObject(parsed.member.user) ? idText(parsed.member.user.id) : isObject(parsed.user) ? idText(parsed.user.id) : undefined;
  return {
    kind: 'interaction',
    type: parsed.type,
    message: {
      topic: options.topic,
      key: channel !== undefined ? `discord:${channel}` : `discord:user:${user ?? 'unknown'}`,
      id: `discord:${id}`,
      payload: parsed,
      headers: platformHeaders('discord', options.receivedAt, { chat: channel, bot: idText(parsed.application_id), interactionToken: token }),
    },
  };
}

/** The initial response once the interaction is stored: a loading state the handler edits later. */
export function deferredResponse(type: number): Record<string, unknown> {
  // A component's message is updated in place; a command or modal gets a "thinking..." reply.
  if (type === InteractionType.MESSAGE_COMPONENT) return { type: CallbackType.DEFERRED_UPDATE_MESSAGE };
  // Autocomplete needs its answer in this response; a queue cannot give one, so no choices.
  if (type === InteractionType.AUTOCOMPLETE) return { type: CallbackType.AUTOCOMPLETE_RESULT, data: { choices: [] } };
  return { type: CallbackType.DEFERRED_CHANNEL_MESSAGE };
}

/** The answer when the interaction could not be stored: Discord never retries, so the user is told. */
export const TRY_AGAIN_RESPONSE = {
  type: CallbackType.CHANNEL_MESSAGE,
  data: { content: 'Sorry, this could not be received right now. Please try again in a moment.', flags: EPHEMERAL },
} as const;
