import { BotqueueError, ErrorCodes } from './errors.js';

/**
 * Options are validated once, where they enter: an unknown key or a value of the wrong type
 * is an error that names it, never a silent default.
 */
export type FieldSpec =
  | { type: 'integer'; min?: number; max?: number }
  | { type: 'number'; min?: number; max?: number }
  | { type: 'string'; oneOf?: readonly string[]; nonEmpty?: boolean }
  | { type: 'boolean' }
  | { type: 'function' }
  | { type: 'object' };

export type OptionSpec = Record<string, FieldSpec>;

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.slice(0, 40))}`;
  if (typeof value === 'number') return `the number ${value}`;
  return `a ${typeof value}`;
}

function closest(name: string, candidates: string[]): string | undefined {
  const lower = name.toLowerCase();
  return candidates.find((c) => c.toLowerCase() === lower || c.toLowerCase().startsWith(lower.slice(0, 4)));
}

function invalid(where: string, message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: ${message}`, { details: { option } });
}

function checkField(where: string, name: string, spec: FieldSpec, value: unknown): void {
  switch (spec.type) {
    case 'integer':
    case 'number': {
      const ok = typeof value === 'number' && Number.isFinite(value) && (spec.type === 'number' || Number.isInteger(value));
      if (!ok) throw invalid(where, `option "${name}" must be ${spec.type === 'integer' ? 'an integer' : 'a finite number'}, got ${describe(value)}`, name);
      if (spec.min !== undefined && value < spec.min) throw invalid(where, `option "${name}" must be at least ${spec.min}, got ${value}`, name);
      if (spec.max !== undefined && value > spec.max) throw invalid(where, `option "${name}" must be at most ${spec.max}, got ${value}`, name);
      return;
    }
    case 'string':
      if (typeof value !== 'string') throw invalid(where, `option "${name}" must be a string, got ${describe(value)}`, name);
      if (spec.nonEmpty === true && value.length === 0) throw invalid(where, `option "${name}" must not be empty`, name);
      if (spec.oneOf !== undefined && !spec.oneOf.includes(value)) {
        throw invalid(where, `option "${name}" must be one of ${spec.oneOf.map((v) => `'${v}'`).join(', ')}, got ${describe(value)}`, name);
      }
      return;
    case 'boolean':
      if (typeof value !== 'boolean') throw invalid(where, `option "${name}" must be true or false, got ${describe(value)}`, name);
      return;
    case 'function':
      if (typeof value !== 'function') throw invalid(where, `option "${name}" must be a function, got ${describe(value)}`, name);
      return;
    case 'object':
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw invalid(where, `option "${name}" must be an object, got ${describe(value)}`, name);
      }
      return;
  }
}

/**
 * Checks `input` against `spec` and fills in `defaults`. Throws BOTQUEUE_INVALID_OPTION naming
 * the first unknown or mistyped option. `undefined` values count as absent.
 */
export function validateOptions<T extends object>(where: string, spec: OptionSpec, input: unknown, defaults: T): T {
  if (input === undefined || input === null) return { ...defaults };
  if (typeof input !== 'object' || Array.isArray(input)) {
    throw new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: options must be an object, got ${describe(input)}`);
  }
  const known = Object.keys(spec);
  const result: Record<string, unknown> = { ...(defaults as Record<string, unknown>) };
  for (const [name, value] of Object.entries(input)) {
    // Own keys only: inherited names such as `constructor` or `__proto__` are unknown options too.
    const field = Object.hasOwn(spec, name) ? spec[name] : undefined;
    if (field === undefined) {
      const hint = closest(name, known);
      throw invalid(where, `unknown option "${name}"${hint === undefined ? '' : ` (did you mean "${hint}"?)`}; known options: ${known.join(', ')}`, name);
    }
    if (value === undefined) continue;
    checkField(where, name, field, value);
    result[name] = value;
  }
  return result as T;
}
