import type { Connection } from '../../src/transport/types.js';
import type { Connector } from '../../src/engine/up.js';

/**
 * A Connector over connections made by `node` (a scripted fake per node name): every inventory node connects, none
 * fails, closing does nothing. For engine tests that run `runUp` against fake nodes.
 */
export function fakeConnector(node: (name: string) => Connection): Connector {
  return {
    connectAll: async (inv) => ({
      connections: new Map(inv.nodes.map((n) => [n.name, node(n.name)])),
      failures: new Map(),
      close: async () => undefined,
    }),
    connectOne: async (n) => node(n.name),
  };
}
