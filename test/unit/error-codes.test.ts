/**
 * Every `BOTQUEUE_*` code the source uses is a value of ErrorCodes and is explained in
 * docs/errors.md, so codes stay in one registry (never reused, never invented in place) and
 * every one a user can meet says what to do.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { ErrorCodes } from '../../src/core/errors.js';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** `BOTQUEUE_*` names that are environment variables, not error codes. */
const ENVIRONMENT_VARIABLES = new Set(['BOTQUEUE_URL', 'BOTQUEUE_SERVER', 'BOTQUEUE_STORE_URL', 'BOTQUEUE_PORT', 'BOTQUEUE_HOST', 'BOTQUEUE_LOG_LEVEL', 'BOTQUEUE_ADMIN_TOKEN', 'BOTQUEUE_WEBHOOK_SECRET']);

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every code named in src/ (in code, strings and comments alike), with where it is. */
function codesInSource(): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const file of sourceFiles(join(root, 'src'))) {
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => {
        for (const [code] of line.matchAll(/\bBOTQUEUE_[A-Z0-9_]*[A-Z0-9]\b/g)) {
          if (ENVIRONMENT_VARIABLES.has(code)) continue;
          found.set(code, [...(found.get(code) ?? []), `${relative(root, file)}:${i + 1}`]);
        }
      });
  }
  return found;
}

/** The codes docs/errors.md explains: one `### \`BOTQUEUE_...\`` heading each. */
function codesInDocs(): Set<string> {
  const text = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
  return new Set([...text.matchAll(/^### `(BOTQUEUE_[A-Z0-9_]+)`$/gm)].map((m) => m[1]!));
}

describe('error codes', () => {
  const registry = new Set<string>(Object.values(ErrorCodes));
  const used = codesInSource();

  test('the scan finds codes outside the registry too (guards against a scan that sees nothing)', () => {
    const elsewhere = [...used.values()].flat().filter((where) => !where.startsWith(join('src', 'core', 'errors.ts')));
    assert.ok(elsewhere.length > 0, [...used.keys()].join(', '));
  });

  test('every BOTQUEUE_* code used in src/ is a value of ErrorCodes', () => {
    const unknown = [...used].filter(([code]) => !registry.has(code)).map(([code, where]) => `${code} (${where.join(', ')})`);
    assert.deepEqual(unknown, [], 'add these to ErrorCodes in src/core/errors.ts (or, for an environment variable, to ENVIRONMENT_VARIABLES here)');
  });

  test('every code of ErrorCodes and every code used in src/ is explained in docs/errors.md', () => {
    const documented = codesInDocs();
    const missing = [...new Set([...registry, ...used.keys()])].filter((code) => !documented.has(code));
    assert.deepEqual(missing, [], 'add a "### `CODE`" section to docs/errors.md: what it means, what to do');
  });
});
