/**
 * Checks of what callers hand the broker.
 */
import type { CoordinateRequest, DeadLetterFilter, DeadLetterListOptions, TopicSettings } from '../broker.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { validateOptions, type OptionSpec } from '../../core/options.js';
import { checkDeadLetterFilter } from '../dead-letter-filter.js';

const TOPIC_SPEC: OptionSpec = {
  partitions: { type: 'integer', min: 1, max: 65536 },
  dedupWindowMs: { type: 'number', min: 0 },
};

function invalid(message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, message, { details: { option } });
}

export function checkFilter(where: string, input: unknown): DeadLetterFilter {
  return checkDeadLetterFilter(where, input, false);
}

export function checkListOptions(input: unknown): DeadLetterListOptions {
  return checkDeadLetterFilter('listDeadLetters', input ?? {}, true);
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
