/**
 * A Telegram sender in a process of its own for the outbound scenario (o): argv = SQLite file,
 * Bot API root, bot token (a different token per process, so that the fake API tells which
 * process made each call). Prints `ready` once its worker has joined the sender group.
 */
import { connect } from '../src/index.js';
import { startSender, telegramClient } from '../src/outbound/index.js';

const [file, apiRoot, token] = process.argv.slice(2) as [string, string, string];
process.stdin.on('end', () => process.exit(3));
process.stdin.resume();
const bq = await connect(`sqlite:${file}`);
const sender = startSender(bq, { client: telegramClient({ token, apiRoot }), limits: {}, worker: { leaseMs: 1_000, concurrency: 64 } });
await sender.worker.ready;
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void bq.close().then(() => process.exit(0));
});
