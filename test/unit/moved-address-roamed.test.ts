/**
 * RV4 F2.1: one roaming node of a forwarded NAT site (a laptop away from home, a node leaving by a second uplink) on a
 * running mesh with an unchanged inventory. Through the real probe-underlay step and the registry's nat-mapping and
 * forward-reaches-node checks, on inventories/four-sites.yaml with a scripted underlay
 * (test/support/fake-forward-probe.ts): a-1's datagrams leave from 198.18.7.7:40000 and its forward lands nowhere,
 * while a-2 and a-3 are at home (203.0.113.10, their forwards reach them). The nodes outside site a hold a-1 at
 * 198.18.7.7. The site has
 * not moved, so no check may fail (a STOP) and none may advise a new nat.publicIp; the roamed node is named in a
 * warning. A real move (every node of the site elsewhere) still fails: test/unit/moved-address.test.ts and
 * test/lab/moved-address.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { siteOf, type Node } from '../../src/inventory/types.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { checkNamed, stepNamed } from '../../src/engine/registry.js';
import type { CheckResult, MeshStep } from '../../src/engine/types.js';
import type { LivePeer } from '../../src/render/wgdump.js';
import { livePeerOf } from '../support/live-peer.js';
import { connectionsOf, underlayNetwork } from '../support/fake-forward-probe.js';
import { judgeRoamedNode } from '../../src/topology/moved-address.js';

const inventory = loadInventory(new URL('../../inventories/four-sites.yaml', import.meta.url).pathname);
const bare = parseFactsProbe(readFileSync(new URL('../fixtures/facts/bare-debian12.txt', import.meta.url), 'utf8'), {
  interface: 'wg0',
  listenPort: 51820,
});
const keys = new Map(inventory.nodes.map((n) => [n.name, randomBytes(32).toString('base64')]));
const NOW = 1_800_000_000;
const AWAY = '198.18.7.7';

/**
 * Runs the step and the two checks. `homeAge`: the age (s) of every handshake whose live endpoint is the file's
 * (a-2's and a-3's forwards among them); every node outside site a holds a-1 at AWAY:40000, 5 s old.
 */
async function run(homeAge: number, { a1ForwardLands = false } = {}) {
  const livePeers = (node: string): LivePeer[] =>
    desiredNodeConfig(inventory, node, keys).peers.map((peer) => {
      // a-1's packets come from AWAY, so every node outside its site that talks to it holds it there
      const away = peer.name === 'a-1' && !node.startsWith('a-');
      const [endpoint, age] = away ? [`${AWAY}:40000`, 5] : [peer.endpoint, homeAge];
      return livePeerOf(peer, endpoint, NOW - age);
    });
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
    peers: livePeers(node.name),
  });
  const network = underlayNetwork(
    inventory,
    // (a forward that lands nowhere makes the probe retry, whose tokens this scripted network does not follow: the
    // second case keeps a-1's forward landing, a node leaving by a second uplink while its router still forwards)
    (f) => (f.node === 'a-1' && !a1ForwardLands ? undefined : { node: f.node, port: f.listenPort }),
    (node) => {
      const site = siteOf(inventory, node);
      const ip = node.name === 'a-1' ? AWAY : site.kind === 'nat' ? site.publicIp : '203.0.113.1';
      return `${ip}:${node.name === 'a-1' ? 40000 : node.listenPort}`;
    },
  );
  const connections = await connectionsOf(inventory, network);
  const output = await (stepNamed('probe-underlay') as MeshStep).run({
    inventory,
    nodes: inventory.nodes.map((node) => ({ node, values: { facts: facts(node) }, connection: connections.get(node.name)! })) as never,
    changedSoFar: false,
    signal: new AbortController().signal,
  });
  const results = new Map<string, CheckResult>();
  for (const node of inventory.nodes)
    for (const id of ['nat-mapping', 'forward-reaches-node']) {
      const result = await checkNamed(id)!.evaluate({
        node,
        inventory,
        values: output.values.get(node.name) as never,
        mesh: new Map(),
        reconnect: async () => connections.get(node.name)!,
        changedSoFar: false,
      });
      results.set(`${node.name} ${id}`, result);
    }
  const scripts = [...connections.values()].reduce((n, c) => n + c.scripts.length, 0);
  return { results, scripts };
}

const failures = (results: Map<string, CheckResult>) =>
  [...results].filter(([, r]) => r.status === 'fail').map(([k, r]) => `${k}: ${r.message}`);

describe('a roaming node of a forwarded NAT site does not STOP up (RV4 F2.1)', () => {
  it("a-2 and a-3 seen at the site's forwards with fresh handshakes: no probes, a-1 named in a warning", async () => {
    const { results, scripts } = await run(10);
    assert.equal(scripts, 0, 'the site is seen at the inventory address: no probe runs, as before the sightings');
    assert.deepEqual(failures(results), []);
    const a1 = results.get('a-1 nat-mapping')!;
    assert.equal(a1.status, 'warn');
    assert.match(a1.message, /a-1 is seen at 198\.18\.7\.7 .*not at site a's 203\.0\.113\.10 where .*a-2.*a-3/);
    assert.match(a1.message, /nat\.publicIp stays/);
    assert.doesNotMatch(a1.message, /set sites\.a\.nat\.publicIp/);
    assert.equal(results.get('a-2 nat-mapping')!.status, 'pass');
  });

  it('a-2 and a-3 without a fresh handshake: the probes run, and NAT discovery of a-2 and a-3 finds the inventory address', async () => {
    const { results, scripts } = await run(600, { a1ForwardLands: true });
    assert.ok(scripts > 0, 'the probes ran');
    assert.deepEqual(failures(results), []);
    const nat = results.get('a-1 nat-mapping')!;
    assert.equal(nat.status, 'warn', nat.message);
    assert.match(nat.message, /a-1 leaves through 198\.18\.7\.7 \(NAT discovery\), not at site a's 203\.0\.113\.10 where a-2, a-3 find it/);
    assert.doesNotMatch(nat.message, /set sites\.a\.nat\.publicIp/);
    assert.equal(results.get('a-2 nat-mapping')!.status, 'pass');
    assert.equal(results.get('a-2 forward-reaches-node')!.status, 'pass');
    assert.equal(results.get('a-3 forward-reaches-node')!.status, 'pass');
  });
});

describe('judgeRoamedNode: a fail of one node judged with its site', () => {
  const fail = { id: 'forward-reaches-node', status: 'fail' as const, message: 'forward 203.0.113.10:41001 reaches no node of site a' };
  const discovery = { node: 'a-1', site: 'a', inventoryIp: '203.0.113.10', found: AWAY };
  it('another node of the site at the inventory address: a warning naming the roamed node', () => {
    const r = judgeRoamedNode(fail, { ...discovery, atInventoryAddress: ['a-2'] });
    assert.equal(r.status, 'warn');
    assert.match(r.message, /a-1 leaves through 198\.18\.7\.7 \(NAT discovery\), not at site a's 203\.0\.113\.10 where a-2 finds it/);
  });
  it('no node of the site at the inventory address (a real move), or the node itself there: the fail stands', () => {
    assert.deepEqual(judgeRoamedNode(fail, { ...discovery, atInventoryAddress: [] }), fail);
    assert.deepEqual(judgeRoamedNode(fail, { ...discovery, found: '203.0.113.10', atInventoryAddress: ['a-2'] }), fail);
    assert.deepEqual(judgeRoamedNode(fail, undefined), fail);
  });
});
