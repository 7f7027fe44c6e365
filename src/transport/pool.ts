/**
 * One connection per node, opened in parallel, every node's outcome kept (allSettled-style): a node that cannot
 * be reached is a value in `failures`, never a reason to drop the others. Nodes behind the same ProxyJump chain
 * share the bastion connection (see JumpHosts); at most `maxParallel` handshakes run at once.
 *
 * Why the default is high: every node has its own sshd, so OpenSSH's MaxStartups (10 unauthenticated connections
 * per sshd) never applies across nodes, and nodes behind one bastion share a single authenticated connection to
 * it. A cap of 8 made a 32-node run open its connections in four waves (issue 10); the cap now only bounds the
 * local work (an `ssh -G` and a key exchange per node), like --forks.
 */
import type { Node } from '../inventory/types.js';
import { connectNode, JumpHosts, type ConnectOptions } from './ssh.js';

/** The transport's connect, for commands that import the transport in one go (src/commands/connect-options.ts). */
export { connectNode };
import { TransportError, type Connection } from './types.js';
import { loginCutMessage } from '../interrupted.js';

/** Handshakes in flight at once unless told otherwise: as many nodes as --forks works on by default. */
export const DEFAULT_CONNECT_PARALLEL = 64;

export interface ConnectAllOptions extends ConnectOptions {
  /** handshakes in flight at once; default DEFAULT_CONNECT_PARALLEL (64) */
  maxParallel?: number;
  /** for tests and fakes: how to connect one node (default connectNode) */
  connect?: (node: Node, options: ConnectOptions) => Promise<Connection>;
}

export interface ConnectAllResult {
  connections: Map<string, Connection>;
  failures: Map<string, TransportError>;
  /** ends shared jump-host connections once every node connection is closed (closeAll calls it) */
  jumpHosts: JumpHosts;
}

/**
 * Connects to every node (at most `maxParallel` at once) and resolves once each has connected or failed. Ctrl-C
 * (`options.signal` aborted) ends the wait at once: every node not connected by then is a failure with the message
 * loginCutMessage(node) (../interrupted.ts: the command says it was interrupted while logging in, and how far it got),
 * whether its login had begun or not; none is begun after it. A login that still completes later is closed as soon
 * as it does (the caller never sees it), so every connection opened ends with the caller's closeAll or by itself.
 */
export async function connectAll(nodes: Node[], options: ConnectAllOptions = {}): Promise<ConnectAllResult> {
  const jumpHosts = options.jumpHosts ?? new JumpHosts();
  const connect = options.connect ?? connectNode;
  const limit = Math.max(1, options.maxParallel ?? DEFAULT_CONNECT_PARALLEL);
  const { signal } = options;
  const connections = new Map<string, Connection>();
  const failures = new Map<string, TransportError>();
  let index = 0;
  const worker = async () => {
    while (index < nodes.length) {
      const node = nodes[index++];
      try {
        if (signal?.aborted) throw signal.reason;
        connections.set(node.name, await untilAborted(connect(node, { ...options, jumpHosts }), signal));
      } catch (err) {
        failures.set(
          node.name,
          // failed because of the interrupt (the transport's own "interrupted", or not waited for): said as such
          signal?.aborted
            ? new TransportError(node.name, loginCutMessage(node.name))
            : err instanceof TransportError
              ? err
              : new TransportError(node.name, `${node.name}: ${(err as Error)?.message ?? String(err)}`),
        );
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, nodes.length) }, worker));
  // keep the inventory's order in both maps
  const order = (m: Map<string, unknown>) => nodes.filter((n) => m.has(n.name)).map((n) => n.name);
  return {
    connections: new Map(order(connections).map((n) => [n, connections.get(n)!])),
    failures: new Map(order(failures).map((n) => [n, failures.get(n)!])),
    jumpHosts,
  };
}

/**
 * `connecting`, or its rejection with the signal's reason as soon as `signal` aborts: a login that does not answer
 * (an sshd stopped after it accepted: no banner comes until the connect timeout) is not waited for after Ctrl-C. The
 * connection that `connecting` still makes after that is closed at once.
 */
function untilAborted(connecting: Promise<Connection>, signal: AbortSignal | undefined): Promise<Connection> {
  if (!signal) return connecting;
  return new Promise<Connection>((resolve, reject) => {
    const onAbort = () => {
      reject(signal.reason);
      connecting.then(
        (late) => late.close().catch(() => undefined),
        () => undefined,
      );
    };
    signal.addEventListener('abort', onAbort, { once: true });
    connecting.then(
      (connection) => {
        signal.removeEventListener('abort', onAbort);
        resolve(connection);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** Closes every connection (errors ignored: closing is best effort) and any jump host left open. */
export async function closeAll(connections: Iterable<Connection> | Map<string, Connection>, jumpHosts?: JumpHosts): Promise<void> {
  const list = connections instanceof Map ? [...connections.values()] : [...connections];
  await Promise.allSettled(list.map((c) => c.close()));
  jumpHosts?.closeAll();
}
