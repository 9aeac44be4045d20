/**
 * The service's configuration (`npm start` reads it): the example echo/counter bot of
 * examples/echo-bot. Environment variables override the connection settings: BOTQUEUE_URL
 * (default sqlite:./data/botqueue.db), BOTQUEUE_PORT (3000), BOTQUEUE_HOST,
 * BOTQUEUE_ADMIN_TOKEN, BOTQUEUE_LOG_LEVEL. With TELEGRAM_SECRET_TOKEN set, Telegram updates
 * posted to /webhooks/telegram go to the same topic and the bot echoes them too; with
 * TELEGRAM_BOT_TOKEN set as well, it answers them with sendMessage through the outbound queue.
 */
import type { BotqueueConfigFile } from './src/service/config.ts';

export default {
  topics: {
    // Chat updates, keyed by chat: one at a time per chat, in order, 32 chats at once.
    updates: { partitions: 16, onExhausted: 'dead-letter', maxBacklog: 100_000 },
  },
  // Telegram's webhook (mounted only when TELEGRAM_SECRET_TOKEN is set) feeds the same topic.
  webhooks: { telegram: { topic: 'updates' } },
  handlers: [
    {
      topic: 'updates',
      module: './examples/echo-bot/handlers.ts',
      export: 'onUpdate',
      options: { group: 'echo-bot', concurrency: 32, maxAttempts: 5 },
    },
  ],
} satisfies BotqueueConfigFile;
