/**
 * Reading a verified webhook body: JSON or form-encoded, with the limits a public endpoint
 * needs. Nesting is measured on the bytes before parsing, and keys that could reach an
 * object's prototype when a handler merges the payload (`__proto__`, `constructor`,
 * `prototype`) are refused rather than silently dropped, so what is stored is the body as sent.
 */

/** Deepest nesting of objects and arrays accepted; platform updates stay far below it. */
export const MAX_JSON_DEPTH = 64;

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

/** `not_an_update`: valid JSON that is not the platform's update shape (no `update_id`, no `entry`...). */
export type BodyFailure = 'malformed_body' | 'too_deep' | 'forbidden_key' | 'not_an_update';

export class BodyError extends Error {
  constructor(
    readonly reason: BodyFailure,
    message: string,
  ) {
    super(message);
    this.name = 'BodyError';
  }
}

/** The depth of the deepest `{`/`[` outside strings; stops counting once over `max`. */
export function jsonDepth(bytes: Buffer, max: number): number {
  let depth = 0;
  let deepest = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth > deepest) {
        deepest = depth;
        if (deepest > max) return deepest;
      }
    } else if (c === 0x7d || c === 0x5d) depth--;
  }
  return deepest;
}

/** Throws BodyError when a key anywhere is forbidden. The depth is already bounded, so recursion is safe. */
function checkKeys(value: unknown): void {
  if (typeof value !== 'object' || value === null) return;
  if (Array.isArray(value)) {
    for (const item of value) checkKeys(item);
    return;
  }
  for (const key of Object.keys(value)) {
    if (FORBIDDEN_KEYS.has(key)) throw new BodyError('forbidden_key', `the body holds the key "${key}", which is refused (it could reach an object's prototype)`);
    checkKeys((value as Record<string, unknown>)[key]);
  }
}

/** Parses a JSON body within the limits; throws BodyError. */
export function parseJsonBody(bytes: Buffer): unknown {
  if (jsonDepth(bytes, MAX_JSON_DEPTH) > MAX_JSON_DEPTH) throw new BodyError('too_deep', `the body nests objects or arrays deeper than ${MAX_JSON_DEPTH} levels`);
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new BodyError('malformed_body', 'the body is not valid JSON');
  }
  checkKeys(value);
  return value;
}

/** A form-encoded body as an object of strings (a repeated field keeps its last value). */
export function parseFormBody(bytes: Buffer): Record<string, string> {
  const fields: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [name, value] of new URLSearchParams(bytes.toString('utf8'))) {
    if (FORBIDDEN_KEYS.has(name)) throw new BodyError('forbidden_key', `the body holds the field "${name}", which is refused`);
    fields[name] = value;
  }
  return { ...fields };
}

/** `application/json; charset=utf-8` → `application/json`. */
export function mediaType(header: string | undefined): string {
  return (header ?? '').split(';')[0]!.trim().toLowerCase();
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
