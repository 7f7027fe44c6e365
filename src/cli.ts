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
} else if (args[0] === '__control-master') {
  // hidden: the --control-persist master a run starts in the background (src/transport/control-master.ts)
  const { runMaster } = await import('./transport/control-master.js');
  process.exit(await runMaster(args.slice(1)));
} else {
  // A reader that goes away (`meshctl up --json | head -1`, a jq that failed) breaks the pipe: node emits EPIPE on
  // the stream, and with no listener that is an uncaught exception that killed the run where it stood, its locks
  // left on every node (the next `up` was refused for an hour) and its state unwritten. Output to a closed reader is
  // dropped instead and the run ends as it would have (writes to a destroyed stream are ignored; src/exit.ts and
  // src/ui/json-text.ts stop waiting on it). EIO is the same for a terminal that hung up (SIGHUP: src/interrupt.ts
  // lets the run end). Any other stream error is still thrown.
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE' && error.code !== 'EIO') throw error;
    });
  // one import: main re-exports what this needs (each separate import was a file more for node's module loader)
  const { main, exitsWhenDone, installInterruptHandler, flushed } = await import('./main.js');
  // `lab exec` and `lab run` pass a command through to a child: SIGINT only, as before (src/interrupt.ts)
  const [word, sub] = args.filter((a) => !a.startsWith('-'));
  installInterruptHandler(word === 'lab' && (sub === 'exec' || sub === 'run') ? ['SIGINT'] : undefined);
  const code = await main(process.argv);
  process.exitCode = code;
  if (exitsWhenDone(process.argv)) {
    // everything the command owes its user is done (lock released, state recorded, report written): leave now, not
    // once node has closed the nodes' sockets and torn its heap down (issue 10: 50-120 ms at the end of every run)
    await flushed([process.stdout, process.stderr]);
    process.exit(code);
  }
}
