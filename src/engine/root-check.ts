/**
 * The login's root check, done by the first command `up` sends anyway (issue 10): `up` connects without the
 * transport's separate `id -u` round trip (ConnectOptions.probe false) and its first command on a node (the run lock,
 * or the facts probe) proves instead that commands run as root. A node where they cannot (sudo wants a password, is
 * not installed, or refuses the user) is still a connection failure, with the messages of the transport's probe
 * (../transport/ssh.ts probeRoot), and `up` reports it as before: unreachable, exit 3, nothing changed (the first
 * command only reads, or takes a lock that the release removes).
 */
import { TransportError, withRun, type Connection, type ExecResult, type RunOptions } from '../transport/types.js';

/** sudo's own words when it is missing or refuses the user (as ../transport/ssh.ts probeRoot reads them) */
const SUDO_MISSING = /sudo: (not found|command not found)|sudo: .*not found/;
const SUDO_REFUSED = /not in the sudoers|not allowed to (run|execute)/;

/**
 * Why a first command's result says commands do not run as root, in the transport probe's words; undefined when it
 * says nothing of the kind. `sudo`: the connection runs its commands through `sudo -n`.
 */
export function rootProblem(node: string, target: string, sudo: boolean, result: ExecResult): string | undefined {
  if (!sudo || result.code === 0) return undefined;
  const user = target.slice(0, target.indexOf('@')) || 'the login user';
  const why = result.stderr.trim().split('\n')[0] ?? '';
  if (SUDO_MISSING.test(result.stderr))
    return `${node} (${target}): logged in as ${user}, but sudo is not installed; use user root or install sudo`;
  if (SUDO_REFUSED.test(result.stderr)) return `${node} (${target}): ${user} may not use sudo (${why})`;
  return undefined;
}

/**
 * The run's connections, each watching its first command for a failure to become root: it then throws
 * TransportError (reason 'sudo', recorded in `failures` by node) instead of answering. Later commands pass through. `sudo(node)` says whether a node's commands go through sudo (a root login's
 * cannot fail this way).
 */
export class RootCheck {
  readonly failures = new Map<string, Error>();
  readonly connections: Map<string, Connection>;

  constructor(connections: ReadonlyMap<string, Connection>, sudo: (node: string) => boolean) {
    this.connections = new Map([...connections].map(([node, c]) => [node, this.watch(c, sudo(node))]));
  }

  private watch(connection: Connection, sudo: boolean): Connection {
    let first = true;
    const failures = this.failures;
    return withRun(connection, async (script: string, options?: RunOptions): Promise<ExecResult> => {
      if (!first) return connection.run(script, options);
      first = false;
      try {
        const result = await connection.run(script, options);
        const problem = rootProblem(connection.node, connection.target, sudo, result);
        // thrown, as the probe's failure was: the caller's script never ran as root
        if (problem) throw new TransportError(connection.node, problem, 'sudo');
        return result;
      } catch (error) {
        if (error instanceof TransportError && error.reason === 'sudo') failures.set(connection.node, error);
        throw error;
      }
    });
  }
}

/** Whether `node`'s commands go through sudo: become sudo, or a login user other than root (../transport/ssh.ts). */
export const sudoOf =
  (inventory: { nodes: readonly { name: string; ssh: { become?: string } }[] }, connections: ReadonlyMap<string, Connection>) =>
  (name: string): boolean =>
    inventory.nodes.find((n) => n.name === name)?.ssh.become === 'sudo' || !connections.get(name)?.target.startsWith('root@');
