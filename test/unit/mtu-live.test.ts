/**
 * A new user's finding Q3-6: changing `mtu` in the inventory made `up` restart wg-quick@wg0 on every node at once
 * ("[Interface] changed"), cutting every pair for 0.2-0.4 s. wg-quick reads MTU only when it brings the interface up
 * and sets it there with `ip link set mtu N up dev wg0` (wg-quick(8)), so an [Interface] change of the MTU alone is
 * set on the running interface now, the file written as before; any other [Interface] change still restarts. The
 * facts are the converged homelab's, captured on ms-1 (test/fixtures/facts/live-converged-ms-1.txt: wg0.conf is the
 * design with MTU 1420, live MTU 1420); the design changes below. The revert's side: ./revert-gentle.test.ts; the
 * lab's: test/lab/mtu-live.test.ts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { capturedFacts, capturedKeys } from '../support/converged-facts.js';
import { planService } from '../../src/steps/service.js';
import { describeAction } from '../../src/engine/plan.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { classifyConfigChange, liveInterfaceChange } from '../../src/render/changes.js';
import { changeWithoutRestart } from '../../src/import/restart.js';

const inventory = loadInventory('inventories/homelab.yaml');
const facts: NodeFacts = capturedFacts();
const keys = capturedKeys(facts);
const withMesh = (mesh: Partial<Inventory['mesh']>): Inventory => ({ ...inventory, mesh: { ...inventory.mesh, ...mesh } });

/** The enable step's plan on ms-1 for the design of `changed`, with the change kind up finds for its file. */
function enable(changed: Inventory, f: NodeFacts = facts) {
  const desired = desiredNodeConfig(changed, 'ms-1', keys);
  const found = classifyConfigChange(f.config.text, desired).kind;
  const change = changeWithoutRestart(f, desired, found);
  const routes = desired.peers.flatMap((p) => p.allowedIps);
  return { change, ...planService(f, 'wg0', change, routes, desired.publicKey, desired) };
}

describe('an MTU change is set on the running interface, not restarted', () => {
  it('the captured file is the design at MTU 1420 (the premise): nothing to do', () => {
    assert.equal(facts.live?.mtu, 1420);
    assert.deepEqual(enable(inventory), { change: 'none' });
  });

  it('MTU 1420 -> 1380 alone: `ip link set dev wg0 mtu 1380`, no restart, and the plan says so', () => {
    const { change, action } = enable(withMesh({ mtu: 1380 }));
    assert.equal(change, 'interface', 'still an [Interface] change of the file (written as before)');
    assert.deepEqual(action!.changes, [
      { kind: 'set-mtu', iface: 'wg0', mtu: 1380, why: 'MTU 1420 -> 1380 in wg0.conf, the only [Interface] change' },
    ]);
    assert.match(action!.script, /^ip link set dev wg0 mtu 1380 up$/m);
    assert.doesNotMatch(action!.script, /systemctl restart|wg-quick down|wg addconf/);
    assert.equal(
      describeAction(action!),
      'set wg0 MTU 1380 live (MTU 1420 -> 1380 in wg0.conf, the only [Interface] change; no restart, interface and sessions kept)',
    );
  });

  it('MTU and peers changed together: the MTU set live, then the peers synced (a keepalive), no restart', () => {
    const { action } = enable(withMesh({ mtu: 1380, persistentKeepalive: 20 }));
    assert.deepEqual(
      action!.changes.map((c) => c.kind),
      ['set-mtu', 'syncconf'],
    );
    assert.match(action!.script, /^ip link set dev wg0 mtu 1380 up$/m);
    assert.match(action!.script, /\| wg addconf wg0 \/dev\/stdin/);
    assert.doesNotMatch(action!.script, /systemctl restart/);
  });

  it('the MTU alone, with a peer route removed by hand: the MTU set live and the routes made again (as a restart would)', () => {
    const routeless = { ...facts, interfaceRoutes: facts.interfaceRoutes.slice(1) };
    const { action } = enable(withMesh({ mtu: 1380 }), routeless);
    assert.deepEqual(
      action!.changes.map((c) => c.kind),
      ['set-mtu', 'syncconf'],
    );
    assert.match(action!.script, /ip -4 route replace "\$r" dev wg0/);
    assert.doesNotMatch(action!.script, /systemctl restart/);
  });

  it('MTU and another [Interface] setting (ListenPort) changed: a restart, as before', () => {
    const ported = withMesh({ mtu: 1380 });
    const { action } = enable({ ...ported, nodes: ported.nodes.map((n) => (n.name === 'ms-1' ? { ...n, listenPort: 51821 } : n)) });
    assert.deepEqual(action!.changes, [{ kind: 'restart', unit: 'wg-quick@wg0', why: '[Interface] changed' }]);
    assert.doesNotMatch(action!.script, /ip link set dev wg0 mtu/);
  });

  it('the MTU alone in the file, but the live address is not the design: both set live, the stray address deleted (Q6-9)', () => {
    const moved = { ...facts, live: { ...facts.live!, addresses: ['172.27.15.99/32'] } };
    const { action } = enable(withMesh({ mtu: 1380 }), moved);
    assert.deepEqual(
      action!.changes.map((c) => c.kind),
      ['set-mtu', 'set-address'],
    );
    assert.match(action!.script, /ip -4 address del 172\.27\.15\.99\/32 dev wg0/);
    assert.doesNotMatch(action!.script, /systemctl restart/);
  });

  it('without systemd: the MTU set live too, no wg-quick down/up', () => {
    const { action, warning } = enable(withMesh({ mtu: 1380 }), { ...facts, systemd: false });
    assert.deepEqual(
      action!.changes.map((c) => c.kind),
      ['set-mtu'],
    );
    assert.match(action!.script, /^ip link set dev wg0 mtu 1380 up$/m);
    assert.doesNotMatch(action!.script, /wg-quick (down|up)/);
    assert.match(warning ?? '', /no systemd/);
  });

  it('the live MTU set brings the link up as wg-quick does, and loads the key on an interface running without it, with or without systemd (RV2 findings 4, 10)', () => {
    const keyless = { ...facts, interfacePublicKey: undefined };
    for (const systemd of [true, false]) {
      const { action } = enable(withMesh({ mtu: 1380 }), { ...keyless, systemd });
      assert.deepEqual(
        action!.changes.map((c) => c.kind),
        ['set-mtu', 'load-private-key'],
        `systemd ${systemd}`,
      );
      assert.match(action!.script, /^ip link set dev wg0 mtu 1380 up$/m);
      assert.match(action!.script, /^wg set wg0 private-key \/etc\/wireguard\/wg0\.key$/m);
    }
  });

  it('liveInterfaceChange: a file without an MTU line (wg-quick chose one) is an MTU change too; any line but MTU and Address is not', () => {
    const desired = desiredNodeConfig(inventory, 'ms-1', keys);
    const text = facts.config.text!;
    assert.deepEqual(liveInterfaceChange(text.replace(/^MTU = 1420\n/m, ''), desired), { mtu: { to: 1420 }, peers: false });
    assert.deepEqual(liveInterfaceChange(text.replace('MTU = 1420', 'MTU = 1280'), desired), {
      mtu: { from: 1280, to: 1420 },
      peers: false,
    });
    assert.equal(liveInterfaceChange(text, desired), undefined, 'no change');
    assert.equal(liveInterfaceChange(undefined, desired), undefined, 'no file');
    assert.equal(liveInterfaceChange(text.replace('MTU = 1420', 'MTU = 1280\nTable = off'), desired), undefined);
    assert.equal(liveInterfaceChange(text.replace('MTU = 1420', 'MTU = 1280\nPrivateKey = x'), desired), undefined);
  });
});
