/** The lines `botqueue start` prints once everything runs: where everything is. */
import { relative } from 'node:path';
import { redactUrl } from '../core/redact.js';
import { mountedRoutes } from '../gateway/config.js';
import { CONFIG_FILE_NAMES, httpSettings, isLoopback, type BotqueueConfig } from './config.js';
import { handlerName } from './handlers.js';
import type { StartedService } from './service.js';
import { MAX_RESTART_DELAY_MS, RESTART_DELAY_MS } from './supervisor.js';

export function summaryLines(config: BotqueueConfig, started: StartedService, workers: number, cwd: string): string[] {
  const http = httpSettings(config);
  const lines: string[] = ['botqueue is running'];
  const row = (label: string, text: string): void => void lines.push(`  ${label.padEnd(11)} ${text}`);

  row('http', started.url + (started.address === '0.0.0.0' || started.address === '::' ? ` (all interfaces, ${started.address})` : ''));
  row('', 'POST /v1/topics/:topic/messages · GET /healthz · GET /readyz · GET /v1/stats · GET /v1/dead-letters · GET /metrics · GET /dashboard');
  if (config.adminToken === undefined) {
    row('admin auth', 'off: listening on loopback only because BOTQUEUE_ADMIN_TOKEN is not set');
  } else {
    row('admin auth', `on: /v1/stats, /v1/dead-letters, DELETE /v1/topics/…, /metrics (the dashboard's data)${http.publishRequiresToken ? ' and publishing' : ''} need Authorization: Bearer $BOTQUEUE_ADMIN_TOKEN`);
    if (!http.publishRequiresToken && !isLoopback(started.address)) {
      row('warning', 'publishing is open to anyone who can reach this address; set http.publishRequiresToken: true in the config to require the token');
    }
  }
  const webhooks = config.webhooks === undefined ? [] : mountedRoutes(config.webhooks);
  row('webhooks', webhooks.length === 0 ? 'none mounted (set TELEGRAM_SECRET_TOKEN, SLACK_SIGNING_SECRET, DISCORD_PUBLIC_KEY, WHATSAPP_APP_SECRET or BOTQUEUE_WEBHOOK_SECRET)' : webhooks.join(' · '));
  if (config.webhooks?.telegramPolling !== undefined) row('', `Telegram long polling (getUpdates) into topic ${config.webhooks.telegramPolling.topic}`);
  row('broker', redactUrl(config.url));
  row('config', config.configPath ?? `none found (${CONFIG_FILE_NAMES.join(', ')} in ${cwd}): defaults, no topics, no handlers`);

  const topics = Object.entries(config.topics);
  if (topics.length === 0) row('topics', 'none declared');
  for (const [i, [name, topic]] of topics.entries()) {
    const parts = [`${topic.partitions} partitions`, `dedup ${duration(topic.dedupWindowMs)}`, topic.onExhausted];
    if (topic.maxBacklog !== undefined) parts.push(`max backlog ${topic.maxBacklog}`);
    row(i === 0 ? 'topics' : '', `${name} (${parts.join(', ')})`);
  }
  for (const kept of started.keptDedupWindows) {
    row('note', `topic ${kept.topic} keeps its dedup window of ${duration(kept.existing)} (fixed when it was created; the config says ${duration(kept.configured)})`);
  }
  row('', http.allowUndeclaredTopics ? 'publishing to an undeclared topic creates it (16 partitions, dedup 24 h)' : 'publishing to an undeclared topic is refused (404)');

  if (config.handlers.length === 0) row('handlers', 'none: published messages are stored and wait for handlers');
  for (const [i, handler] of config.handlers.entries()) {
    const options = [`group ${handler.options.group ?? 'default'}`];
    if (handler.options.concurrency !== undefined) options.push(`concurrency ${handler.options.concurrency}`);
    const where = relative(cwd, handler.module);
    row(i === 0 ? 'handlers' : '', `${handler.topic} → ${where.startsWith('..') ? handlerName(handler) : `${where}#${handler.export}`} (${options.join(', ')})`);
  }

  if (config.handlers.length === 0) row('workers', 'none (no handlers)');
  else if (workers === 0) row('workers', 'in this process (start --workers N runs them in N processes instead)');
  else {
    row('workers', `${workers} process${workers === 1 ? '' : 'es'} (pid ${started.workerPids.join(', ')}), each running every handler on the shared broker`);
    row('', `a worker process that dies is restarted after ${duration(RESTART_DELAY_MS)} (doubling, at most ${duration(MAX_RESTART_DELAY_MS)})`);
  }
  row('logs', `JSON lines on stdout at level ${config.logLevel} (BOTQUEUE_LOG_LEVEL)`);
  row('stop', `Ctrl-C or SIGTERM: running handlers get to finish, everything stops within ${duration(config.shutdownTimeoutMs)}`);
  return lines;
}

/** 86400000 → "24 h", 90000 → "90 s", 500 → "500 ms". */
export function duration(ms: number): string {
  if (ms === 0) return '0 ms';
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000} h`;
  if (ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}
