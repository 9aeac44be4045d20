/**
 * Binaries some tests run (Debian's promtool and chromium, installed by .ci/services.sh): a
 * missing one skips the test loudly outside CI and fails it in CI.
 */
import { execFile, spawnSync } from 'node:child_process';

export const CHROMIUM = '/usr/bin/chromium';

/** Undefined when the binary runs, else why not. */
export function missingTool(binary: string): string | undefined {
  const result = spawnSync(binary, ['--version'], { encoding: 'utf8', timeout: 20_000 });
  if (result.error !== undefined) return `${binary}: ${result.error.message}`;
  return undefined;
}

/** The reason to skip (outside CI), or throws in CI; undefined when the tool is there. */
export function skipWithout(binary: string, install: string): string | undefined {
  const missing = missingTool(binary);
  if (missing === undefined) return undefined;
  const message = `${missing} (install ${install}: bash .ci/services.sh does)`;
  if (process.env.CI !== undefined && process.env.CI !== '') throw new Error(`CI is set and ${message}`);
  process.stderr.write(`\n!!! SKIPPED: ${message}\n\n`);
  return message;
}

/** Runs `promtool args…` with `input` on stdin; resolves with its exit code and output. */
export function promtool(args: string[], input = ''): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile('promtool', args, { timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof (error as { code?: unknown }).code === 'number' ? ((error as { code: number }).code) : 1;
      resolve({ code, output: `${stdout}${stderr}` });
    });
    child.stdin?.end(input);
  });
}
