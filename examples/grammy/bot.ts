/**
 * An ordinary grammY bot, run on botqueue: the only change from a plain grammY bot is the last
 * line (`bot.start()` → `runOnBotqueue(bot)`) and its import. The gateway of `botqueue start`
 * stores Telegram's webhook updates on the topic `telegram`; this process handles them, one at
 * a time per chat, and its replies go out through the outbound queue within Telegram's limits.
 *
 *   TELEGRAM_BOT_TOKEN=123:abc node --import tsx examples/grammy/bot.ts
 *
 * TELEGRAM_API_ROOT points grammY (and the sender) at another Bot API server; BOTQUEUE_URL at
 * another botqueue (default sqlite:./data/botqueue.db, shared with `botqueue start`).
 */
import { Bot } from 'grammy';
import { runOnBotqueue } from 'botqueue/grammy';

const bot = new Bot(process.env.TELEGRAM_BOT_TOKEN ?? '', { client: { apiRoot: process.env.TELEGRAM_API_ROOT ?? 'https://api.telegram.org' } });

let greeted = 0;

bot.command('start', (ctx) => ctx.reply(`Welcome! You are visitor #${++greeted}. Send me anything.`));
bot.on('message:text', async (ctx) => {
  await ctx.reply(`echo: ${ctx.message.text}`);
});

process.once('SIGINT', () => void bot.stop());
process.once('SIGTERM', () => void bot.stop());

await runOnBotqueue(bot);
