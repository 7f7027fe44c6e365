/**
 * A network namespace of this machine made for one test and deleted after it (`ip netns add`/`del`), for scripts
 * that must act on real interfaces (a tun device stands in for wireguard-go's, a dummy-free way: no module needed).
 * Nothing in it reaches the host's network: it has only what the test makes there.
 */
import { execFileSync } from 'node:child_process';

/** Why a namespace cannot be made here (not root), or undefined. */
export const netnsSkipReason = (): string | undefined => (process.getuid?.() !== 0 ? 'needs root for a network namespace' : undefined);

/**
 * Runs `body` with `run(script)`, which runs a script under sh in the namespace `PREFIX-PID` and returns its stdout
 * (throws on a non-zero exit, with its stderr); `env` replaces the script's environment. The namespace is deleted
 * afterwards, whatever happened.
 */
export function withNetns<T>(prefix: string, body: (run: (script: string) => string, ns: string) => T, env?: NodeJS.ProcessEnv): T {
  const ns = `${prefix}-${process.pid}`;
  const run = (script: string) =>
    execFileSync('ip', ['netns', 'exec', ns, 'sh', '-c', script], { encoding: 'utf8', ...(env ? { env } : {}) });
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    return body(run, ns);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}
