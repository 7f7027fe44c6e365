/**
 * Ctrl-C handling shared by every command: the first SIGINT aborts `interruptSignal` so running work can stop
 * its remote side (captures, half-done phases), release its run locks and exit 130; a second SIGINT exits at once,
 * after the lines of what that leaves behind (onForcedExit).
 * SIGTERM (kill, timeout(1), a CI job cancelled, systemd stopping a unit) and SIGHUP (the operator's terminal or SSH
 * session closed) are the same request to stop: node's default for both was to die where it stood, which left the
 * run lock on every node (the next `up` was refused for an hour: "locked by another meshctl run"; lab t1, SIGTERM to
 * an `up` waiting at a gate) and the state unwritten.
 */
import { setMaxListeners } from 'node:events';
import { ExitCode } from './errors.js';

const controller = new AbortController();
export const interruptSignal: AbortSignal = controller.signal;
// every remote command in flight listens on it (one per node and more at once, by design): Node's default warning
// past 10 listeners ("possible memory leak") would be printed to users of any mesh of more than 10 nodes
setMaxListeners(0, interruptSignal);

/** The signals that ask meshctl to stop: the first aborts interruptSignal, the second of any of them exits. */
export const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** What a forced exit (the second signal) says first: see onForcedExit. */
const exitNotes = new Set<() => string | undefined>();

/**
 * Registers `note`, asked at a second SIGINT/SIGTERM/SIGHUP just before meshctl exits at once (130): what that exit
 * leaves behind (`up`: the nodes whose rollback it skips, and by when each rolls back by itself). A note is one line
 * for stderr, or undefined for nothing; it must not throw. Returns the function that unregisters it.
 */
export function onForcedExit(note: () => string | undefined): () => void {
  exitNotes.add(note);
  return () => exitNotes.delete(note);
}

/** The registered notes' lines (onForcedExit), in the order they were registered. */
export function forcedExitNotes(): string[] {
  return [...exitNotes].flatMap((note) => note() ?? []);
}

/** How many callers hold the forced exit back (holdForcedExit), and the signals after the first seen meanwhile. */
let held = 0;
let heldSignals = 0;

/**
 * Holds back the second signal's exit while a child process of ours owns the terminal's work (`lab run` / `lab exec`
 * run meshctl or a command inside the lab: the child gets every signal and decides; this process must live until
 * it ended, or the operator's prompt comes back while it still writes: a new user's finding). The first signal
 * still aborts interruptSignal; a third exits at once all the same (a child that hangs must not hold the terminal).
 * Returns the function that releases the hold.
 */
export function holdForcedExit(): () => void {
  held++;
  let released = false;
  return () => {
    if (!released) held--;
    released = true;
  };
}

let installed = false;
/**
 * Handles `signals` (default: all STOP_SIGNALS). `meshctl lab exec` and `lab run` take SIGINT only: their child
 * gets a terminal's signals itself, and `timeout 10 meshctl lab exec NODE -- cmd` must still end them at the first
 * SIGTERM, as it did.
 */
export function installInterruptHandler(signals: readonly (typeof STOP_SIGNALS)[number][] = STOP_SIGNALS): void {
  if (installed) return;
  installed = true;
  for (const signal of signals) {
    process.on(signal, () => {
      if (controller.signal.aborted) {
        // held (a child runs): the second signal is the child's; a third ends this process too (a child that hangs)
        if (held > 0 && ++heldSignals < 2) return;
        for (const line of forcedExitNotes()) process.stderr.write(`${line}\n`);
        process.exit(ExitCode.interrupted);
      }
      controller.abort(new Error(signal === 'SIGINT' ? 'interrupted' : `interrupted (${signal})`));
    });
  }
}
