/**
 * What the conformance suite needs from a backend, and small helpers that wait on conditions
 * instead of sleeping a fixed time.
 */
import type { Broker } from '../../src/brokers/broker.js';

export interface BackendFactory {
  /** Shown in test names. */
  name: string;
  /** A URL for `connect()` pointing at fresh, empty storage. Calls with the same `shared` tag share storage. */
  url(shared?: string): string;
  /** A broker on fresh storage with an injected clock, for the port-level property tests. */
  brokerWithClock(now: () => number, shared?: string): Promise<Broker>;
  /** Removes what the factory created. */
  cleanup(): Promise<void>;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` until it holds; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, everyMs = 10): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for: ${what}`);
    await sleep(everyMs);
  }
}

/** A promise with its resolve function, for handlers that the test releases. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Checks that, per key, the handled sequence numbers never go backwards. Returns the violations. */
export function orderViolations(events: Array<{ key: string; n: number }>): string[] {
  const last = new Map<string, number>();
  const problems: string[] = [];
  for (const { key, n } of events) {
    const before = last.get(key);
    if (before !== undefined && n < before) problems.push(`${key}: ${n} after ${before}`);
    last.set(key, Math.max(before ?? n, n));
  }
  return problems;
}
