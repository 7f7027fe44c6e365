/**
 * Runs a short, one-off piece of work (parsing and checking an input file) with V8's optimising compiler, TurboFan,
 * switched off, and switches it back on after (issue 10: start to the first SSH connection).
 *
 * Why: the `yaml` library's lexer, parser and composer become "hot" while one inventory of 32-100 nodes is parsed,
 * and V8 then compiles them with TurboFan on its background threads: CPU that process.cpuUsage counts but that
 * `--cpu-prof` (main thread only) never shows, spent on code that runs once per process and is done before the
 * optimised code would pay back. Measured (docs/transport-cost.md, "The inventory's parse without TurboFan"):
 * parse and checks of the 32-node bench inventory ~90 -> ~40 ms of CPU, of 100 nodes ~190 -> ~70 ms; at 4 nodes
 * nothing gets hot and nothing changes. Unlike a process-wide `--no-opt` on node's command line (worse at 4 nodes,
 * helper L's measurement), the rest of the process (ssh2's key exchange, the engine) still gets TurboFan.
 *
 * How: `v8.setFlagsFromString('--no-turbofan')` before and `'--turbofan'` after (V8's TieringManager reads the flag
 * at each tiering decision; node runs V8 with `--no-freeze-flags-after-init`, so flags may change at run time).
 * Interpreted (Ignition) and baseline (Sparkplug) code are unchanged, so what the work computes is the same.
 * Left alone, running `fn` as is: when node was started with its own `--opt`, `--no-opt`, `--turbofan` or
 * `--no-turbofan`, or `--jitless` (command line or NODE_OPTIONS: the user's choice is kept), and inside another such call (only the
 * outermost switches). `fn` must be synchronous: nothing else runs while TurboFan is off.
 */
import v8 from 'node:v8';

/** Counts of what withoutTurbofan did in this process (for tests: the flag switches, not timings). */
export const turbofanSwitches = { off: 0, on: 0 };

let depth = 0;

/** `--opt`, `--turbofan` (and their `--no-` forms) choose TurboFan; `--jitless` rules out every compiler. */
const OWN_FLAG = /(^|\s)--((no-)?(opt|turbofan)|jitless)(\s|=|$)/;

/** True when node's own options (command line, NODE_OPTIONS) already say whether TurboFan runs (or `--jitless`). */
export function nodeSetsTurbofan(execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): boolean {
  return execArgv.some((arg) => OWN_FLAG.test(arg)) || OWN_FLAG.test(nodeOptions);
}

/** `fn()`'s result (or its exception), computed with TurboFan off (see the top of this file). */
export function withoutTurbofan<T>(fn: () => T): T {
  if (depth > 0 || nodeSetsTurbofan()) return fn();
  depth++;
  v8.setFlagsFromString('--no-turbofan');
  turbofanSwitches.off++;
  try {
    return fn();
  } finally {
    v8.setFlagsFromString('--turbofan');
    turbofanSwitches.on++;
    depth--;
  }
}
