import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageLog } from '../../src/brokers/memory/message-log.js';
import type { StoredMessage } from '../../src/brokers/memory/state.js';

function message(seq: number): StoredMessage {
  return { seq, id: `m${seq}`, key: null, partition: 0, payload: 'null', headers: {}, publishedAt: 0, notBefore: 0, pendingIn: 1, slot: -1 };
}

const seqs = (log: MessageLog): number[] => [...log.values()].map((m) => m.seq);

describe('MessageLog (memory backend)', () => {
  test('keeps retained messages in seq order; a removal is counted once', () => {
    const log = new MessageLog();
    const all = [1, 2, 5, 9].map(message);
    for (const m of all) log.append(m);
    log.remove(all[1]!);
    log.remove(all[1]!);
    assert.equal(log.size, 3);
    assert.deepEqual(seqs(log), [1, 5, 9]);
    log.remove(all[0]!);
    assert.deepEqual(seqs(log), [5, 9]);
    log.append(message(12));
    assert.deepEqual(seqs(log), [5, 9, 12]);
  });

  test('removals in any order, with the sweeps they trigger, keep order and size right', () => {
    const log = new MessageLog();
    const all = Array.from({ length: 10_000 }, (_, i) => message(i + 1));
    for (const m of all) log.append(m);
    // Every other message first (holes in the middle), then most of the front (holes at the front).
    for (let i = 1; i < all.length; i += 2) log.remove(all[i]!);
    assert.equal(log.size, 5_000);
    for (let i = 0; i < 8_000; i += 2) log.remove(all[i]!);
    assert.equal(log.size, 1_000);
    assert.deepEqual(seqs(log), Array.from({ length: 1_000 }, (_, i) => 8_001 + 2 * i));
    for (const m of all) log.remove(m);
    assert.equal(log.size, 0);
    assert.deepEqual(seqs(log), []);
  });
});
