/**
 * Q6/Q7: `plan` said nothing of a roamed node (one node of a forwarded NAT site seen elsewhere while its site is seen
 * at the inventory's address: ../../src/topology/moved-address.ts), though README says `up` and `plan` warn: the
 * warning is a baseline check's, which `up` shows in its gate and `plan` never printed (it prints a gate only when it
 * stops). Through the real probe-underlay step and the registry's nat-mapping and forward-reaches-node checks, on
 * inventories/four-sites.yaml: every node outside site a holds a-1 at 198.18.7.7:40000 (handshake 5 s old), a-2 and a-3
 * at the site's forwards (10 s old). The baseline's report is then what `plan` prints, as text and as --json.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Chalk } from 'chalk';
import { checkNamed, stepNamed } from '../../src/engine/registry.js';
import type { MeshStep, PhaseReport } from '../../src/engine/types.js';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { Node } from '../../src/inventory/types.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { planText, planValue } from '../../src/commands/plan.js';
import type { Plan } from '../../src/engine/plan.js';
import { connectionsOf, underlayNetwork, landsRight } from '../support/fake-forward-probe.js';
import { livePeerOf } from '../support/live-peer.js';

const inventory = loadInventory(new URL('../../inventories/four-sites.yaml', import.meta.url).pathname);
const bare = parseFactsProbe(readFileSync(new URL('../fixtures/facts/bare-debian12.txt', import.meta.url), 'utf8'), {
  interface: 'wg0',
  listenPort: 51820,
});
const keys = new Map(inventory.nodes.map((n) => [n.name, randomBytes(32).toString('base64')]));
const NOW = 1_800_000_000;

/** The baseline's probe checks of every node, as the run's phase report holds them. */
async function baseline(roaming: boolean): Promise<PhaseReport> {
  const facts = (node: Node): NodeFacts => ({
    ...bare,
    now: NOW,
    interfaces: [...bare.interfaces, 'wg0'],
    config: {
      exists: true,
      text: renderWgQuickConfig(desiredNodeConfig(inventory, node.name, keys)),
      hasPrivateKeyLine: false,
      managedByMeshctl: true,
    },
    live: { addresses: [], listenPort: node.listenPort, wgReadable: true },
    peers: desiredNodeConfig(inventory, node.name, keys).peers.map((peer) =>
      roaming && peer.name === 'a-1' && !node.name.startsWith('a-')
        ? livePeerOf(peer, '198.18.7.7:40000', NOW - 5)
        : livePeerOf(peer, peer.endpoint, NOW - 10),
    ),
  });
  const connections = await connectionsOf(inventory, underlayNetwork(inventory, landsRight));
  const output = await (stepNamed('probe-underlay') as MeshStep).run({
    inventory,
    nodes: inventory.nodes.map((node) => ({ node, values: { facts: facts(node) }, connection: connections.get(node.name)! })) as never,
    changedSoFar: false,
    signal: new AbortController().signal,
  });
  const nodes = await Promise.all(
    inventory.nodes.map(async (node) => ({
      node: node.name,
      changes: [],
      checks: await Promise.all(
        ['forward-reaches-node', 'nat-mapping'].map((id) =>
          checkNamed(id)!.evaluate({
            node,
            inventory,
            values: output.values.get(node.name) as never,
            mesh: new Map(),
            reconnect: async () => connections.get(node.name)!,
            changedSoFar: false,
          }),
        ),
      ),
    })),
  );
  return { id: 'baseline', title: 'baseline', go: 'nodes fit', verdict: 'GO', durationMs: 1, nodes };
}

/** A plan that changes nothing (the mesh as designed). */
const plan: Plan = { version: 1, inventory: 'four-sites.yaml', playbook: 'playbooks/up.yaml', dryRun: true, phases: [] };
const chalk = new Chalk({ level: 0 });

describe('plan names a roamed node, as up does (Q6/Q7)', () => {
  it('text: one line for a-1 with the checks that say it, the address it is seen at and that nat.publicIp stays', async () => {
    const text = planText({ phases: [await baseline(true)], plan }, inventory, chalk);
    const lines = text.split('\n');
    assert.match(lines[0]!, /^── Roamed nodes/, text);
    assert.match(
      lines[1]!,
      /^ {2}a-1 {2}warn forward-reaches-node, nat-mapping: .*a-1 is seen at 198\.18\.7\.7 .*not at site a's 203\.0\.113\.10 where .*nat\.publicIp stays$/,
    );
    assert.equal(lines[2], 'nothing to change: the mesh is as the inventory says', 'the plan follows');
    assert.equal(text.match(/a-1 is seen at/g)?.length, 1, 'once, though two checks say it');
  });
  it('--json: `roamed` holds the node, its checks and the message', async () => {
    const { roamed } = planValue({ phases: [await baseline(true)], plan }, inventory);
    assert.deepEqual(
      roamed.map((w) => [w.node, w.checks]),
      [['a-1', ['forward-reaches-node', 'nat-mapping']]],
    );
    assert.match(roamed[0]!.message, /a-1 is seen at 198\.18\.7\.7/);
  });
  it('nothing roamed: no line, an empty list', async () => {
    const report = { phases: [await baseline(false)], plan };
    assert.deepEqual(planValue(report, inventory).roamed, []);
    assert.match(planText(report, inventory, chalk), /^nothing to change/);
  });
});
