import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { spawnCli, workspace } from './helpers.js';

const ws = workspace('start');
after(() => ws.cleanup());

describe('botqueue start', () => {
  test('runs the service on the --url broker until SIGTERM, then exits 0; the banner on stderr, only JSON on stdout', async () => {
    const url = `sqlite:${join(ws.dir, 'from-flag.db')}`;
    const child = spawnCli(['start', '--url', url], { cwd: ws.dir, env: { ...ws.env, BOTQUEUE_PORT: '0', BOTQUEUE_LOG_LEVEL: 'info' } });
    let banner = '';
    let logs = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (logs += chunk));
    child.stderr.setEncoding('utf8');
    const exited = once(child, 'exit');
    try {
      const running = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not running after 15 s:\n${banner}\n${logs}`)), 15_000);
        child.stderr.on('data', (chunk: string) => {
          banner += chunk;
          const http = /^\s+http\s+(http:\/\/\S+)$/m.exec(banner);
          if (http !== null && /^\s+broker\s+/m.test(banner)) {
            clearTimeout(timer);
            resolve(http[1]!);
          }
        });
        child.on('exit', (code) => reject(new Error(`exited ${code} before running:\n${banner}\n${logs}`)));
      });
      assert.match(banner, new RegExp(`^\\s+broker\\s+${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm')); // --url, not BOTQUEUE_URL
      const health = await fetch(`${running}/healthz`);
      assert.equal(health.status, 200);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await exited;
    assert.equal(code, 0, banner);
    assert.match(banner, /botqueue: stopped/);
    const jsonLines = logs.split('\n').filter((line) => line !== '');
    assert.ok(jsonLines.length > 0, 'info lines were logged');
    for (const line of jsonLines) {
      const record = JSON.parse(line) as Record<string, unknown>;
      assert.equal(record['ecs.version'], '8.11.0', line);
      assert.equal(typeof record['@timestamp'], 'string');
      assert.equal(typeof record['log.level'], 'string');
      assert.equal(typeof record.message, 'string');
    }
  });

  test('--workers must be a number from 0 to 64', async () => {
    const result = await ws.run(['start', '--workers', '1000']);
    assert.equal(result.code, 2);
    assert.equal(result.errorLines.length, 1);
    assert.match(result.errorLines[0]!, /^botqueue: --workers must be an integer from 0 to 64, got "1000" — run botqueue start --help/);
  });
});
