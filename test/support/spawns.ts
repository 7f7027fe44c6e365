/**
 * Counting the child processes a test's code starts (issue 10: each spawn blocks the control process until the child
 * has exec'd, so tests count them).
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';

/**
 * Runs `body` while counting the child processes this process starts through node:child_process's `spawn` and
 * `execFile` (what src/transport/ssh-config.ts imports); resolves to body's result and the commands started, in
 * order. The originals are put back afterwards, also when body throws.
 */
export async function spawnsDuring<T>(body: () => Promise<T>): Promise<{ result: T; spawns: string[] }> {
  const cp = createRequire(import.meta.url)('node:child_process') as typeof import('node:child_process');
  const original = { spawn: cp.spawn, execFile: cp.execFile };
  const spawns: string[] = [];
  const counted =
    <F extends (...args: never[]) => unknown>(f: F) =>
    (...args: Parameters<F>) => {
      spawns.push(String(args[0]));
      return f(...args);
    };
  cp.spawn = counted(original.spawn) as typeof cp.spawn;
  cp.execFile = counted(original.execFile) as typeof cp.execFile;
  syncBuiltinESMExports(); // the named imports of node:child_process follow
  try {
    return { result: await body(), spawns };
  } finally {
    Object.assign(cp, original);
    syncBuiltinESMExports();
  }
}
