/**
 * The dashboard end to end in Debian's headless Chromium (driven by playwright-core; no browser
 * is downloaded): a real server on a real SQLite file, a worker whose handler fails a message
 * until it is fixed; the test opens /dashboard, types the admin token, finds the dead letter,
 * opens its detail (stack, payload), redrives it with the confirmation, and sees it handled.
 * A screenshot goes to the test's temp dir; with BOTQUEUE_UPDATE_SCREENSHOT=1 it replaces
 * docs/dashboard.png (a test run does not rewrite a tracked file).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { connect } from '../../src/index.js';
import { resolveConfig } from '../../src/service/config.js';
import { createHttpServer, listen } from '../../src/service/http.js';
import { createLogger } from '../../src/service/logger.js';
import { CHROMIUM, skipWithout } from '../support/tools.js';
import { TOKEN, waitFor } from './harness.js';

const DOCS_SCREENSHOT = fileURLToPath(new URL('../../docs/dashboard.png', import.meta.url));
const closers: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const close of closers.reverse()) await close();
});

test('dashboard: find a dead letter, read its detail, redrive it, see it handled', async (t) => {
  const skip = skipWithout(CHROMIUM, "Debian's chromium package");
  if (skip !== undefined) return t.skip(skip);
  const dir = mkdtempSync(join(tmpdir(), 'bq-dashboard-'));
  closers.push(() => Promise.resolve(rmSync(dir, { recursive: true, force: true })));
  const bq = await connect(`sqlite:${join(dir, 'bq.db')}`);
  closers.push(() => bq.close());
  const config = resolveConfig({}, { cwd: dir, env: { BOTQUEUE_ADMIN_TOKEN: TOKEN }, path: undefined, label: 'config' });
  const app = createHttpServer({ bq, config: { ...config, host: '127.0.0.1' }, logger: createLogger({ level: 'silent', role: 'gateway', destination: { write: () => undefined } }) });
  closers.push(() => app.close());
  const { url } = await listen(app, '127.0.0.1', 0);

  let fixed = false;
  const handled: string[] = [];
  await bq.createTopic('telegram.updates', { partitions: 4 });
  const worker = bq.worker<{ text: string }>(
    'telegram.updates',
    (message) => {
      if (message.payload.text === 'boom' && !fixed) throw new Error('reply failed: chat not found');
      handled.push(message.id);
    },
    { group: 'bot', maxAttempts: 2, backoffBaseMs: 10, backoffCapMs: 20 },
  );
  closers.push(() => worker.close());
  await worker.ready;
  for (let i = 0; i < 20; i++) await bq.publish('telegram.updates', { key: `chat:${i % 5}`, id: `tg:${i}`, payload: { text: `hello ${i}` } });
  await bq.publish('telegram.updates', { key: 'chat:9', id: 'tg:boom', payload: { text: 'boom' } });
  await waitFor('the dead letter', async () => (await bq.deadLetters.list({ topic: 'telegram.updates' })).length === 1, 20_000);

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  closers.push(() => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(error.message));
  page.on('dialog', (dialog) => {
    assert.match(dialog.message(), /Redrive dead letter #\d+ \(message tg:boom\)/);
    void dialog.accept();
  });

  await page.goto(`${url}/dashboard`);
  await page.fill('#token', TOKEN);
  await page.click('#login-form button');
  await page.waitForSelector('#topics tr[data-topic="telegram.updates"]');
  const row = page.locator('tr.dead-letter', { hasText: 'tg:boom' });
  await row.waitFor();
  assert.match(await row.innerText(), /reply failed: chat not found/);
  assert.match(await page.locator('#summary').innerText(), /reply failed: chat not found\s+1/);
  // Filters: another error text shows nothing.
  await page.fill('#dlq-filters input[name="errorContains"]', 'no such error');
  await page.click('#dlq-filters button:not([type])');
  await page.waitForSelector('#dlq-empty');
  await page.fill('#dlq-filters input[name="errorContains"]', 'chat not found');
  await page.click('#dlq-filters button:not([type])');
  await row.waitFor();
  // Wait for a second refresh so that the chart and the rate have two points.
  await page.waitForTimeout(2_500);
  await row.click();
  await page.waitForSelector('#detail-stack');
  assert.match(await page.locator('#detail-stack').innerText(), /Error: reply failed: chat not found\n\s+at /);
  assert.match(await page.locator('#detail-payload').innerText(), /"text": "boom"/);
  await page.screenshot({ path: process.env.BOTQUEUE_UPDATE_SCREENSHOT === '1' ? DOCS_SCREENSHOT : join(dir, 'dashboard.png'), fullPage: true });

  fixed = true;
  await page.click('#redrive-one');
  await waitFor('the redriven message handled', () => handled.includes('tg:boom'), 20_000);
  await page.waitForSelector('#dlq-empty', { timeout: 10_000 });
  assert.equal((await bq.deadLetters.list({ topic: 'telegram.updates' })).length, 0);
  assert.deepEqual(problems, [], 'no script error on the page');
});

test('dashboard: served without data; every data route needs the token', async () => {
  const bq = await connect('memory:');
  closers.push(() => bq.close());
  const config = resolveConfig({}, { cwd: process.cwd(), env: { BOTQUEUE_ADMIN_TOKEN: TOKEN }, path: undefined, label: 'config' });
  const app = createHttpServer({ bq, config, logger: createLogger({ level: 'silent', role: 'gateway', destination: { write: () => undefined } }) });
  closers.push(() => app.close());
  const page = await app.inject({ method: 'GET', url: '/dashboard' });
  assert.equal(page.statusCode, 200);
  assert.match(String(page.headers['content-type']), /text\/html/);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
  for (const url of ['/v1/stats', '/v1/dead-letters', '/v1/dead-letters/summary', '/v1/dead-letters/1', '/metrics']) {
    assert.equal((await app.inject({ method: 'GET', url })).statusCode, 401, url);
  }
  assert.equal((await app.inject({ method: 'DELETE', url: '/v1/topics/x' })).statusCode, 401);
});
