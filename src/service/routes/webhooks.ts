/**
 * Platform webhooks in: `POST /webhooks/telegram[/:bot]`, `/webhooks/slack`, `/webhooks/discord`,
 * `GET|POST /webhooks/whatsapp`, `POST /webhooks/generic/:topic`; each mounted only when its
 * secret is configured (otherwise 404). Every request is verified on its raw bytes before it
 * is parsed, then stored, and only then acknowledged:
 * - refused input answers 4xx, stores nothing and is counted by platform and reason;
 * - storage failing answers 503 (a full backlog 429), with Retry-After, so Telegram, Slack and
 *   WhatsApp retry later; Discord, which never retries an interaction, gets an ephemeral
 *   "try again" message instead of a 5xx.
 * The routes live in their own Fastify scope: their content-type parser keeps the body as a
 * Buffer, without touching the JSON parser of the publish route.
 */
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Botqueue } from '../../client.js';
import { checkName } from '../../core/envelope.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { BodyError, isObject, mediaType, parseFormBody, parseJsonBody } from '../../gateway/body.js';
import type { WebhooksConfig } from '../../gateway/config.js';
import { deferredResponse, discordRequest, TRY_AGAIN_RESPONSE } from '../../gateway/discord.js';
import { GENERIC_KEY_HEADER, genericMessage } from '../../gateway/generic.js';
import type { GatewayMessage, Platform } from '../../gateway/message.js';
import type { RejectionReason, WebhookRejections } from '../../gateway/rejections.js';
import { recordWebhook, type WebhookOutcome } from '../../observability/metrics.js';
import { slackFormPayload, slackRequest } from '../../gateway/slack.js';
import { DEFAULT_TELEGRAM_BOT, TELEGRAM_BOT_NAME, telegramMessage } from '../../gateway/telegram.js';
import { checkDiscord, checkGeneric, checkSlack, checkTelegram, checkWhatsApp, ed25519PublicKey, safeEqual, type SignatureFailure } from '../../gateway/verify.js';
import { whatsappMessages } from '../../gateway/whatsapp.js';
import type { BacklogGate } from '../backlog.js';
import type { HttpConfig, TopicConfig } from '../config.js';
import { HttpErrorCodes, RETRY_AFTER_BACKLOG_S, RETRY_AFTER_UNAVAILABLE_S } from '../http-errors.js';
import { STATUS_CODES } from 'node:http';

export interface WebhookRouteOptions {
  bq: Botqueue;
  webhooks: WebhooksConfig;
  gate: BacklogGate;
  rejections: WebhookRejections;
  http: HttpConfig;
  topics: Readonly<Record<string, TopicConfig>>;
  /** Epoch ms; tests move it to check the timestamp windows. Default Date.now. */
  now?: () => number;
}

/** A refusal: what to answer, and the reason it is counted under. */
class Refusal extends Error {
  constructor(
    readonly statusCode: number,
    readonly reason: RejectionReason,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const SIGNATURE_CODE = ErrorCodes.WEBHOOK_SIGNATURE_INVALID;

function header(request: FastifyRequest, name: string): string | undefined {
  const value = request.headers[name];
  // A header sent twice is never a valid signature.
  return Array.isArray(value) ? '' : value;
}

function rawBody(request: FastifyRequest): Buffer {
  return Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
}

/** `headers`: what must be sent; `mismatch`: what a wrong one means, naming the setting to check. */
function signatureRefusal(failure: SignatureFailure, headers: string, mismatch: string): Refusal {
  const message =
    failure === 'stale_timestamp'
      ? `the request's timestamp is more than 5 minutes from this server's clock (a replay, or a clock to fix); nothing was stored`
      : failure === 'missing_signature'
        ? `the request carries no ${headers}; nothing was stored`
        : `${mismatch}; nothing was stored`;
  return new Refusal(401, failure, SIGNATURE_CODE, message);
}

function requireMediaType(request: FastifyRequest, allowed: readonly string[]): string {
  const type = mediaType(request.headers['content-type']);
  if (!allowed.includes(type)) {
    throw new Refusal(415, 'unsupported_media_type', 'FST_ERR_CTP_INVALID_MEDIA_TYPE', `unsupported content-type ${JSON.stringify(type)}; send ${allowed.join(' or ')}`);
  }
  return type;
}

function parse(body: Buffer): unknown {
  try {
    return parseJsonBody(body);
  } catch (error) {
    throw asRefusal(error);
  }
}

function asRefusal(error: unknown): unknown {
  return error instanceof BodyError ? new Refusal(400, error.reason, HttpErrorCodes.INVALID_BODY, error.message) : error;
}

/** The metrics outcome of a refused request: a platform's retry, a forgery or bad input. */
function outcomeOf(refusal: Refusal): WebhookOutcome {
  if (refusal.statusCode >= 500 || refusal.reason === 'backlog_full') return 'unavailable';
  if (refusal.statusCode === 401 || refusal.statusCode === 403) return 'unauthorized';
  return 'rejected';
}

export function registerWebhookRoutes(app: FastifyInstance, options: WebhookRouteOptions): void {
  const { bq, webhooks, gate, rejections, http, topics } = options;
  const now = options.now ?? Date.now;
  const nowS = (): number => Math.floor(now() / 1000);
  if (!webhooks.telegram && !webhooks.slack && !webhooks.discord && !webhooks.whatsapp && !webhooks.generic) return;

  /** Stores the messages of one request (all or nothing); throws a Refusal when it cannot. */
  const store = async (messages: GatewayMessage[]): Promise<void> => {
    if (messages.length === 0) return;
    const topic = messages[0]!.topic;
    const over = await gate.over(topic);
    if (over !== undefined) {
      throw new Refusal(429, 'backlog_full', HttpErrorCodes.BACKLOG_FULL, `topic "${topic}" is at its maxBacklog; nothing was stored, try again later`, {
        'retry-after': String(RETRY_AFTER_BACKLOG_S),
      });
    }
    try {
      const receipts = await bq.publishBatch(
        topic,
        messages.map((m) => (m.key === undefined ? { id: m.id, payload: m.payload, headers: m.headers } : { key: m.key, id: m.id, payload: m.payload, headers: m.headers })),
      );
      const stored = receipts.filter((r) => !r.duplicate).length;
      gate.accepted(topic, stored);
      recordWebhook(messages[0]!.headers['bq-platform'] ?? 'generic', stored === 0 ? 'duplicate' : 'accepted');
    } catch (error) {
      if (error instanceof BotqueueError && error.code === ErrorCodes.MESSAGE_TOO_LARGE) {
        throw new Refusal(413, 'message_too_large', error.code, 'the update is over maxMessageBytes once stored; raise maxMessageBytes in the config to accept it');
      }
      throw new Refusal(503, 'storage_failed', error instanceof BotqueueError ? error.code : HttpErrorCodes.INTERNAL, 'the update could not be stored; nothing was stored, try again', {
        'retry-after': String(RETRY_AFTER_UNAVAILABLE_S),
      });
    }
  };

  const refuse = (reply: FastifyReply, platform: Platform, refusal: Refusal): FastifyReply => {
    rejections.add(platform, refusal.reason);
    recordWebhook(platform, outcomeOf(refusal));
    if (refusal.statusCode >= 500) reply.log.warn({ 'botqueue.platform': platform, 'event.reason': refusal.reason }, 'webhook update not stored');
    else reply.log.debug({ 'botqueue.platform': platform, 'event.reason': refusal.reason, 'http.response.status_code': refusal.statusCode }, 'webhook request refused');
    // Discord never retries an interaction: a 5xx (or a 429) would only show the user a failure without a word.
    if (platform === 'discord' && (refusal.statusCode >= 500 || refusal.reason === 'backlog_full')) return reply.code(200).send(TRY_AGAIN_RESPONSE);
    return reply
      .code(refusal.statusCode)
      .headers(refusal.headers)
      .send({ statusCode: refusal.statusCode, error: STATUS_CODES[refusal.statusCode] ?? 'Error', code: refusal.code, message: refusal.message });
  };

  /** Runs a platform's handler; any Refusal (or unexpected error) becomes its counted answer. */
  const handle =
    <R extends FastifyRequest>(platform: Platform, run: (request: R, reply: FastifyReply, receivedAt: number) => Promise<FastifyReply>) =>
    async (request: R, reply: FastifyReply): Promise<FastifyReply> => {
      const receivedAt = now();
      try {
        return await run(request, reply, receivedAt);
      } catch (error) {
        const refusal = asRefusal(error);
        if (refusal instanceof Refusal) return refuse(reply, platform, refusal);
        request.log.error({ error, 'botqueue.platform': platform }, 'webhook request failed');
        return refuse(reply, platform, new Refusal(503, 'storage_failed', HttpErrorCodes.INTERNAL, 'internal error; nothing was stored, try again', { 'retry-after': String(RETRY_AFTER_UNAVAILABLE_S) }));
      }
    };

  void app.register((scope, _opts, done) => {
    // The body stays the bytes that were signed; each route parses it after the check.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, next) => next(null, body));
    scope.setErrorHandler((error: FastifyError, request, reply) => {
      const platform = (request.routeOptions.config as { platform?: Platform }).platform ?? 'generic';
      const status = typeof error.statusCode === 'number' ? error.statusCode : 500;
      if (status === 413) return refuse(reply, platform, new Refusal(413, 'too_large', error.code, `the body is over the limit of ${webhooks.bodyLimitBytes} bytes (webhooks.bodyLimitBytes)`));
      if (status === 415) return refuse(reply, platform, new Refusal(415, 'unsupported_media_type', error.code, 'unsupported content-type'));
      if (status >= 400 && status < 500) return refuse(reply, platform, new Refusal(status, 'malformed_body', error.code, 'the request could not be read'));
      request.log.error({ error, 'botqueue.platform': platform }, 'webhook request failed');
      return refuse(reply, platform, new Refusal(503, 'storage_failed', HttpErrorCodes.INTERNAL, 'internal error; nothing was stored, try again', { 'retry-after': String(RETRY_AFTER_UNAVAILABLE_S) }));
    });
    const route = (platform: Platform) => ({ bodyLimit: webhooks.bodyLimitBytes, config: { platform } });

    const telegram = webhooks.telegram;
    if (telegram) {
      const onUpdate = handle<FastifyRequest<{ Params: { bot?: string } }>>('telegram', async (request, reply, receivedAt) => {
        const failure = checkTelegram(header(request, 'x-telegram-bot-api-secret-token'), telegram.secretToken);
        if (failure) throw signatureRefusal(failure, 'X-Telegram-Bot-Api-Secret-Token header', 'the X-Telegram-Bot-Api-Secret-Token header is not TELEGRAM_SECRET_TOKEN (the secret_token given to setWebhook)');
        const bot = request.params.bot ?? DEFAULT_TELEGRAM_BOT;
        if (!TELEGRAM_BOT_NAME.test(bot)) throw new Refusal(400, 'not_an_update', HttpErrorCodes.INVALID_BODY, 'the bot name in /webhooks/telegram/:bot must be 1-64 characters of A-Z, a-z, 0-9, _ and -');
        requireMediaType(request, ['application/json']);
        await store([telegramMessage(parse(rawBody(request)), { bot, topic: telegram.topic, receivedAt })]);
        // No `method` in the answer: Telegram would run it as an API call.
        return reply.code(200).send({ ok: true });
      });
      scope.post('/webhooks/telegram', route('telegram'), onUpdate);
      scope.post('/webhooks/telegram/:bot', route('telegram'), onUpdate);
    }

    const slack = webhooks.slack;
    if (slack) {
      scope.post(
        '/webhooks/slack',
        route('slack'),
        handle('slack', async (request, reply, receivedAt) => {
          const body = rawBody(request);
          const failure = checkSlack(header(request, 'x-slack-signature'), header(request, 'x-slack-request-timestamp'), body, slack.signingSecret, nowS());
          if (failure) throw signatureRefusal(failure, 'X-Slack-Signature and X-Slack-Request-Timestamp headers', 'X-Slack-Signature is not the v0 HMAC of the timestamp and body with SLACK_SIGNING_SECRET');
          const type = requireMediaType(request, ['application/json', 'application/x-www-form-urlencoded']);
          let parsed: unknown;
          try {
            parsed = type === 'application/json' ? parseJsonBody(body) : slackFormPayload(parseFormBody(body));
          } catch (error) {
            throw asRefusal(error);
          }
          if (!isObject(parsed)) throw new Refusal(400, 'not_an_update', HttpErrorCodes.INVALID_BODY, 'a Slack request body is a JSON object or form fields');
          const answer = slackRequest(parsed, body, { topic: slack.topic, receivedAt });
          if (answer.kind === 'url_verification') return reply.code(200).send({ challenge: answer.challenge });
          if (answer.kind === 'ssl_check') return reply.code(200).send();
          await store([answer.message]);
          return reply.code(200).send();
        }),
      );
    }

    const discord = webhooks.discord;
    if (discord) {
      const key = ed25519PublicKey(discord.publicKey);
      scope.post(
        '/webhooks/discord',
        route('discord'),
        handle('discord', async (request, reply, receivedAt) => {
          const body = rawBody(request);
          // Discord probes with bad signatures and removes an endpoint that accepts one: 401 always.
          const failure = checkDiscord(header(request, 'x-signature-ed25519'), header(request, 'x-signature-timestamp'), body, key, nowS());
          if (failure) throw signatureRefusal(failure, 'X-Signature-Ed25519 and X-Signature-Timestamp headers', 'X-Signature-Ed25519 is not a signature of the timestamp and body by DISCORD_PUBLIC_KEY');
          requireMediaType(request, ['application/json']);
          const answer = discordRequest(parse(body), { topic: discord.topic, receivedAt });
          if (answer.kind === 'ping') return reply.code(200).send({ type: 1 });
          await store([answer.message]);
          return reply.code(200).send(deferredResponse(answer.type));
        }),
      );
    }

    const whatsapp = webhooks.whatsapp;
    if (whatsapp) {
      const verifyToken = whatsapp.verifyToken;
      if (verifyToken !== undefined) {
        scope.get(
          '/webhooks/whatsapp',
          route('whatsapp'),
          handle<FastifyRequest<{ Querystring: Record<string, unknown> }>>('whatsapp', async (request, reply) => {
            const query = request.query;
            const mode = query['hub.mode'];
            const token = query['hub.verify_token'];
            const challenge = query['hub.challenge'];
            if (mode !== 'subscribe' || typeof token !== 'string' || !safeEqual(token, verifyToken)) {
              throw new Refusal(403, 'bad_verify_token', ErrorCodes.WEBHOOK_VERIFY_TOKEN_INVALID, 'hub.mode must be subscribe and hub.verify_token must equal WHATSAPP_VERIFY_TOKEN');
            }
            if (typeof challenge !== 'string' || !/^[\w.~-]{1,256}$/.test(challenge)) {
              throw new Refusal(400, 'malformed_body', HttpErrorCodes.INVALID_QUERY, 'hub.challenge must be 1-256 letters, digits, ".", "_", "~" or "-"');
            }
            return reply.code(200).type('text/plain').send(challenge);
          }),
        );
      }
      scope.post(
        '/webhooks/whatsapp',
        route('whatsapp'),
        handle('whatsapp', async (request, reply, receivedAt) => {
          const body = rawBody(request);
          const failure = checkWhatsApp(header(request, 'x-hub-signature-256'), body, whatsapp.appSecret);
          if (failure) throw signatureRefusal(failure, 'X-Hub-Signature-256 header', 'X-Hub-Signature-256 is not the HMAC of the body with WHATSAPP_APP_SECRET');
          requireMediaType(request, ['application/json']);
          await store(whatsappMessages(parse(body), { topic: whatsapp.topic, receivedAt }));
          return reply.code(200).send();
        }),
      );
    }

    const generic = webhooks.generic;
    if (generic) {
      scope.post(
        '/webhooks/generic/:topic',
        route('generic'),
        handle<FastifyRequest<{ Params: { topic: string } }>>('generic', async (request, reply, receivedAt) => {
          const body = rawBody(request);
          const signature = header(request, 'x-botqueue-signature');
          const failure = checkGeneric(signature, header(request, 'x-botqueue-timestamp'), body, generic.secret, nowS());
          if (failure) throw signatureRefusal(failure, 'X-Botqueue-Signature and X-Botqueue-Timestamp headers', 'X-Botqueue-Signature is not sha256=<HMAC of "<timestamp>.<body>" with BOTQUEUE_WEBHOOK_SECRET>');
          const topic = request.params.topic;
          try {
            checkName('topic', topic);
          } catch (error) {
            throw new Refusal(400, 'not_an_update', ErrorCodes.INVALID_OPTION, (error as Error).message);
          }
          if (!http.allowUndeclaredTopics && !Object.hasOwn(topics, topic)) {
            throw new Refusal(404, 'not_an_update', HttpErrorCodes.TOPIC_NOT_DECLARED, `topic "${topic}" is not declared in the config (http.allowUndeclaredTopics is false)`);
          }
          requireMediaType(request, ['application/json']);
          const keyHeader = header(request, GENERIC_KEY_HEADER);
          const key = keyHeader === undefined || keyHeader === '' ? undefined : keyHeader.slice(0, 512);
          await store([genericMessage(parse(body), { topic, signature: signature!, key, receivedAt })]);
          return reply.code(202).send({ ok: true });
        }),
      );
    }
    done();
  });
}
