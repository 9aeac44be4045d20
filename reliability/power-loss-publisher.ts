/**
 * The publisher of scenario p (reliability/power-loss.ts), run under the power-loss shim. One
 * JSON argument (PowerLossPublisherConfig). Publishes `k<i mod keys>` / `<idPrefix><i>` on
 * `chains` concurrent chains until killed; stdout: `settings <journal> <synchronous>` (read back
 * from SQLite), then `ack <id>` once each publish resolved.
 *
 * `forceSynchronous: 'OFF'` sets `PRAGMA synchronous = OFF` on the broker's own connection
 * after it opened: botqueue refuses OFF from a URL (only FULL and NORMAL are accepted), and the
 * scenario needs a run that is known to lose acknowledged writes on a power loss, to show the
 * harness sees such a loss.
 */
import { connect } from '../src/index.js';
import { SqliteBroker } from '../src/brokers/sqlite/index.js';

export interface PowerLossPublisherConfig {
  url: string;
  topic: string;
  keys: number;
  chains: number;
  idPrefix: string;
  forceSynchronous?: 'OFF';
}

const config = JSON.parse(process.argv[2] ?? '') as PowerLossPublisherConfig;
const say = (line: string): void => void process.stdout.write(`${line}\n`);
process.stdin.on('end', () => process.exit(3));
process.stdin.resume();

const bq = await connect(config.url);
if (!(bq.broker instanceof SqliteBroker)) throw new Error('the power-loss publisher needs a sqlite: URL');
if (config.forceSynchronous === 'OFF') (bq.broker as unknown as { db: { pragma(sql: string): unknown } }).db.pragma('synchronous = OFF');
const settings = bq.broker.settingsInForce();
say(`settings ${settings.journalMode} ${settings.synchronous}`);
async function chain(c: number): Promise<void> {
  for (let i = c; ; i += config.chains) {
    const receipt = await bq.publish(config.topic, { key: `k${i % config.keys}`, id: `${config.idPrefix}${i}`, payload: { n: Math.floor(i / config.keys) } });
    // A pipe write is synchronous on Linux: once it returns, the parent reads the line even if we are killed next.
    say(`ack ${receipt.id}`);
  }
}
await Promise.all(Array.from({ length: config.chains }, (_, c) => chain(c)));
