/**
 * The service's configuration (`npm start` reads it): the example echo/counter bot of
 * examples/echo-bot. Environment variables override the connection settings: BOTQUEUE_URL
 * (default sqlite:./data/botqueue.db), BOTQUEUE_PORT (3000), BOTQUEUE_HOST,
 * BOTQUEUE_ADMIN_TOKEN, BOTQUEUE_LOG_LEVEL.
 */
import type { BotqueueConfigFile } from './src/service/config.ts';

export default {
  topics: {
    // Chat updates, keyed by chat: one at a time per chat, in order, 32 chats at once.
    updates: { partitions: 16, onExhausted: 'dead-letter', maxBacklog: 100_000 },
    // Telegram updates as the gateway stores them (keyed telegram:<bot>:<chat>); answered through outbound.telegram when TELEGRAM_BOT_TOKEN is set.
    telegram: { partitions: 16, onExhausted: 'dead-letter' },
  },
  handlers: [
    {
      topic: 'updates',
      module: './examples/echo-bot/handlers.ts',
      export: 'onUpdate',
      options: { group: 'echo-bot', concurrency: 32, maxAttempts: 5 },
    },
    { topic: 'telegram', module: './examples/echo-bot/handlers.ts', export: 'onUpdate', options: { group: 'echo-bot', concurrency: 32, maxAttempts: 5 } },
  ],
} satisfies BotqueueConfigFile;
