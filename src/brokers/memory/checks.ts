/**
 * Checks of what callers hand the broker. A misspelt dead-letter filter key must fail, not
 * match everything: a purge with `{ topc: 'x' }` would otherwise delete the whole store.
 */
import type { CoordinateRequest, DeadLetterFilter, DeadLetterListOptions, TopicSettings } from '../broker.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { validateOptions, type OptionSpec } from '../../core/options.js';

const FILTER_SPEC: OptionSpec = {
  topic: { type: 'string' },
  group: { type: 'string' },
  key: { type: 'string' },
  dlqIds: { type: 'object' },
  errorContains: { type: 'string' },
};

const LIST_SPEC: OptionSpec = { ...FILTER_SPEC, limit: { type: 'integer', min: 0 }, afterDlqId: { type: 'integer', min: 0 } };

const TOPIC_SPEC: OptionSpec = {
  partitions: { type: 'integer', min: 1, max: 65536 },
  dedupWindowMs: { type: 'number', min: 0 },
};

function invalid(message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, message, { details: { option } });
}

function checkFilterWith(where: string, spec: OptionSpec, input: unknown): DeadLetterListOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) throw invalid(`${where}: the filter must be an object`, 'filter');
  const { dlqIds, ...rest } = input as Record<string, unknown>;
  validateOptions(where, spec, rest, {});
  if (dlqIds !== undefined && (!Array.isArray(dlqIds) || !dlqIds.every((id) => Number.isInteger(id)))) {
    throw invalid(`${where}: option "dlqIds" must be an array of integers`, 'dlqIds');
  }
  return input;
}

export function checkFilter(where: string, input: unknown): DeadLetterFilter {
  return checkFilterWith(where, FILTER_SPEC, input);
}

export function checkListOptions(input: unknown): DeadLetterListOptions {
  return checkFilterWith('listDeadLetters', LIST_SPEC, input ?? {});
}

export function checkTopicSettings(topic: string, input: unknown): TopicSettings {
  const where = `topic "${topic}"`;
  const settings = validateOptions<Partial<TopicSettings>>(where, TOPIC_SPEC, input, {});
  if (settings.partitions === undefined) throw invalid(`${where}: option "partitions" is required`, 'partitions');
  if (settings.dedupWindowMs === undefined) throw invalid(`${where}: option "dedupWindowMs" is required`, 'dedupWindowMs');
  return { partitions: settings.partitions, dedupWindowMs: settings.dedupWindowMs };
}

export function checkPartition(where: string, partition: unknown, partitions: number): number {
  if (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0 || partition >= partitions) {
    throw invalid(`${where}: partition ${String(partition)} is outside 0-${partitions - 1}`, 'partition');
  }
  return partition;
}

export function checkCoordinate(request: CoordinateRequest, partitions: number): void {
  const where = `coordinate ${request.topic}/${request.group}`;
  if (typeof request.member !== 'string' || request.member.length === 0) throw invalid(`${where}: member must be a non-empty string`, 'member');
  if (typeof request.leaseMs !== 'number' || !Number.isFinite(request.leaseMs) || request.leaseMs <= 0) {
    throw invalid(`${where}: leaseMs must be a positive number, got ${String(request.leaseMs)}`, 'leaseMs');
  }
  for (const partition of [...request.acquire, ...request.release]) checkPartition(where, partition, partitions);
}
