/**
 * `botqueue/slack-bolt` with the real @slack/bolt against a fake Slack Web API on loopback:
 * events stored as the gateway stores them (topic `slack`, the Events API body as payload,
 * keyed by channel) are handled by `app.processEvent` in a botqueue worker, per channel in
 * order; a listener that throws is retried; say() reaches the fake chat.postMessage. The
 * example app (examples/slack-bolt/app.ts) runs in its own process.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import bolt from '@slack/bolt';
import { connect } from '../../src/index.js';
import { BotqueueReceiver } from '../../src/adapters/slack-bolt.js';
import { startFakePlatforms } from '../support/fake-platforms.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'bq-bolt-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function event(channel: string, n: number, text: string) {
  return {
    key: `slack:T1:${channel}`,
    id: `slack:Ev${channel}${n}`,
    payload: {
      token: 'verification',
      team_id: 'T1',
      api_app_id: 'A1',
      type: 'event_callback',
      event_id: `Ev${channel}${n}`,
      event_time: 1_700_000_000 + n,
      event: { type: 'message', channel, user: 'U42', text, ts: `1700000000.${String(n).padStart(6, '0')}`, channel_type: 'channel' },
    },
    headers: { 'bq-platform': 'slack', 'bq-chat': channel, 'bq-bot': 'T1', 'bq-received-at': String(Date.now()) },
  };
}

describe('botqueue/slack-bolt', () => {
  test('events go to app.processEvent per channel in order; a throwing listener is retried; say() posts', async () => {
    const fake = await startFakePlatforms();
    const bq = await connect(`sqlite:${join(dir, 'inproc.db')}`);
    try {
      const receiver = new BotqueueReceiver({ bq, worker: { backoffBaseMs: 10, backoffCapMs: 20 } });
      const app = new bolt.App({ token: 'xoxb-fake', receiver, clientOptions: { slackApiUrl: `${fake.roots.slack}/` }, logLevel: bolt.LogLevel.ERROR });
      const seen: string[] = [];
      let failed = false;
      app.message(async ({ message, say }) => {
        if (message.subtype !== undefined) return;
        if (message.text === 'flaky' && !failed) {
          failed = true;
          throw new Error('listener fails once');
        }
        seen.push(`${message.channel}:${message.text}`);
        // The first event of a channel is slow: the channel's next ones wait, the other channel does not.
        if (message.text === '1') await new Promise((r) => setTimeout(r, 300));
        await say(`re ${message.text}`);
      });
      await app.start();
      await bq.publishBatch('slack', [event('C1', 1, '1'), event('C1', 2, 'flaky'), event('C2', 1, 'x'), event('C1', 3, '3'), event('C2', 2, 'y')]);
      await fake.waitFor((r) => r.filter((x) => x.accepted && x.method === 'chat.postMessage').length >= 5, 20_000, 'five posts');
      const posts = (channel: string): unknown[] => fake.accepted().filter((r) => r.chat === channel).map((r) => r.body.text);
      assert.deepEqual(posts('C1'), ['re 1', 're flaky', 're 3']);
      assert.deepEqual(posts('C2'), ['re x', 're y']);
      assert.ok(failed, 'the flaky listener failed once and was retried');
      assert.ok(seen.indexOf('C2:y') < seen.indexOf('C1:flaky'), 'the other channel was not held up by the slow one');
      assert.ok(fake.accepted().every((r) => r.auth === 'Bearer xoxb-fake'));
      await app.stop();
    } finally {
      await bq.close();
      await fake.close();
    }
  });

  test('the example app runs in its own process on the same SQLite file', async () => {
    const fake = await startFakePlatforms();
    const file = join(dir, 'example.db');
    const bq = await connect(`sqlite:${file}`);
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'examples', 'slack-bolt', 'app.ts')], {
      cwd: root,
      env: { ...process.env, SLACK_BOT_TOKEN: 'xoxb-example', SLACK_API_ROOT: fake.roots.slack, BOTQUEUE_URL: `sqlite:${file}` },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    try {
      await bq.publishBatch('slack', [event('C7', 1, 'hello'), event('C7', 2, 'again'), event('C8', 1, 'other')]);
      await fake.waitFor((r) => r.filter((x) => x.accepted).length >= 3, 30_000, 'three posts');
      assert.deepEqual(fake.accepted().filter((r) => r.chat === 'C7').map((r) => r.body.text), ['#1 hello', '#2 again']);
      assert.deepEqual(fake.accepted().filter((r) => r.chat === 'C8').map((r) => r.body.text), ['#1 other']);
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await bq.close();
      await fake.close();
    }
  });
});
