import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { workspace } from './helpers.js';

const ws = workspace('doctor');
after(() => {
  chmodSync(join(ws.dir, 'locked'), 0o700);
  ws.cleanup();
});
mkdirSync(join(ws.dir, 'locked'), { mode: 0o500 });

describe('botqueue doctor', () => {
  test('passes on a good sqlite URL, one OK line per check', async () => {
    const result = await ws.run(['doctor']);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.equal(result.stderr, '');
    const lines = result.stdout.trimEnd().split('\n');
    assert.deepEqual(
      lines.map((line) => line.split(/\s+/).slice(0, 2).join(' ')),
      ['OK node', 'OK config', 'OK driver', 'OK url', 'OK data-dir', 'OK connect', 'all checks'],
    );
    assert.match(result.stdout, /better-sqlite3 12\.\d+\.\d+ loads/);
    assert.ok(existsSync(join(ws.dir, 'bq.db')), 'connect opened the file');

    const json = (await ws.json(['doctor', '--json'])) as { ok: boolean; checks: { name: string; status: string; detail: string; fix: string | null }[] };
    assert.equal(json.ok, true);
    assert.deepEqual(
      json.checks.map((c) => [c.name, c.status, c.fix]),
      ['node', 'config', 'driver', 'url', 'data-dir', 'connect'].map((name) => [name, 'ok', null]),
    );
  });

  test('fails with exit 1 on an unsupported scheme', async () => {
    const result = await ws.run(['doctor', '--url', 'redis://127.0.0.1:6379']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^FAIL {2}url {7}redis:\/\/127\.0\.0\.1:6379: unsupported scheme redis: — use sqlite:<path>/m);
    assert.match(result.stdout, /^SKIP {2}connect/m);
    assert.equal(result.errorLines.length, 1);
    assert.match(result.errorLines[0]!, /^botqueue: 1 check failed \(url\) — fix what the FAIL lines say/);
  });

  test('fails with exit 1 when the data directory cannot be created', async () => {
    writeFileSync(join(ws.dir, 'blocker'), 'a file where a directory should be');
    const result = await ws.run(['doctor'], { env: { BOTQUEUE_URL: 'sqlite:./blocker/data/bq.db' } });
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^FAIL {2}data-dir .*blocker\/data cannot be created: .*blocker is not a directory — /m);
    assert.match(result.stdout, /^SKIP {2}connect {3}the data directory is not usable/m);
    assert.equal(result.errorLines.length, 1);
    assert.match(result.errorLines[0]!, /^botqueue: 1 check failed \(data-dir\)/);
  });

  test('fails with exit 1 when the data directory is not writable', async (t) => {
    // Permission bits stop anyone but root; /proc stops root too (Linux).
    const root = process.getuid?.() === 0;
    if (root && process.platform !== 'linux') return t.skip('root writes anywhere and there is no /proc here');
    const url = root ? 'sqlite:/proc/botqueue-doctor-test/bq.db' : 'sqlite:./locked/bq.db';
    const result = await ws.run(['doctor'], { env: { BOTQUEUE_URL: url } });
    assert.equal(result.code, 1);
    assert.match(result.stdout, root ? /^FAIL {2}data-dir\s+\/proc\/botqueue-doctor-test cannot be created: \/proc is not writable/m : /^FAIL {2}data-dir\s+.*locked is not writable/m);
    assert.equal(result.errorLines.length, 1);
  });

  test('a broken config file is a FAIL line, and the other checks still run', async () => {
    const result = await ws.run(['doctor', '--config', 'missing.config.json']);
    assert.equal(result.code, 1);
    assert.match(result.stdout, /^FAIL {2}config {4}could not load the configuration: config file not found: .*missing\.config\.json/m);
    assert.match(result.stdout, /^OK {4}connect/m);
  });
});
