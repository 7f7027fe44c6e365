#!/usr/bin/env node
/** The executable: Ctrl-C handling, then main(). Kept apart so tests can call main() in-process. */
import { installInterruptHandler } from './interrupt.js';
import { main } from './main.js';

installInterruptHandler();
process.exitCode = await main(process.argv);
