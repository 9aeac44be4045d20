import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { root, workspace } from './helpers.js';

const ws = workspace('basics');
after(() => ws.cleanup());

/** An error exits non-zero with exactly one line on stderr, `botqueue: <what> — <what to do>`, and no stack. */
function assertOneLineError(result: { code: number | null; stdout: string; errorLines: string[] }, code: number, pattern: RegExp): void {
  assert.equal(result.code, code, result.errorLines.join('\n'));
  assert.equal(result.stdout, '');
  assert.equal(result.errorLines.length, 1, result.errorLines.join('\n'));
  assert.match(result.errorLines[0]!, /^botqueue: .+ — .+$/);
  assert.match(result.errorLines[0]!, pattern);
}

describe('botqueue (the command line itself)', () => {
  test('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
    const result = await ws.run(['--version']);
    assert.equal(result.code, 0);
    assert.equal(result.stdout, `${version}\n`);
  });

  test('--help lists every command, and every command has --help', async () => {
    const result = await ws.run(['--help']);
    assert.equal(result.code, 0);
    const commands = ['start', 'publish', 'stats', 'dlq', 'topics', 'doctor'];
    for (const name of commands) assert.match(result.stdout, new RegExp(`^ {2}${name} +\\S`, 'm'));
    const pages = await Promise.all(commands.map((name) => ws.run([name, '--help'])));
    pages.forEach((page, i) => {
      assert.equal(page.code, 0, `${commands[i]} --help`);
      assert.match(page.stdout, new RegExp(`^Usage:[\\s\\S]*botqueue ${commands[i]}`), `${commands[i]} --help`);
      assert.match(page.stdout, /--url <url>/);
    });
    const viaHelp = await ws.run(['help', 'dlq']);
    assert.equal(viaHelp.stdout, pages[3]!.stdout);
  });

  test('an unknown command is one line that points at --help', async () => {
    assertOneLineError(await ws.run(['frobnicate']), 2, /^botqueue: unknown command "frobnicate" — run botqueue --help$/);
  });

  test('an unknown flag, a missing value and a bad number are one line each', async () => {
    assertOneLineError(await ws.run(['stats', '--bogus']), 2, /^botqueue: unknown option --bogus for stats — run botqueue stats --help/);
    assertOneLineError(await ws.run(['--bogus', 'stats']), 2, /^botqueue: unknown option --bogus — run botqueue --help$/);
    assertOneLineError(await ws.run(['dlq', 'list', '--limit']), 2, /option --limit needs a value/);
    assertOneLineError(await ws.run(['dlq', 'list', '--limit', 'many']), 2, /--limit must be an integer from 1 to 100000, got "many"/);
    assertOneLineError(await ws.run(['stats', '--json=yes']), 2, /option --json takes no value/);
    assertOneLineError(await ws.run(['stats', 'a', 'b']), 2, /unexpected argument "b" for stats/);
    assertOneLineError(await ws.run(['topics', 'create']), 2, /topics needs a topic name/);
  });

  test('a library error is one line with its code and what to do; --debug adds the stack', async () => {
    const plain = await ws.run(['stats', '--url', 'ftp://example.org/queue']);
    assertOneLineError(plain, 1, /unsupported botqueue URL "ftp:\/\/example.org\/queue".*\(BOTQUEUE_UNSUPPORTED_URL\) — pass --url or set BOTQUEUE_URL/);
    assert.doesNotMatch(plain.stderr, /\n\s+at /);
    const debug = await ws.run(['stats', '--url', 'ftp://example.org/queue', '--debug']);
    assert.equal(debug.code, 1);
    assert.equal(debug.errorLines[0], plain.errorLines[0]);
    assert.match(debug.stderr, /\n\s+at connect \(/);
  });

  test('--url wins over BOTQUEUE_URL', async () => {
    const result = await ws.run(['publish', 'elsewhere', '--payload', '1', '--url', `sqlite:${join(ws.dir, 'other.db')}`]);
    assert.equal(result.code, 0, result.stderr);
    // Nothing was written at BOTQUEUE_URL: its file does not even exist (and a read creates none).
    const here = await ws.run(['topics', 'list', '--json']);
    assert.equal(here.code, 1);
    assert.match(here.stderr, /no botqueue store at .*BOTQUEUE_STORE_NOT_FOUND/);
    const there = (await ws.json(['topics', 'list', '--json', '--url', `sqlite:${join(ws.dir, 'other.db')}`])) as { topics: { name: string }[] };
    assert.deepEqual(
      there.topics.map((t) => t.name),
      ['elsewhere'],
    );
  });

  test('a config file declares a topic: publish creates it with its partitions', async () => {
    const config = join(ws.dir, 'custom.config.json');
    writeFileSync(config, JSON.stringify({ topics: { declared: { partitions: 3 } } }));
    const result = await ws.run(['publish', 'declared', '--payload', '"x"', '--config', config]);
    assert.equal(result.code, 0, result.stderr);
    const stats = (await ws.json(['stats', 'declared', '--json'])) as { topics: { partitions: number }[] };
    assert.equal(stats.topics[0]!.partitions, 3);
    assertOneLineError(await ws.run(['stats', '--config', join(ws.dir, 'nope.json')]), 1, /^botqueue: could not load the configuration: config file not found/);
  });
});
