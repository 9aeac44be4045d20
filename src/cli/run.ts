/**
 * Runs the CLI from source (`node --import tsx src/cli/run.ts <command>`), as the tests do so
 * that they need no build. The installed entry is bin/botqueue.js, which loads dist/cli/main.js.
 */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
