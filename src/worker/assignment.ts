/**
 * Which partitions a member should own: members sorted, partition i goes to member i mod n.
 * Every member computes the same answer from the same member list, and shares differ by at
 * most one partition. The broker's leases arbitrate while members briefly disagree.
 */
export function assignedPartitions(members: readonly string[], me: string, partitions: number): number[] {
  const sorted = [...members].sort();
  const index = sorted.indexOf(me);
  if (index === -1) return [];
  const mine: number[] = [];
  for (let p = index; p < partitions; p += sorted.length) mine.push(p);
  return mine;
}
