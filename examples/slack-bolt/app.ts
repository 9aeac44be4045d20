/**
 * A Slack Bolt app whose events come from botqueue: `botqueue start` (the gateway) verifies
 * Slack's signature, stores each event and answers Slack within its 3 s; this process handles
 * them with Bolt, one at a time per channel, in order, with botqueue's retries. The only change
 * from a Bolt app on its own HTTP receiver is `receiver: new BotqueueReceiver()`.
 *
 *   SLACK_BOT_TOKEN=xoxb-... node --import tsx examples/slack-bolt/app.ts
 *
 * SLACK_API_ROOT points Bolt's Web API client at another server (default https://slack.com/api/);
 * BOTQUEUE_URL at another botqueue (default sqlite:./data/botqueue.db).
 */
import bolt from '@slack/bolt';
import { BotqueueReceiver } from 'botqueue/slack-bolt';

const app = new bolt.App({
  token: process.env.SLACK_BOT_TOKEN,
  receiver: new BotqueueReceiver(),
  clientOptions: { slackApiUrl: process.env.SLACK_API_ROOT === undefined ? undefined : `${process.env.SLACK_API_ROOT.replace(/\/+$/, '')}/` },
  logLevel: bolt.LogLevel.WARN,
});

const counts = new Map<string, number>();

app.message(async ({ message, say }) => {
  if (message.subtype !== undefined) return;
  const n = (counts.get(message.channel) ?? 0) + 1;
  counts.set(message.channel, n);
  await say(`#${n} ${message.text ?? ''}`);
});

process.once('SIGINT', () => void app.stop());
process.once('SIGTERM', () => void app.stop());

await app.start();
