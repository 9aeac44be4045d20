/**
 * Checks of what callers hand the broker that depend on its state (a partition inside the
 * stored topic). Topic settings, lease times and the like are checked once, by the client
 * against core/limits.ts, and the worker's options where they enter.
 */
import type { CoordinateRequest, DeadLetterFilter, DeadLetterListOptions } from '../broker.js';
import { BotqueueError, ErrorCodes } from '../../core/errors.js';
import { checkDeadLetterFilter } from '../dead-letter-filter.js';

function invalid(message: string, option: string): BotqueueError {
  return new BotqueueError(ErrorCodes.INVALID_OPTION, message, { details: { option } });
}

export function checkFilter(where: string, input: unknown): DeadLetterFilter {
  return checkDeadLetterFilter(where, input, false);
}

export function checkListOptions(input: unknown): DeadLetterListOptions {
  return checkDeadLetterFilter('listDeadLetters', input ?? {}, true);
}

export function checkPartition(where: string, partition: unknown, partitions: number): number {
  if (typeof partition !== 'number' || !Number.isInteger(partition) || partition < 0 || partition >= partitions) {
    throw invalid(`${where}: partition ${String(partition)} is outside 0-${partitions - 1}`, 'partition');
  }
  return partition;
}

export function checkCoordinate(request: CoordinateRequest, partitions: number): void {
  const where = `coordinate ${request.topic}/${request.group}`;
  for (const partition of [...request.acquire, ...request.release]) checkPartition(where, partition, partitions);
}
