/**
 * o. Replies out under sender crashes: replies stored with bq.send for many chats (one chat
 * throttled by the fake Bot API: 429 with retry_after), two sender processes, a random one
 * SIGKILLed every 1-2.5 s and restarted. The fake API is the effect store: each accepted
 * sendMessage is an effect, attributed to the process by its bot token. The checker then counts
 * replies lost, sent twice outside the documented window (the call in flight, or answered and
 * not yet recorded, when its process died: docs/outbound.md, window 4), and sent out of order.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { connect, type Botqueue } from '../src/index.js';
import { startFakePlatforms } from '../test/support/fake-platforms.js';
import { seededRandom } from '../test/support/worker-fleet.js';
import { check, type Attempt, type EffectExecution, type LedgerEntry } from './checker.js';
import type { ScenarioReport } from './run.js';
import { waitUntil } from './worker-processes.js';

const here = dirname(fileURLToPath(import.meta.url));
const SENDER = join(here, 'sender.ts');

export interface OutboundScenario {
  chats: number;
  perChat: number;
  /** Replies stored per second, all chats together. */
  rate: number;
  /** The fake API's answer time, so that calls are in flight when a kill lands. */
  apiDelayMs: number;
}

interface SenderProc {
  proc: ChildProcessWithoutNullStreams;
  /** Tells its calls apart at the fake API. */
  token: string;
  ready: Promise<boolean>;
  exited: Promise<void>;
}

function startSenderProcess(file: string, apiRoot: string, n: number): SenderProc {
  const token = `123:SENDER${n}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', SENDER, file, apiRoot, token], { cwd: join(here, '..'), stdio: ['pipe', 'pipe', 'pipe'] });
  proc.stderr.on('data', () => undefined);
  const ready = new Promise<boolean>((resolve) => {
    createInterface({ input: proc.stdout }).on('line', (line) => line === 'ready' && resolve(true));
    proc.once('exit', () => resolve(false));
  });
  const exited = new Promise<void>((resolve) => proc.on('exit', () => resolve()));
  return { proc, token, ready, exited };
}

export async function runOutbound(s: OutboundScenario, seed: number): Promise<ScenarioReport> {
  const started = Date.now();
  const random = seededRandom(seed ^ 0x6f);
  const dir = mkdtempSync(join(tmpdir(), 'botqueue-reliability-o-'));
  const file = join(dir, 'bq.db');
  const throttled = '5000';
  // Stricter than the sender's own pace for a Telegram chat (1 per second): the chat is answered
  // 429 whatever the timing. At 2 per second it was only when a restarted sender sent a burst,
  // and a CI run saw none ('the throttled chat was never answered 429').
  const fake = await startFakePlatforms({ delayMs: s.apiDelayMs, chatLimits: { [throttled]: { limit: 1, windowMs: 2_000, retryAfterS: 1 } } });
  let bq: Botqueue | undefined;
  const senders: SenderProc[] = [];
  const killedTokens = new Set<string>();

  try {
    bq = await connect(`sqlite:${file}`);
    let n = 0;
    for (let i = 0; i < 2; i++) senders.push(startSenderProcess(file, fake.roots.telegram, n++));
    await Promise.all(senders.map((p) => p.ready));

    const ledger: LedgerEntry[] = [];
    for (let i = 0; i < s.perChat; i++) for (let c = 0; c < s.chats; c++) ledger.push({ id: `o-${seed}-${c}-${i}`, key: String(5000 + c), seq: i, outcome: 'unknown' });
    const publishStart = Date.now();
    let publishing = true;
    // One chain per chat class keeps each chat's replies stored in order.
    const chains = 8;
    const publisher = Promise.all(
      Array.from({ length: chains }, async (_, chain) => {
        const mine = ledger.filter((_e, i) => (i % s.chats) % chains === chain);
        for (let k = 0; k < mine.length; k++) {
          const dueAt = publishStart + ((k * chains) / s.rate) * 1_000;
          if (dueAt > Date.now()) await sleep(dueAt - Date.now());
          const e = mine[k]!;
          try {
            await bq!.send('telegram', e.key, e.id, { id: e.id });
            Object.assign(e, { outcome: 'ok', ackedAt: Date.now() });
          } catch {
            // Left 'unknown'.
          }
        }
      }),
    ).then(() => {
      publishing = false;
    });

    let kills = 0;
    const chaos = (async () => {
      while (publishing) {
        await sleep(1_000 + random() * 1_500);
        if (!publishing) break;
        const index = Math.floor(random() * senders.length);
        const victim = senders[index]!;
        killedTokens.add(victim.token);
        victim.proc.kill('SIGKILL');
        await victim.exited;
        kills++;
        const next = startSenderProcess(file, fake.roots.telegram, n++);
        senders[index] = next;
        await next.ready;
      }
    })();
    await publisher;
    const publishMs = Date.now() - publishStart;
    await chaos;

    const owed = ledger.filter((e) => e.outcome === 'ok').map((e) => e.id);
    const sentIds = (): Set<string> => new Set(fake.accepted().map((r) => String(r.body.text)));
    await waitUntil('every acknowledged reply sent', () => {
      const sent = sentIds();
      return owed.every((id) => sent.has(id));
    }, 60_000);
    await sleep(500); // a late repeat would show now
    const started429 = fake.requests.filter((r) => r.status === 429).length;
    const byToken = new Map<string, number>();
    const pidOf = (token: string | undefined): number => {
      const key = token ?? '';
      if (!byToken.has(key)) byToken.set(key, byToken.size + 1);
      return byToken.get(key)!;
    };
    const accepted = fake.accepted();
    const attempts: Attempt[] = accepted.map((r) => ({ id: String(r.body.text), key: r.chat, seq: Number(String(r.body.text).split('-').pop()), pid: pidOf(r.auth) }));
    const effects: EffectExecution[] = accepted.map((r) => ({ id: String(r.body.text), pid: pidOf(r.auth), at: r.at }));
    const killedPids = new Set([...killedTokens].map(pidOf));
    const [stats] = await bq.stats('outbound.telegram');
    const result = check({ ledger, attempts, effects, deadLetters: [], backlogAtEnd: stats?.groups[0]?.backlog ?? 0, killedPids });
    const acked = owed.length;
    return {
      scenario: 'o',
      title: `replies out: ${s.chats} chats × ${s.perChat} replies through two sender processes, one SIGKILLed every 1-2.5 s, chat ${throttled} throttled (429 retry_after)`,
      seed,
      durationMs: Date.now() - started,
      publishMs,
      rate: Math.round((acked / publishMs) * 1_000),
      faults: { kills: 0, pauses: 0, lateSettlesRefused: 0, outageMs: 0, outbound: { senderKills: kills, rateLimited: started429, requests: fake.requests.length } },
      result,
    };
  } finally {
    for (const p of senders) p.proc.kill('SIGKILL');
    await Promise.all(senders.map((p) => p.exited));
    await bq?.close().catch(() => undefined);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
