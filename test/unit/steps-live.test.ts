/**
 * The enable planner against the LIVE interface (issue 8, kind 2): facts captured from a converged homelab lab and
 * from the same lab after a change by hand (test/fixtures/facts/live-*.txt; how: test/fixtures/probes/capture.sh).
 * The file on the node is the design in every capture ('none' change), so each action below comes from the live
 * comparison alone; before it, every one of these planned nothing.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { factsProbeScript, parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { liveDrift, planService } from '../../src/steps/service.js';
import { describeAction } from '../../src/engine/plan.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig, type DesiredNodeConfig } from '../../src/topology/desired.js';

const target = { interface: 'wg0', listenPort: 51820 };
const inventory = loadInventory('inventories/homelab.yaml');
const facts = (name: string): NodeFacts => parseFactsProbe(readFileSync(`test/fixtures/facts/${name}`, 'utf8'), target);

/** The lab's public keys, read from ms-1's captured wg0.conf (`# name` then `PublicKey = ...`) and its key file. */
const converged = facts('live-converged-ms-1.txt');
const keys = new Map([...converged.config.text!.matchAll(/^# (\S+)\nPublicKey = (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
keys.set('ms-1', converged.keys.publicKey!);
const KEY = (name: string) => keys.get(name)!;
const desired = (node: string): DesiredNodeConfig => desiredNodeConfig(inventory, node, keys);
const routes = (d: DesiredNodeConfig) => d.peers.flatMap((p) => p.allowedIps);
/** the enable plan of `node` from a capture, the file unchanged ('none'), with the design given */
const plan = (f: NodeFacts, node = 'ms-1') => {
  const d = desired(node);
  return planService(f, 'wg0', 'none', routes(d), d.publicKey, d);
};

describe('live interface facts', () => {
  it('the probe reads the live MTU, addresses and listen port (ip -j addr, wg show listen-port)', () => {
    assert.match(factsProbeScript(target), /ip -j addr show dev wg0/);
    // the listen port from the one `wg show all dump` of up's lean probe (src/facts/lean.ts; issue 10)
    assert.match(factsProbeScript(target), /wg show all dump/);
    assert.deepEqual(converged.live, { mtu: 1420, addresses: ['172.27.15.12/32'], listenPort: 51820, wgReadable: true });
    assert.equal(facts('live-mtu-1380-ms-1.txt').live?.mtu, 1380);
  });

  it('has no live facts when the interface does not exist, or in a capture made before these sections', () => {
    assert.equal(facts('live-deleted-ms-1.txt').live, undefined);
    assert.equal(facts('converged-wk-1.txt').live, undefined);
    assert.equal(facts('bare-debian12.txt').live, undefined);
  });
});

describe('enable planner: the live interface against the design', () => {
  it('plans nothing on a converged node, also where NAT roamed the live endpoints (the edge)', () => {
    assert.deepEqual(plan(converged), {});
    const edge = facts('live-converged-ctb-edge-1.txt');
    // the capture is worth something only if the live endpoints really differ from the configured ones
    const configured = new Set(desired('ctb-edge-1').peers.map((p) => p.endpoint));
    assert.ok(
      edge.peers.every((p) => !configured.has(p.endpoint)),
      JSON.stringify(edge.peers.map((p) => p.endpoint)),
    );
    assert.deepEqual(liveDrift(edge, desired('ctb-edge-1')), {
      restart: [],
      peers: [],
      keepaliveOff: [],
      presharedOff: [],
      extraRoutes: [],
    });
    assert.deepEqual(plan(edge, 'ctb-edge-1'), {});
  });

  it('(a) syncs a peer removed with `wg set ... remove`, keeping the interface', () => {
    const action = plan(facts('live-peer-removed-ms-1.txt')).action!;
    assert.deepEqual(action.changes, [
      { kind: 'syncconf', iface: 'wg0', why: 'live peers differ from wg0.conf: no peer ctb-edge-1; interface and sessions kept' },
    ]);
    assert.match(action.script, /\| wg addconf wg0 \/dev\/stdin/);
    assert.match(action.script, /cat \/etc\/wireguard\/wg0\.key/, 'the key goes in through the pipe, or syncconf clears it');
    assert.doesNotMatch(action.script, /restart|wg-quick down/);
  });

  it('(b) removes a peer added by hand and deletes its route, whatever its proto', () => {
    const f = facts('live-stranger-ms-1.txt');
    assert.ok(f.interfaceRoutes.includes('10.66.0.0/16'));
    const action = plan(f).action!;
    assert.equal(action.changes.length, 1);
    assert.match(
      describeAction(action),
      /^wg syncconf wg0 \(live peers differ from wg0\.conf: unknown peer M3fwNRy2GL… \(AllowedIPs 10\.66\.0\.0\/16\)/,
    );
    const remove = action.script.split('\n').find((l) => l.includes('ip -4 route del "$r" dev wg0') && l.includes('10.66.0.0/16'));
    assert.ok(remove, action.script);
    // run the removal against a stand-in `ip` that shows the route: exactly it is deleted
    const ipStub = 'ip() { case "$*" in *"route show exact"*) echo "$4 proto static scope link";; *"route del"*) echo "del $4";; esac; }';
    assert.equal(execFileSync('sh', ['-c', `${ipStub}\n${remove}`], { encoding: 'utf8' }).trim(), 'del 10.66.0.0/16');
  });

  it('(c) sets the MTU live when only the live MTU is not the MTU of a file already written (an interrupted run), naming both', () => {
    // RV2 finding 11: the file is the design, the live MTU the only difference: no restart of the node (Q3-6)
    const action = plan(facts('live-mtu-1380-ms-1.txt')).action!;
    assert.deepEqual(action.changes, [
      { kind: 'set-mtu', iface: 'wg0', mtu: 1420, why: "live MTU 1380, wg0.conf 1420: the file's MTU set on the running interface" },
    ]);
    assert.match(action.script, /^ip link set dev wg0 mtu 1420 up$/m);
    assert.doesNotMatch(action.script, /systemctl restart/);
  });

  it('(c) a live MTU beside a live address that is not the design: both set back live (Q6-9), a live listen port still restarts', () => {
    const f = facts('live-mtu-1380-ms-1.txt');
    const action = plan({ ...f, live: { ...f.live!, addresses: ['172.27.15.99/32'] } }).action!;
    assert.deepEqual(
      action.changes.map((c) => c.kind),
      ['set-mtu', 'set-address'],
    );
    assert.match(
      action.changes[1]!.kind === 'set-address' ? action.changes[1]!.why : '',
      /live address 172\.27\.15\.99\/32, wg0\.conf 172\.27\.15\.12\/32/,
    );
    const ported = plan({ ...f, live: { ...f.live!, addresses: ['172.27.15.99/32'], listenPort: 51899 } }).action!;
    assert.equal(ported.changes[0]!.kind, 'restart');
    assert.match(ported.changes[0]!.kind === 'restart' ? ported.changes[0]!.why : '', /live MTU 1380, wg0.conf 1420/);
  });

  it('syncs a keepalive and an endpoint changed with `wg set`, and switches off a keepalive the file does not set', () => {
    const f = facts('live-keepalive-endpoint-ms-1.txt');
    const drift = liveDrift(f, desired('ms-1'));
    assert.deepEqual(drift.peers, [
      'peer ctb-edge-1 keepalive off, wg0.conf 25',
      'peer wk-1 keepalive 7, wg0.conf off',
      'peer wk-2 endpoint 192.168.15.99:51820, wg0.conf 192.168.15.4:51820 (no NAT between them changes it)',
    ]);
    // `wg syncconf` leaves a keepalive alone that the file does not mention (seen in the lab): switched off by hand
    assert.deepEqual(drift.keepaliveOff, [KEY('wk-1')]);
    const action = plan(f).action!;
    assert.equal(action.changes[0]!.kind, 'syncconf');
    assert.match(
      action.script,
      new RegExp(`for k in '?${KEY('wk-1').replace(/[+/]/g, '\\$&')}'?; do wg set wg0 peer "\\$k" persistent-keepalive off; done`),
    );
  });

  it('restarts a unit that is active while its interface was deleted by hand', () => {
    const action = plan(facts('live-deleted-ms-1.txt')).action!;
    assert.deepEqual(action.changes, [{ kind: 'restart', unit: 'wg-quick@wg0', why: 'wg0 is missing while wg-quick@wg0 is active' }]);
  });

  it('restarts for a live address or listen port that is not the design; a file change still wins', () => {
    const live = converged.live!;
    const moved = plan({ ...converged, live: { ...live, addresses: ['172.27.15.99/32'], listenPort: 51999 } }).action!;
    assert.deepEqual(moved.changes, [
      {
        kind: 'restart',
        unit: 'wg-quick@wg0',
        why: 'live address 172.27.15.99/32, wg0.conf 172.27.15.12/32; live listen port 51999, wg0.conf 51820',
      },
    ]);
    const d = desired('ms-1');
    const both = planService(facts('live-mtu-1380-ms-1.txt'), 'wg0', 'interface', routes(d), d.publicKey, d).action!;
    assert.deepEqual(both.changes, [{ kind: 'restart', unit: 'wg-quick@wg0', why: '[Interface] changed' }]);
  });

  it('removes a route via wg0 that no designed peer has, without touching peers', () => {
    const action = plan({ ...converged, interfaceRoutes: [...converged.interfaceRoutes, '10.67.0.0/16'] }).action!;
    assert.equal(describeAction(action), 'remove route 10.67.0.0/16 via wg0 (no designed peer has them)');
    assert.doesNotMatch(action.script, /syncconf|restart/);
  });

  it('without systemd: a live peer difference is synced, not a wg-quick down/up', () => {
    const action = plan({ ...facts('live-peer-removed-ms-1.txt'), systemd: false }).action!;
    assert.equal(action.changes[0]!.kind, 'syncconf');
    assert.doesNotMatch(action.script, /wg-quick down/);
    // the live MTU alone is set live without systemd too (RV2 finding 11), no wg-quick down/up
    const mtu = plan({ ...facts('live-mtu-1380-ms-1.txt'), systemd: false }).action!.script;
    assert.match(mtu, /^ip link set dev wg0 mtu 1420 up$/m);
    assert.doesNotMatch(mtu, /wg-quick down/);
    assert.equal(plan({ ...converged, systemd: false }).action, undefined);
  });
});
