#!/usr/bin/env node
// The botqueue CLI. tsx is registered so that a botqueue.config.ts and TypeScript handler
// modules load as they are, without a build step of the user's.
import { register } from 'tsx/esm/api';

register();
/** @type {{ main(argv: string[]): Promise<number> }} */
const cli = await import('../dist/cli/main.js');
process.exitCode = await cli.main(process.argv.slice(2));
