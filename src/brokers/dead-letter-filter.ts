/**
 * The dead-letter filter check every backend applies where a filter enters. A misspelt key must
 * fail, not match everything: a purge with `{ topc: 'x' }` would otherwise empty the store.
 */
import { BotqueueError, ErrorCodes } from '../core/errors.js';
import { validateOptions, type OptionSpec } from '../core/options.js';
import type { DeadLetterListOptions } from './broker.js';

const FILTER_SPEC: OptionSpec = {
  topic: { type: 'string' },
  group: { type: 'string' },
  key: { type: 'string' },
  errorContains: { type: 'string' },
};
const LIST_SPEC: OptionSpec = { ...FILTER_SPEC, limit: { type: 'integer', min: 0 }, afterDlqId: { type: 'integer', min: 0 } };

/** Checks a filter (`list` false) or list options (`list` true); returns it unchanged. */
export function checkDeadLetterFilter(where: string, input: unknown, list: boolean): DeadLetterListOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: the filter must be an object`, { details: { option: 'filter' } });
  }
  const { dlqIds, ...rest } = input as Record<string, unknown>;
  validateOptions(where, list ? LIST_SPEC : FILTER_SPEC, rest, {});
  if (dlqIds !== undefined && (!Array.isArray(dlqIds) || !dlqIds.every((id) => Number.isSafeInteger(id)))) {
    throw new BotqueueError(ErrorCodes.INVALID_OPTION, `${where}: option "dlqIds" must be an array of integers`, { details: { option: 'dlqIds' } });
  }
  return input;
}
