import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSqlite } from '../../src/brokers/sqlite/index.js';
import { describeConformance } from './suite.js';

const dir = mkdtempSync(join(tmpdir(), 'botqueue-conformance-'));
let counter = 0;
const file = (shared?: string) => join(dir, shared === undefined ? `db-${counter++}.db` : `shared-${shared}.db`);

describeConformance({
  name: 'sqlite',
  url: (shared) => `sqlite:${file(shared)}`,
  brokerWithClock: (now, shared) => Promise.resolve(openSqlite(file(shared), { now })),
  cleanup: () => {
    rmSync(dir, { recursive: true, force: true });
    return Promise.resolve();
  },
});
