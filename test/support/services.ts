/**
 * The real servers the RabbitMQ backend's tests talk to, and the rule for when one is missing:
 * outside CI the suite is skipped with a loud message; in CI (CI set) it fails.
 */
import { connect as netConnect } from 'node:net';

export const RABBITMQ_URL = process.env.BOTQUEUE_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
export const STORE_URL = process.env.BOTQUEUE_STORE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function reachable(url: string, defaultPort: number): Promise<string | undefined> {
  const parsed = new URL(url);
  const port = parsed.port === '' ? defaultPort : Number(parsed.port);
  return new Promise((resolve) => {
    const socket = netConnect({ host: parsed.hostname, port, timeout: 2_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(`${parsed.hostname}:${port} timed out`);
    });
    socket.once('error', (error) => resolve(`${parsed.hostname}:${port}: ${error.message}`));
  });
}

/** Undefined when RabbitMQ and PostgreSQL both accept connections, else what is missing. */
export async function missingServices(): Promise<string | undefined> {
  const problems: string[] = [];
  const rabbit = await reachable(RABBITMQ_URL, 5672);
  if (rabbit !== undefined) problems.push(`RabbitMQ (${rabbit})`);
  const pg = await reachable(STORE_URL, 5432);
  if (pg !== undefined) problems.push(`PostgreSQL (${pg})`);
  return problems.length === 0 ? undefined : problems.join(' and ');
}

/** Loud skip outside CI, failure in CI. Returns true when the caller should not register its tests. */
export function reportMissing(suite: string, missing: string | undefined, test: (name: string, options: { skip?: string }, fn: () => void) => unknown): boolean {
  if (missing === undefined) return false;
  if (process.env.CI !== undefined && process.env.CI !== '') {
    test(`${suite}: needs ${missing}`, {}, () => {
      throw new Error(`${suite} needs ${missing}, which is not reachable; in CI a missing server is a failure (start it: see .ci/services.sh)`);
    });
  } else {
    const message = `SKIPPED ${suite}: ${missing} not reachable. Start it (see .ci/services.sh); in CI this is a failure.`;
    console.warn(`\n*** ${message} ***\n`);
    test(suite, { skip: message }, () => undefined);
  }
  return true;
}
