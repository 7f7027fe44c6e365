/**
 * One connection per node, opened in parallel, every node's outcome kept (allSettled-style): a node that cannot
 * be reached is a value in `failures`, never a reason to drop the others. Nodes behind the same ProxyJump chain
 * share the bastion connection (see JumpHosts); at most `maxParallel` handshakes run at once, below OpenSSH's
 * MaxStartups 10 for the case where they all go through one bastion.
 */
import type { Node } from '../inventory/types.js';
import { connectNode, JumpHosts, type ConnectOptions } from './ssh.js';
import { TransportError, type Connection } from './types.js';

export interface ConnectAllOptions extends ConnectOptions {
  /** handshakes in flight at once; default 8 */
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

export async function connectAll(nodes: Node[], options: ConnectAllOptions = {}): Promise<ConnectAllResult> {
  const jumpHosts = options.jumpHosts ?? new JumpHosts();
  const connect = options.connect ?? connectNode;
  const limit = Math.max(1, options.maxParallel ?? 8);
  const connections = new Map<string, Connection>();
  const failures = new Map<string, TransportError>();
  let index = 0;
  const worker = async () => {
    while (index < nodes.length) {
      const node = nodes[index++];
      try {
        connections.set(node.name, await connect(node, { ...options, jumpHosts }));
      } catch (err) {
        failures.set(
          node.name,
          err instanceof TransportError ? err : new TransportError(node.name, `${node.name}: ${(err as Error)?.message ?? String(err)}`),
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

/** Closes every connection (errors ignored: closing is best effort) and any jump host left open. */
export async function closeAll(connections: Iterable<Connection> | Map<string, Connection>, jumpHosts?: JumpHosts): Promise<void> {
  const list = connections instanceof Map ? [...connections.values()] : [...connections];
  await Promise.allSettled(list.map((c) => c.close()));
  jumpHosts?.closeAll();
}
