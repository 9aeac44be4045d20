/**
 * Top self-time functions of a V8 .cpuprofile (from `node --cpu-prof`), for reading a bench
 * profile without DevTools.
 *
 *   node --cpu-prof --cpu-prof-dir=.tmp/prof --import tsx bench/sqlite.ts --runs=1 --only=e2e-10 --no-warmup
 *   node --import tsx bench/cpuprofile-top.ts .tmp/prof/<file>.cpuprofile [top=25]
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

// Piped into `head`: stop quietly when the reader goes away.
process.stdout.on('error', () => process.exit(0));

const [file, topArg] = process.argv.slice(2);
if (file === undefined) throw new Error('usage: cpuprofile-top.ts <file.cpuprofile> [top]');
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

const label = (n: ProfileNode): string => {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url === '' ? '' : ` ${url.replace(/^file:\/\//, '').replace(process.cwd() + '/', '')}:${lineNumber + 1}`;
  return `${functionName === '' ? '(anonymous)' : functionName}${where}`;
};

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
for (let i = 0; i < profile.samples.length; i++) {
  const dt = profile.timeDeltas[i] ?? 0;
  all += dt;
  let node = byId.get(profile.samples[i]!);
  if (node === undefined) continue;
  const name = label(node);
  self.set(name, (self.get(name) ?? 0) + dt);
  // Inclusive time: each distinct frame on the stack once.
  const onStack = new Set<string>();
  while (node !== undefined) {
    onStack.add(label(node));
    const up = parent.get(node.id);
    node = up === undefined ? undefined : byId.get(up);
  }
  for (const frame of onStack) total.set(frame, (total.get(frame) ?? 0) + dt);
}

const print = (title: string, map: Map<string, number>): void => {
  console.log(`\n${title} (of ${(all / 1000).toFixed(0)} ms sampled)`);
  for (const [name, us] of [...map].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${(us / 1000).toFixed(0).padStart(8)} ms ${((100 * us) / all).toFixed(1).padStart(5)}%  ${name}`);
  }
};
print('self time', self);
print('inclusive time', total);
