import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { HeldDeliveries } from '../../src/brokers/rabbitmq/held-deliveries.js';

interface Entry {
  seq: number;
  removed?: boolean;
}

test('held deliveries: after() and first() agree with a plain sorted list under any adds and removes', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(fc.record({ op: fc.constant('add' as const), gap: fc.integer({ min: 1, max: 3 }) }), fc.record({ op: fc.constant('remove' as const), pick: fc.nat() }), fc.record({ op: fc.constant('read' as const), pick: fc.nat(), limit: fc.integer({ min: 1, max: 40 }) })), { maxLength: 2_000 }),
      (ops) => {
        const held = new HeldDeliveries<Entry>();
        let model: Entry[] = [];
        let next = 0;
        for (const op of ops) {
          if (op.op === 'add') {
            next += op.gap;
            const entry = { seq: next };
            held.add(entry);
            model.push(entry);
          } else if (op.op === 'remove') {
            if (model.length === 0) continue;
            const victim = model[op.pick % model.length]!;
            assert.equal(held.remove(victim.seq), victim);
            model = model.filter((e) => e !== victim);
          } else {
            const after = model.length === 0 ? 0 : model[op.pick % model.length]!.seq - (op.pick % 2);
            assert.deepEqual(held.after(after, op.limit), model.filter((e) => e.seq > after).slice(0, op.limit));
            assert.equal(held.get(after), model.find((e) => e.seq === after), `get(${after})`);
            assert.equal(held.get(after + 1), model.find((e) => e.seq === after + 1), `get(${after + 1})`);
          }
          assert.equal(held.size, model.length);
          assert.equal(held.first(), model[0]);
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('held deliveries: a front pinned for long does not let removed entries pile up', () => {
  const held = new HeldDeliveries<Entry>();
  held.add({ seq: 1 }); // a key waiting for its retry: never removed here
  for (let seq = 2; seq < 100_000; seq++) {
    held.add({ seq });
    held.remove(seq);
  }
  assert.equal(held.size, 1);
  assert.ok((held as unknown as { order: Entry[] }).order.length <= 600, 'holes are compacted away');
  assert.deepEqual(held.after(0, 10).map((entry) => entry.seq), [1]);
  assert.throws(() => held.add({ seq: 5 }), RangeError, 'seqs only grow');
});
