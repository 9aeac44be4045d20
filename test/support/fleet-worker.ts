/**
 * One worker process of a fleet (see `worker-fleet.ts`): the handler a user would write — it
 * awaits a random 0..maxHandlerMs timer (an API call) and writes one row to a local SQLite file
 * (the bot's own state) — then reports the message on stdout.
 *
 * Lines on stdout:
 *   `connected <epochMs>`               once connected, before the worker starts (joins, creates the group)
 *   `ready <member>`                    once the worker joined its group
 *   `owned <p,p,...>`                   whenever its owned partitions change
 *   `h <key> <n> <startMs> <endMs>`     per handled message (times: epoch ms, µs precision)
 *   `error <message>`                   per worker error event
 * Pipes are written synchronously on Linux, so a line written before a SIGKILL is not lost.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { connect } from '../../src/index.js';

export interface FleetWorkerConfig {
  url: string;
  topic: string;
  group: string;
  concurrency: number;
  leaseMs: number;
  maxHandlerMs: number;
  /** The handler's own SQLite file. */
  dbPath: string;
  seed: number;
}

const config = JSON.parse(process.argv[2] ?? '') as FleetWorkerConfig;
const say = (line: string): void => void process.stdout.write(`${line}\n`);
process.stdin.on('end', () => process.exit(3));
process.stdin.resume();

// A small seeded generator (mulberry32): the handler's delays are replayable per seed.
let state = config.seed >>> 0;
function random(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
}

const db = new Database(config.dbPath);
db.pragma('journal_mode = WAL');
db.pragma('synchronous = NORMAL');
db.exec('CREATE TABLE IF NOT EXISTS handled (key TEXT NOT NULL, n INTEGER NOT NULL, pid INTEGER NOT NULL)');
const insert = db.prepare('INSERT INTO handled (key, n, pid) VALUES (?, ?, ?)');
const now = (): number => performance.timeOrigin + performance.now();

const bq = await connect(config.url);
say(`connected ${now().toFixed(3)}`);
const worker = bq.worker<{ n: number }>(
  config.topic,
  async (message) => {
    const started = now();
    await sleep(random() * config.maxHandlerMs);
    insert.run(message.key, message.payload.n, process.pid);
    say(`h ${message.key} ${message.payload.n} ${started.toFixed(3)} ${now().toFixed(3)}`);
  },
  { group: config.group, concurrency: config.concurrency, leaseMs: config.leaseMs },
);
worker.on('error', (error) => say(`error ${error.message.replace(/\n/g, ' ')}`));
await worker.ready;
say(`ready ${worker.member}`);
let owned = '';
setInterval(() => {
  const current = worker.ownedPartitions.join(',');
  if (current !== owned) {
    owned = current;
    say(`owned ${current}`);
  }
}, 20);
process.once('SIGTERM', () => {
  void (async () => {
    await worker.close();
    await bq.close();
    db.close();
    process.exit(0);
  })();
});
