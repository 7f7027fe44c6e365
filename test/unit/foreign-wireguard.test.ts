/**
 * Issue 8, kind 3: a foreign WireGuard interface is judged by real clashes (name, port, addresses, routes), not by
 * being there. The `wgdetails` capture (test/fixtures/facts/wgdetails-vpn.txt) is the fact's script run in a network
 * namespace made for it: `ip` output is real (veth links named wg0/wgx with the VPN's address and routes), `wg` was a
 * stand-in script printing what wg prints (no WireGuard module or wireguard-go on the capturing host).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checkNamed } from '../../src/engine/registry.js';
import { parseWireGuardInterfaces, routeDestination, type WireGuardInterfaceFacts } from '../../src/facts/definitions.js';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { judgeForeignWireGuard, type MeshFootprint, type WireGuardObserved } from '../../src/topology/clashes.js';

const inventory = loadInventory('test/fixtures/inventories/good/foreign-vpn.yaml');
const node = inventory.nodes[0]!;
const mesh: MeshFootprint = {
  interface: 'wgmesh',
  listenPort: 51830,
  network: '172.27.70.0/24',
  overlayIp: '172.27.70.1',
  peerAllowedIps: ['172.27.70.2/32'],
};
const vpn: WireGuardInterfaceFacts = {
  name: 'wg0',
  listenPort: 51820,
  addresses: ['10.66.0.2/24'],
  routes: ['10.66.0.0/24'],
  allowedIps: ['10.66.0.0/24'],
};
const observed = (details: WireGuardInterfaceFacts[], more: Partial<WireGuardObserved> = {}): WireGuardObserved => ({
  wireguardInterfaces: details.map((d) => d.name),
  details,
  configs: details.map((d) => `${d.name}.conf`),
  interfaces: ['lo', 'eth0', ...details.map((d) => d.name)],
  ownConfig: { exists: false, managedByMeshctl: false },
  ...more,
});
const kinds = (o: WireGuardObserved) => judgeForeignWireGuard(mesh, o).clashes.map((c) => c.kind);

describe('wgdetails fact parser', () => {
  it('reads each interface: port, addresses, routes in every table (no local/broadcast), AllowedIPs', () => {
    const found = parseWireGuardInterfaces(readFileSync('test/fixtures/facts/wgdetails-vpn.txt', 'utf8'));
    assert.deepEqual(found, [
      {
        name: 'wg0',
        listenPort: 51820,
        addresses: ['10.66.0.2/24'],
        routes: ['0.0.0.0/0', '10.66.0.0/24', '10.70.0.0/16', '10.80.0.7/32'],
        allowedIps: ['0.0.0.0/0', '::/0'],
      },
      { name: 'wgx', listenPort: 51830, addresses: [], routes: [], allowedIps: [] },
    ]);
  });
  it('turns route lines into CIDRs', () => {
    assert.equal(routeDestination('default table 51820 scope link'), '0.0.0.0/0');
    assert.equal(routeDestination('10.80.0.7 scope link'), '10.80.0.7/32');
    assert.equal(routeDestination('unicast 10.9.0.0/16 proto boot'), '10.9.0.0/16');
    assert.equal(routeDestination('local 10.66.0.2 table local proto kernel scope host src 10.66.0.2'), undefined);
  });
});

describe('judgeForeignWireGuard', () => {
  it('a VPN client wg0 on 51820, 10.66.0.0/24, next to wgmesh/51830/172.27.70.0/24: no clash, named', () => {
    const verdict = judgeForeignWireGuard(mesh, observed([vpn]));
    assert.deepEqual(verdict, { clashes: [], harmless: ['wg0 (port 51820, 10.66.0.0/24)'] });
  });
  it('a full-tunnel default route and ::/0 are not a clash (every mesh route is more specific)', () => {
    assert.deepEqual(kinds(observed([{ ...vpn, routes: ['0.0.0.0/0'], allowedIps: ['0.0.0.0/0', '::/0'] }])), []);
  });
  it('the same listen port', () => {
    const { clashes } = judgeForeignWireGuard(mesh, observed([{ ...vpn, listenPort: 51830 }]));
    assert.deepEqual(clashes, [{ interface: 'wg0', kind: 'port', text: "wg0 listens on UDP 51830, the mesh's port" }]);
  });
  it("an address inside the mesh network, or the node's own overlay address", () => {
    assert.deepEqual(
      judgeForeignWireGuard(mesh, observed([{ ...vpn, addresses: ['172.27.70.9/32'], routes: [], allowedIps: [] }])).clashes,
      [{ interface: 'wg0', kind: 'address', text: 'wg0 address 172.27.70.9/32 overlaps the mesh network 172.27.70.0/24' }],
    );
    assert.deepEqual(
      judgeForeignWireGuard(mesh, observed([{ ...vpn, addresses: ['172.27.70.1/24'], routes: [], allowedIps: [] }])).clashes,
      [{ interface: 'wg0', kind: 'address', text: "wg0 holds this node's overlay address 172.27.70.1" }],
    );
    // a wider foreign block that holds the whole mesh network overlaps it too
    assert.deepEqual(kinds(observed([{ ...vpn, addresses: ['172.27.0.1/16'], routes: [], allowedIps: [] }])), ['address']);
  });
  it('a route or AllowedIPs via it that overlaps the mesh network or a mesh peer', () => {
    assert.deepEqual(judgeForeignWireGuard(mesh, observed([{ ...vpn, routes: ['10.66.0.0/24', '172.27.70.2/32'] }])).clashes, [
      { interface: 'wg0', kind: 'route', text: 'wg0 routes 172.27.70.2/32, overlapping the mesh network 172.27.70.0/24' },
    ]);
    assert.deepEqual(kinds(observed([{ ...vpn, allowedIps: ['172.27.0.0/16'] }])), ['route']);
    // a peer AllowedIPs outside the overlay network (none today, but the footprint allows it)
    const wider = { ...mesh, peerAllowedIps: [...mesh.peerAllowedIps, '10.66.5.0/24'] };
    assert.deepEqual(
      judgeForeignWireGuard(wider, observed([vpn])).clashes.map((c) => c.text),
      [],
      'the VPN 10.66.0.0/24 does not overlap 10.66.5.0/24',
    );
    assert.deepEqual(
      judgeForeignWireGuard(wider, observed([{ ...vpn, routes: ['10.66.0.0/16'] }])).clashes.map((c) => c.text),
      ["wg0 routes 10.66.0.0/16, overlapping a mesh peer's AllowedIPs 10.66.5.0/24"],
    );
  });
  it("the mesh's own name: a running interface without a config, or a config meshctl did not write", () => {
    assert.deepEqual(kinds(observed([], { interfaces: ['lo', 'wgmesh'], wireguardInterfaces: ['wgmesh'] })), ['name']);
    assert.deepEqual(
      judgeForeignWireGuard(mesh, observed([], { ownConfig: { exists: true, managedByMeshctl: false } })).clashes.map((c) => c.text),
      ['/etc/wireguard/wgmesh.conf (not written by meshctl)'],
    );
    // meshctl's own interface is no clash at all
    assert.deepEqual(
      kinds(observed([], { interfaces: ['wgmesh'], wireguardInterfaces: ['wgmesh'], ownConfig: { exists: true, managedByMeshctl: true } })),
      [],
    );
  });
  it('a foreign interface whose facts were not read cannot be judged and is refused', () => {
    assert.deepEqual(kinds({ ...observed([vpn]), details: undefined }), ['unreadable']);
  });
  it('reports every clash of every interface', () => {
    const other = { name: 'wg-b', listenPort: 51830, addresses: ['172.27.70.200/24'], routes: ['172.27.70.0/24'], allowedIps: [] };
    assert.deepEqual(kinds(observed([vpn, other])), ['port', 'address', 'route']);
  });
});

describe('no-foreign-wireguard check (baseline gate)', () => {
  const facts = (f: Partial<NodeFacts>) =>
    ({
      wireguardInterfaces: [],
      wireguardDetails: [],
      wireguardConfigs: [],
      interfaces: ['lo', 'eth0'],
      config: { exists: false, hasPrivateKeyLine: false, managedByMeshctl: false },
      ...f,
    }) as NodeFacts;
  const evaluate = (f: NodeFacts) =>
    checkNamed('no-foreign-wireguard')!.evaluate({
      node,
      inventory,
      values: { facts: f } as never,
      reconnect: async () => undefined as never,
      mesh: new Map(),
      changedSoFar: false,
    });

  it('passes next to a VPN client wg0 (and its wg0.conf) and names it (failed before: "in the way: interface wg0")', async () => {
    const result = await evaluate(
      facts({ wireguardInterfaces: ['wg0'], wireguardDetails: [vpn], wireguardConfigs: ['wg0.conf'], interfaces: ['lo', 'eth0', 'wg0'] }),
    );
    assert.equal(result.status, 'pass', result.message);
    assert.equal(result.message, 'also here: wg0 (port 51820, 10.66.0.0/24): no clash');
  });
  it('fails on a real clash and says which', async () => {
    const result = await evaluate(
      facts({ wireguardInterfaces: ['wg0'], wireguardDetails: [{ ...vpn, listenPort: 51830 }], interfaces: ['lo', 'eth0', 'wg0'] }),
    );
    assert.equal(result.status, 'fail');
    assert.equal(result.message, "in the way: wg0 listens on UDP 51830, the mesh's port");
  });
  it("still refuses a wgmesh.conf that meshctl did not write (issue 9's import)", async () => {
    const result = await evaluate(
      facts({ wireguardConfigs: ['wgmesh.conf'], config: { exists: true, hasPrivateKeyLine: false, managedByMeshctl: false } }),
    );
    assert.equal(result.status, 'fail');
    assert.match(result.message, /wgmesh\.conf \(not written by meshctl\)/);
  });
});
