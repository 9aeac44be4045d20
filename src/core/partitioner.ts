/**
 * Kafka's default partitioner, so that a key lands on the same partition number in every
 * backend and in a Kafka cluster: murmur2 (seed 0x9747b28c) of the key's UTF-8 bytes, masked
 * positive, modulo the partition count.
 */
const SEED = 0x9747b28c;
const M = 0x5bd1e995;
const encoder = new TextEncoder();

/** murmur2 as Kafka's `Utils.murmur2` computes it, returned as a signed 32-bit integer. */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  let h = (SEED ^ length) | 0;
  const whole = length & ~3;
  for (let i = 0; i < whole; i += 4) {
    let k =
      (data[i]! & 0xff) |
      ((data[i + 1]! & 0xff) << 8) |
      ((data[i + 2]! & 0xff) << 16) |
      ((data[i + 3]! & 0xff) << 24);
    k = Math.imul(k, M);
    k ^= k >>> 24;
    k = Math.imul(k, M);
    h = Math.imul(h, M);
    h ^= k;
  }
  // The Java original folds the 1-3 trailing bytes in with a falling-through switch.
  const tail = length & 3;
  if (tail >= 3) h ^= (data[whole + 2]! & 0xff) << 16;
  if (tail >= 2) h ^= (data[whole + 1]! & 0xff) << 8;
  if (tail >= 1) {
    h ^= data[whole]! & 0xff;
    h = Math.imul(h, M);
  }
  h ^= h >>> 13;
  h = Math.imul(h, M);
  h ^= h >>> 15;
  return h | 0;
}

/** Kafka's `Utils.toPositive`: clears the sign bit (not `Math.abs`, which differs on MIN_VALUE). */
export function toPositive(n: number): number {
  return n & 0x7fffffff;
}

/** The partition of `key` among `partitions`, exactly as Kafka's default partitioner picks it. */
export function partitionForKey(key: string, partitions: number): number {
  return toPositive(murmur2(encoder.encode(key))) % partitions;
}
