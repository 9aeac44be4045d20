/**
 * Wraps a real broker so a test can freeze one worker's view of it, as SIGSTOP or a long GC
 * pause would: calls made while paused wait until `resume()`. The broker underneath is the
 * real one; only the timing of this worker's calls changes.
 */
import type { Broker, SettleOutcome } from '../../src/brokers/broker.js';

export interface Pausable {
  broker: Broker;
  pause(): void;
  resume(): void;
  /** Outcomes of every settle call made through the wrapper, in order. */
  settleOutcomes: SettleOutcome[];
}

export function pausable(target: Broker): Pausable {
  let gate: Promise<void> | undefined;
  let open: (() => void) | undefined;
  const settleOutcomes: SettleOutcome[] = [];
  const broker = new Proxy(target, {
    get(obj, property, receiver) {
      const value: unknown = Reflect.get(obj, property, receiver);
      if (typeof value !== 'function') return value;
      const method = value as (...args: unknown[]) => unknown;
      if (property === 'watch' || property === 'close') return method.bind(obj);
      return async (...args: unknown[]) => {
        while (gate !== undefined) await gate;
        const result = await method.apply(obj, args);
        if (property === 'settle') settleOutcomes.push(...(result as SettleOutcome[]));
        return result;
      };
    },
  });
  return {
    broker,
    settleOutcomes,
    pause() {
      gate ??= new Promise<void>((resolve) => {
        open = resolve;
      });
    },
    resume() {
      const release = open;
      gate = undefined;
      open = undefined;
      release?.();
    },
  };
}
