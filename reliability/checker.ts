/**
 * The checker of the reliability suite: a pure function from what the load generator was told
 * (the ledger) and what the handlers did (their own effect store) to the numbers the contract
 * promises. Modelled on Jepsen's total-queue checker: every acknowledged message must come out
 * (as an effect, or as a dead letter when it was poison), nothing may come out that was never
 * sent, no effect may happen twice, and each key's messages must first run in publish order.
 */

/** One publish as the load generator saw it. */
export interface LedgerEntry {
  id: string;
  key: string;
  /** The message's place in its key's sequence (0, 1, 2...), in publish order. */
  seq: number;
  /** ok: acknowledged (202 / publish resolved); failed: refused for sure (4xx/503); unknown: no answer. */
  outcome: 'ok' | 'failed' | 'unknown';
  /** Injected poison: must end in the dead-letter queue after exactly maxAttempts tries. */
  poison?: boolean;
  /** When the acknowledgement arrived (ms), for latency. */
  ackedAt?: number;
}

/** One handler invocation, in the order the effect store recorded them (its row order). */
export interface Attempt {
  id: string;
  key: string;
  seq: number;
  pid: number;
}

/** One execution of the side effect (a row of the effect store; the second one of an id is a duplicate). */
export interface EffectExecution {
  id: string;
  pid: number;
  at: number;
}

export interface CheckInput {
  ledger: readonly LedgerEntry[];
  attempts: readonly Attempt[];
  effects: readonly EffectExecution[];
  /** Ids in the dead-letter queue at the end. */
  deadLetters: readonly string[];
  /** Messages still waiting in the broker when the run stopped waiting. */
  backlogAtEnd: number;
  /** Processes SIGKILLed or cut off during the run: a duplicate effect right after one is in ctx.once's crash window. */
  killedPids?: ReadonlySet<number>;
  /**
   * Processes SIGSTOPped past their lease. ctx.once does not start a step once the lease may have
   * passed, but a pause that lands inside the step lets it finish after the new owner ran it: a
   * repeat by one of these is in that window too.
   */
  pausedPids?: ReadonlySet<number>;
  /** The poison messages' expected number of tries. */
  maxAttempts?: number;
}

export interface CheckResult {
  acknowledged: number;
  keys: number;
  /** Acknowledged, not poison, never effected nor dead-lettered, and not explained by the backlog left. */
  lost: number;
  lostIds: string[];
  /** Effects or dead letters of ids never published (or published with a definite failure). */
  unexpected: number;
  unexpectedIds: string[];
  /** An effect executed again after it completed, outside ctx.once's crash window. */
  duplicateEffects: number;
  /** Duplicates whose first execution was by a process that was then killed, or whose repeat was by one paused inside the step (the documented window). */
  crashWindowDuplicates: number;
  /** Handler invocations beyond the first per id. */
  redeliveries: number;
  /** A message first handled before an earlier message of its key was first handled. */
  orderViolations: number;
  orderViolationSamples: string[];
  /** Acknowledged messages still in the broker at the end. */
  stuck: number;
  poisonInjected: number;
  poisonDeadLettered: number;
  /** Poison messages tried a number of times other than maxAttempts. */
  poisonTriesWrong: number;
  /** Healthy messages that ended in the dead-letter queue. */
  healthyDeadLettered: number;
  /** From acknowledgement to the first effect, ms. */
  latencyP50: number | null;
  latencyP99: number | null;
}

export function percentile(sorted: readonly number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export function check(input: CheckInput): CheckResult {
  const byId = new Map<string, LedgerEntry>();
  for (const entry of input.ledger) if (!byId.has(entry.id) || entry.outcome === 'ok') byId.set(entry.id, entry);
  const acknowledged = [...byId.values()].filter((e) => e.outcome === 'ok');
  const deadLetters = new Set(input.deadLetters);

  const firstEffect = new Map<string, EffectExecution>();
  let duplicateEffects = 0;
  let crashWindowDuplicates = 0;
  for (const effect of input.effects) {
    const first = firstEffect.get(effect.id);
    if (first === undefined) firstEffect.set(effect.id, effect);
    else if (input.killedPids?.has(first.pid) === true || input.pausedPids?.has(effect.pid) === true) crashWindowDuplicates++;
    else duplicateEffects++;
  }

  // Lost or stuck: an acknowledged message that did not come out.
  const missing = acknowledged.filter((e) => (e.poison === true ? !deadLetters.has(e.id) : !firstEffect.has(e.id) && !deadLetters.has(e.id)));
  const stuck = Math.min(missing.length, Math.max(0, input.backlogAtEnd));
  const lostIds = missing.slice(stuck).map((e) => e.id);

  // Unexpected: came out, but never sent (or sent and refused for sure: stored despite the refusal).
  const unexpectedIds = new Set<string>();
  for (const id of [...firstEffect.keys(), ...deadLetters]) {
    const entry = byId.get(id);
    if (entry === undefined || entry.outcome === 'failed') unexpectedIds.add(id);
  }

  // Order: the first invocation of each id, per key, must follow publish order.
  const seenAttempt = new Set<string>();
  const lastFirst = new Map<string, number>();
  const tries = new Map<string, number>();
  let redeliveries = 0;
  let orderViolations = 0;
  const orderViolationSamples: string[] = [];
  for (const attempt of input.attempts) {
    tries.set(attempt.id, (tries.get(attempt.id) ?? 0) + 1);
    if (seenAttempt.has(attempt.id)) {
      redeliveries++;
      continue;
    }
    seenAttempt.add(attempt.id);
    const before = lastFirst.get(attempt.key);
    if (before !== undefined && attempt.seq <= before) {
      orderViolations++;
      if (orderViolationSamples.length < 10) orderViolationSamples.push(`${attempt.key}: seq ${attempt.seq} first ran after seq ${before}`);
    }
    lastFirst.set(attempt.key, Math.max(before ?? attempt.seq, attempt.seq));
  }

  const poison = acknowledged.filter((e) => e.poison === true);
  const poisonDeadLettered = poison.filter((e) => deadLetters.has(e.id)).length;
  const poisonTriesWrong = input.maxAttempts === undefined ? 0 : poison.filter((e) => deadLetters.has(e.id) && tries.get(e.id) !== input.maxAttempts).length;
  const healthyDeadLettered = [...deadLetters].filter((id) => byId.get(id)?.poison !== true && byId.has(id)).length;

  const latencies: number[] = [];
  for (const entry of acknowledged) {
    const effect = firstEffect.get(entry.id);
    if (effect !== undefined && entry.ackedAt !== undefined) latencies.push(Math.max(0, effect.at - entry.ackedAt));
  }
  latencies.sort((a, b) => a - b);

  return {
    acknowledged: acknowledged.length,
    keys: new Set(acknowledged.map((e) => e.key)).size,
    lost: lostIds.length,
    lostIds: lostIds.slice(0, 20),
    unexpected: unexpectedIds.size,
    unexpectedIds: [...unexpectedIds].slice(0, 20),
    duplicateEffects,
    crashWindowDuplicates,
    redeliveries,
    orderViolations,
    orderViolationSamples,
    stuck,
    poisonInjected: poison.length,
    poisonDeadLettered,
    poisonTriesWrong,
    healthyDeadLettered,
    latencyP50: percentile(latencies, 50),
    latencyP99: percentile(latencies, 99),
  };
}

/**
 * p99 (ms, acknowledgement to first effect) of the acknowledged messages `include` selects: e.g.
 * the keys without poison, published outside a downstream outage, to compare with a baseline run.
 */
export function latencyP99(ledger: readonly LedgerEntry[], effects: readonly EffectExecution[], include: (entry: LedgerEntry) => boolean): { p99: number | null; samples: number } {
  const first = new Map<string, number>();
  for (const effect of effects) if (!first.has(effect.id)) first.set(effect.id, effect.at);
  const latencies: number[] = [];
  for (const entry of ledger) {
    if (entry.outcome !== 'ok' || entry.ackedAt === undefined || !include(entry)) continue;
    const at = first.get(entry.id);
    if (at !== undefined) latencies.push(Math.max(0, at - entry.ackedAt));
  }
  latencies.sort((a, b) => a - b);
  return { p99: percentile(latencies, 99), samples: latencies.length };
}
