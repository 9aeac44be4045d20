/**
 * The README's example is a real program: it is kept in examples/quickstart.ts, which must
 * match the README's code block, and it must run to the end. It imports 'botqueue' itself
 * (the package's own exports, so the build in dist/), as a user would.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const root = join(import.meta.dirname, '..', '..');

test('examples/quickstart.ts is the README example', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = /## Use it\n\n```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block !== undefined, 'README has a "Use it" TypeScript block');
  const example = readFileSync(join(root, 'examples', 'quickstart.ts'), 'utf8');
  assert.equal(example.slice(example.indexOf('\n') + 1), block);
});

test('the README example runs on the embedded SQLite default and handles its updates', async () => {
  const cwd = mkdtempSync(join(tmpdir(), 'botqueue-readme-'));
  try {
    const env = { ...process.env };
    delete env.BOTQUEUE_URL;
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('tsx'), join(root, 'examples', 'quickstart.ts')], {
      cwd,
      env,
      timeout: 30_000,
    });
    assert.match(stdout, /duplicate: false/);
    assert.match(stdout, /reply to chat:42: hi/);
    assert.match(stdout, /reply to chat:42: how are you\?/);
    assert.match(stdout, /reply to chat:7: hello/);
  } finally {
    rmSync(cwd, { recursive: true, force: true });
  }
});
