/**
 * The bench's fake nodes (scripts/bench/farm/fake-node.ts) as after up's config step: each holds its rendered
 * wg-quick file, so a ping round against them reports the routes and peers of its config (scale-cost tests).
 */
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import type { Inventory } from '../../src/inventory/types.js';
import { type FakeFarm, fakePublicKey } from '../../scripts/bench/farm/fake-node.js';

/** The fake nodes of `inventory`, each holding its rendered config, with their `desired` values (fake keys). */
export async function nodesWithConfigs(inventory: Inventory, farm: FakeFarm) {
  const keys = new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)]));
  return Promise.all(
    inventory.nodes.map(async (node) => {
      const desired = desiredNodeConfig(inventory, node.name, keys);
      const connection = farm.node(node.name);
      // the config step's atomic write, as the fake reads it
      await connection.run(`cat > /etc/wireguard/wg0.conf.meshctl-tmp <<'MC_EOF'\n${renderWgQuickConfig(desired)}MC_EOF\n`);
      return { node, connection, values: { desired } };
    }),
  );
}
