#!/usr/bin/env node
/**
 * The executable: Ctrl-C handling, then main(). Kept apart so tests can call main() in-process.
 * `meshctl --version` alone is answered before the argument parser is even loaded: it is what scripts and
 * shell completions call most, and it should cost no more than node's own start.
 */
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  const { VERSION } = await import('./version.js');
  process.stdout.write(`${VERSION}\n`);
} else {
  const { installInterruptHandler } = await import('./interrupt.js');
  const { main } = await import('./main.js');
  installInterruptHandler();
  process.exitCode = await main(process.argv);
}
