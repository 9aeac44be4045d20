/**
 * One HTTP call to a platform API, with a timeout, read into status, headers and body text.
 * A network failure or timeout becomes an `unavailable` outcome (retried), never a throw, and
 * its detail never includes the URL (Telegram's holds the bot token).
 */
import type { SendOutcome } from './platform-client.js';

export interface ApiAnswer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

/** A platform call that takes longer is abandoned and retried. */
export const CALL_TIMEOUT_MS = 15_000;

/** Bodies quoted in dead letters are cut here. */
export const MAX_QUOTED_BODY = 2_000;

export async function callApi(url: string, init: { method?: string; headers?: Record<string, string>; body?: unknown }, signal: AbortSignal): Promise<ApiAnswer | Extract<SendOutcome, { kind: 'unavailable' }>> {
  try {
    const response = await fetch(url, {
      method: init.method ?? 'POST',
      headers: { 'content-type': 'application/json', ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
      signal: AbortSignal.any([signal, AbortSignal.timeout(CALL_TIMEOUT_MS)]),
    });
    const text = await response.text();
    let json: unknown;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, headers: response.headers, text, json };
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown } }).cause;
    const detail = (error as Error).name === 'TimeoutError' ? `no answer within ${CALL_TIMEOUT_MS} ms` : `${(error as Error).name}${typeof cause?.code === 'string' ? ` ${cause.code}` : ''}`;
    return { kind: 'unavailable', detail };
  }
}

export function isAnswer(value: ApiAnswer | SendOutcome): value is ApiAnswer {
  return !('kind' in value);
}

/** Seconds (a number or a numeric string) as ms; undefined when absent or not a number. */
export function secondsToMs(value: unknown): number | undefined {
  const seconds = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : NaN;
  return Number.isFinite(seconds) && seconds >= 0 ? Math.ceil(seconds * 1_000) : undefined;
}

/** The common reading of an answer: 2xx sent, 5xx unavailable, other 4xx rejected (429 is read by each platform first). */
export function classify(answer: ApiAnswer, result?: unknown): SendOutcome {
  if (answer.status >= 200 && answer.status < 300) return { kind: 'sent', status: answer.status, result };
  if (answer.status >= 500) return { kind: 'unavailable', status: answer.status, detail: answer.text.slice(0, 200) };
  return { kind: 'rejected', status: answer.status, body: answer.text.slice(0, MAX_QUOTED_BODY) };
}
