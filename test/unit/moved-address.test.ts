/**
 * Q4 item 3: site a's public address moved under a running mesh (`lab move-site a 203.0.113.99`) and the inventory
 * still says 203.0.113.10. `up` skipped its underlay probes (every node runs the mesh, the inventory is unchanged),
 * the pairs that dial a's forwards failed the ping gate and were silently relayed: "converged". The evidence was in
 * the facts: p-1 holds a-1's live endpoint at 203.0.113.99 with a fresh handshake. Now those sightings make the
 * baseline probe (src/engine/underlay-change.ts movedAddresses, src/topology/moved-address.ts), and the probe's
 * verdicts name the moved address, who saw it and the fix: a STOP before anything changes.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { siteOf, type Inventory, type Node } from '../../src/inventory/types.js';
import { parseWgQuickConfig, renderWgQuickConfig } from '../../src/render/wgquick.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { checkNamed, stepNamed } from '../../src/engine/registry.js';
import type { MeshStep } from '../../src/engine/types.js';
import { ADDRESS_MOVED } from '../../src/engine/underlay-change.js';
import { connectionsOf, underlayNetwork } from '../support/fake-forward-probe.js';
import { type EndpointView, judgeMovedAddress, movedPublicAddresses } from '../../src/topology/moved-address.js';
import type { LivePeer } from '../../src/render/wgdump.js';
import { livePeerOf } from '../support/live-peer.js';
import { baselineUnderlayNote } from '../support/underlay-note.js';

const inventory = loadInventory('inventories/four-sites.yaml');
const bare = parseFactsProbe(readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8'), { interface: 'wg0', listenPort: 51820 });
const keys = new Map(inventory.nodes.map((n) => [n.name, randomBytes(32).toString('base64')]));
const NOW = 1_800_000_000;
const nodeNamed = (name: string) => inventory.nodes.find((n) => n.name === name)!;

/** observer -> peer -> [live endpoint, handshake age s]; peers not named are live at their configured endpoint, age 10. */
type Sightings = Record<string, Record<string, [string, number]>>;

/** A node's live peers: one per [Peer] of its rendered file, at the file's endpoint unless `seen` says otherwise. */
function livePeers(node: string, seen: Sightings): LivePeer[] {
  const config = desiredNodeConfig(inventory, node, keys);
  return config.peers.map((peer) => {
    const [endpoint, age] = seen[node]?.[peer.name] ?? [peer.endpoint, 10];
    return livePeerOf(peer, endpoint, NOW - age);
  });
}

const views = (seen: Sightings, inv: Inventory = inventory): EndpointView[] =>
  inv.nodes.map((n) => ({
    node: n.name,
    now: NOW,
    peers: livePeers(n.name, seen),
    configPeers: parseWgQuickConfig(renderWgQuickConfig(desiredNodeConfig(inventory, n.name, keys))).peers,
  }));

/**
 * `seen`, and every other node outside site a holding a's nodes at its file's endpoint with a handshake made before
 * the move (100 s old, less than REJECT_AFTER_TIME): the old address answers no one since. Those do not say the site
 * is still there, as each of a's nodes is seen elsewhere too (RV4 F2.1).
 */
function afterMove(seen: Sightings): Sightings {
  const out: Sightings = {};
  for (const n of inventory.nodes) {
    if (n.site === 'a') continue;
    const peers: Record<string, [string, number]> = { ...seen[n.name] };
    for (const peer of desiredNodeConfig(inventory, n.name, keys).peers)
      if (nodeNamed(peer.name).site === 'a' && !peers[peer.name]) peers[peer.name] = [peer.endpoint ?? '', 100];
    out[n.name] = peers;
  }
  return out;
}

/** What p-1 and p-2 hold a day after site a moved to 203.0.113.99: a's nodes keep their sessions alive from there. */
const MOVED: Sightings = afterMove({
  'p-1': { 'a-1': ['203.0.113.99:51820', 20], 'a-2': ['203.0.113.99:1024', 30], 'a-3': ['203.0.113.99:51830', 5] },
  'p-2': { 'a-1': ['203.0.113.99:51820', 40] },
});

describe('Q4 item 3: the live endpoints of a site whose public address moved', () => {
  it('name the site, the inventory address, the one seen and who saw it', () => {
    const [moved, ...more] = movedPublicAddresses(inventory, views(MOVED));
    assert.equal(more.length, 0);
    assert.equal(moved?.site, 'a');
    assert.equal(moved?.inventoryIp, '203.0.113.10');
    assert.equal(moved?.seen, '203.0.113.99');
    assert.equal(moved?.agree, true);
    assert.equal(moved?.forwarded, true);
    assert.deepEqual(
      moved?.sightings.map((s) => `${s.observer} ${s.node} ${s.endpoint} ${s.age}`),
      ['p-1 a-1 203.0.113.99:51820 20', 'p-1 a-2 203.0.113.99:1024 30', 'p-1 a-3 203.0.113.99:51830 5', 'p-2 a-1 203.0.113.99:51820 40'],
    );
  });

  it('count only what says where the packets come from', () => {
    // the configured endpoints (where the observers dial), and the inventory's address on another port: nothing moved
    assert.deepEqual(movedPublicAddresses(inventory, views({})), []);
    assert.deepEqual(movedPublicAddresses(inventory, views({ 'p-1': { 'a-1': ['203.0.113.10:51820', 20] } })), []);
    // a handshake older than REJECT_AFTER_TIME (180 s): no session left, the endpoint is history
    assert.deepEqual(movedPublicAddresses(inventory, views({ 'p-1': { 'a-1': ['203.0.113.99:51820', 181] } })), []);
    // an IPv6 endpoint says nothing about the IPv4 publicIp; a LAN address is a path inside a routed network
    assert.deepEqual(movedPublicAddresses(inventory, views({ 'p-1': { 'a-1': ['[2001:db8::11]:51820', 5] } })), []);
    assert.deepEqual(movedPublicAddresses(inventory, views({ 'p-1': { 'a-1': ['192.168.10.11:51820', 5] } })), []);
    // inside the site: a-2 sees a-1 on the LAN, or anywhere: not an outside view
    assert.deepEqual(movedPublicAddresses(inventory, views({ 'a-2': { 'a-1': ['198.18.0.1:51820', 5] } })), []);
    // a site without forwards is judged too (callers only warn for it): b seen elsewhere
    const b = movedPublicAddresses(inventory, views({ 'p-1': { 'b-1': ['203.0.113.77:3000', 5] } }));
    assert.deepEqual(
      b.map((m) => [m.site, m.seen, m.forwarded]),
      [['b', '203.0.113.77', false]],
    );
  });

  it('a node that roamed through another NAT while the others are seen at home: not agreed', () => {
    const [moved] = movedPublicAddresses(
      inventory,
      views({ 'p-1': { 'a-1': ['198.18.7.7:40000', 5], 'a-2': ['203.0.113.10:51820', 10] } }),
    );
    assert.equal(moved?.seen, '198.18.7.7');
    assert.equal(moved?.agree, false);
    assert.ok(moved?.otherSightings.some((s) => s.observer === 'p-1' && s.node === 'a-2'));
    assert.ok(moved?.otherSightings.every((s) => s.address === '203.0.113.10'));
    // NAT discovery could not judge: a warning, not a STOP, on sightings that disagree
    const verdict = judgeMovedAddress({ id: 'nat-mapping', status: 'warn' as const, message: 'NAT not discovered: no perl' }, moved);
    assert.equal(verdict.status, 'warn');
  });

  it('a site named by DNS (publicHost) is followed by the re-resolve timer, not judged here', () => {
    const named: Inventory = {
      ...inventory,
      sites: inventory.sites.map((s) => (s.name === 'a' && s.kind === 'nat' ? { ...s, publicHost: 'a.example.net' } : s)),
    };
    assert.deepEqual(movedPublicAddresses(named, views(MOVED)), []);
  });
});

/** What a node of the four-sites mesh holds after `up`: its rendered file, the live interface, and its live peers. */
function runningFacts(node: Node, seen: Sightings): NodeFacts {
  const text = renderWgQuickConfig(desiredNodeConfig(inventory, node.name, keys));
  return {
    ...bare,
    now: NOW,
    interfaces: [...bare.interfaces, 'wg0'],
    config: { exists: true, text, hasPrivateKeyLine: false, managedByMeshctl: true },
    live: { addresses: [], listenPort: node.listenPort, wgReadable: true },
    peers: livePeers(node.name, seen),
  };
}

/**
 * The probe-underlay step on the running mesh (every node's facts from `seen`) over a network where site a's
 * datagrams leave from 203.0.113.99 and its forwards on 203.0.113.10 land nowhere (the address moved), then the
 * forward-reaches-node and nat-mapping checks on a-1.
 */
async function baseline(seen: Sightings) {
  const network = underlayNetwork(
    inventory,
    (f) => (f.site === 'a' ? undefined : { node: f.node, port: f.listenPort }),
    (node) => {
      const site = siteOf(inventory, node);
      return `${site.name === 'a' ? '203.0.113.99' : site.kind === 'nat' ? site.publicIp : '203.0.113.1'}:${node.listenPort}`;
    },
  );
  const connections = await connectionsOf(inventory, network);
  const step = stepNamed('probe-underlay') as MeshStep;
  const output = await step.run({
    inventory,
    nodes: inventory.nodes.map((node) => ({
      node,
      values: { facts: runningFacts(node, seen) },
      connection: connections.get(node.name)!,
    })) as never,
    changedSoFar: false,
    signal: new AbortController().signal,
  });
  const a1 = nodeNamed('a-1');
  const judge = (id: string) =>
    checkNamed(id)!.evaluate({
      node: a1,
      inventory,
      values: output.values.get('a-1') as never,
      mesh: new Map(),
      reconnect: async () => connections.get('a-1')!,
      changedSoFar: false,
    });
  const sent = [...connections.values()].reduce((n, c) => n + c.scripts.length, 0);
  return { forward: await judge('forward-reaches-node'), nat: await judge('nat-mapping'), sent };
}

describe('Q4 item 3: up and plan on a running mesh whose site moved, inventory unchanged', () => {
  it('probe, and STOP naming the moved address, who saw it and the fix (no longer "not probed")', async () => {
    const { forward, nat, sent } = await baseline(MOVED);
    assert.ok(sent > 0, 'the probes ran');
    assert.equal(nat.status, 'fail', nat.message);
    assert.match(nat.message, /^site a: public address 203\.0\.113\.99, but the inventory says 203\.0\.113\.10 \(nat\.publicIp\)/);
    assert.match(nat.message, /fix: if site a's public address changed, set sites\.a\.nat\.publicIp: 203\.0\.113\.99 /);
    assert.match(nat.message, /nat\.publicHost/);
    assert.match(nat.message, /on the running mesh p-1 and p-2 see a-1, a-2 and a-3 \(handshakes 5-40 s old\) at 203\.0\.113\.99/);
    assert.ok(
      nat.evidence?.some((line) => line.includes('p-1 sees a-1 at 203.0.113.99:51820 (handshake 20 s ago)')),
      nat.evidence?.join('\n'),
    );
    assert.match(nat.message, /\(probed: the running mesh sees a site at another public address\)$/);
    assert.equal(forward.status, 'fail', forward.message);
    assert.match(
      forward.message,
      /^forward 203\.0\.113\.10:41001 reaches no node of site a: site a's public address seems to have moved: the inventory says nat\.publicIp 203\.0\.113\.10, p-1 and p-2 see a-1, a-2 and a-3 \(handshakes 5-40 s old\) at 203\.0\.113\.99; fix: .*; if it did not, fix the port-forward on site a's router/,
    );
    assert.equal(
      forward.evidence?.[0],
      `${ADDRESS_MOVED}site a: the inventory says 203.0.113.10, p-1 and p-2 see a-1, a-2 and a-3 (handshakes 5-40 s old) at 203.0.113.99`,
    );
    // plan: the underlay note says why the probes ran
    const note = baselineUnderlayNote('a-1', [forward, nat]);
    assert.match(
      note,
      /^── Underlay probed: the running mesh sees a site at another public address than the inventory \(site a: the inventory says 203\.0\.113\.10, p-1 and p-2 see/,
    );
    assert.match(note, /a-1 {2}FAIL nat-mapping: site a: public address 203\.0\.113\.99/);
  });

  it('a carrier-NAT site seen at another carrier address is not probed (RV4 F2.4: nobody dials it)', async () => {
    const site = siteOf(inventory, nodeNamed('c-1'));
    assert.ok(site.kind === 'nat' && site.carrier);
    assert.equal(movedPublicAddresses(inventory, views({ 'p-1': { 'c-1': ['203.0.113.77:3000', 5] } })).length, 1);
    const { sent } = await baseline({ 'p-1': { 'c-1': ['203.0.113.77:3000', 5] } });
    assert.equal(sent, 0);
  });

  it('a running mesh whose live endpoints agree with the inventory is still not probed', async () => {
    const { nat, sent } = await baseline({ 'p-1': { 'a-1': ['203.0.113.10:51820', 20] } });
    assert.equal(sent, 0);
    assert.equal(nat.status, 'pass');
    assert.match(nat.message, /not probed: every node already runs the mesh/);
  });
});
