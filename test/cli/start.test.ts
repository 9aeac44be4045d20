import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { spawnCli, workspace } from './helpers.js';

const ws = workspace('start');
after(() => ws.cleanup());

describe('botqueue start', () => {
  test('runs the service on the --url broker until SIGTERM, then exits 0', async () => {
    const url = `sqlite:${join(ws.dir, 'from-flag.db')}`;
    const child = spawnCli(['start', '--url', url], { cwd: ws.dir, env: { ...ws.env, BOTQUEUE_PORT: '0', BOTQUEUE_LOG_LEVEL: 'silent' } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const exited = once(child, 'exit');
    try {
      const running = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`not running after 15 s:\n${stdout}\n${stderr}`)), 15_000);
        child.stdout.on('data', (chunk: string) => {
          stdout += chunk;
          const http = /^\s+http\s+(http:\/\/\S+)$/m.exec(stdout);
          if (http !== null && /^\s+broker\s+/m.test(stdout)) {
            clearTimeout(timer);
            resolve(http[1]!);
          }
        });
        child.on('exit', (code) => reject(new Error(`exited ${code} before running:\n${stdout}\n${stderr}`)));
      });
      assert.match(stdout, new RegExp(`^\\s+broker\\s+${url.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm')); // --url, not BOTQUEUE_URL
      const health = await fetch(`${running}/healthz`);
      assert.equal(health.status, 200);
    } finally {
      child.kill('SIGTERM');
    }
    const [code] = await exited;
    assert.equal(code, 0, stderr);
  });

  test('--workers must be a number from 0 to 64', async () => {
    const result = await ws.run(['start', '--workers', '1000']);
    assert.equal(result.code, 2);
    assert.equal(result.errorLines.length, 1);
    assert.match(result.errorLines[0]!, /^botqueue: --workers must be an integer from 0 to 64, got "1000" — run botqueue start --help/);
  });
});
