import { join } from 'node:path';
import { describeProcessConformance } from './processes-suite.js';

describeProcessConformance('sqlite', (dir) => `sqlite:${join(dir, 'queue.db')}`);
