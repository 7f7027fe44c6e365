/**
 * Which live endpoints `up` repairs and which it keeps (../../src/steps/live-endpoint.ts, used by peerDrift in
 * ../../src/steps/service.ts), on facts captured from a converged homelab lab (test/fixtures/facts/live-converged-*):
 * ms-1 sits behind the home NAT (forward 203.0.113.10:51821), ctb-edge-1 is public (198.51.100.25:51820). The
 * endpoints below are the ones a new user set by hand (/work/wt/Q3-findings.md, "Broken pair 2"): before this rule
 * `plan` said "nothing to change" for both, as every endpoint of a pair through a NAT was exempt.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { liveDrift, planService } from '../../src/steps/service.js';
import { judgeLiveEndpoint, ROAMED_ENDPOINT_STALE_S, splitEndpoint } from '../../src/steps/live-endpoint.js';
import { describeAction } from '../../src/engine/plan.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig, type DesiredNodeConfig } from '../../src/topology/desired.js';

const target = { interface: 'wg0', listenPort: 51820 };
const inventory = loadInventory('inventories/homelab.yaml');
const facts = (name: string): NodeFacts => parseFactsProbe(readFileSync(`test/fixtures/facts/${name}`, 'utf8'), target);
const ms1 = facts('live-converged-ms-1.txt');
const edge = facts('live-converged-ctb-edge-1.txt');
const keys = new Map([...ms1.config.text!.matchAll(/^# (\S+)\nPublicKey = (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
keys.set('ms-1', ms1.keys.publicKey!);
const desired = (node: string): DesiredNodeConfig => desiredNodeConfig(inventory, node, keys);

/**
 * `f` with the live peer `peer` changed: its endpoint, and its latest handshake `age` seconds before the node's
 * clock (null: never).
 */
function withPeer(f: NodeFacts, peer: string, endpoint: string, age: number | null): NodeFacts {
  const key = keys.get(peer)!;
  assert.ok(f.now !== undefined && f.peers.some((p) => p.publicKey === key), `the capture has ${peer} and a clock`);
  const peers = f.peers.map((p) => {
    if (p.publicKey !== key) return p;
    const { latestHandshake: _, ...rest } = p;
    return { ...rest, endpoint, ...(age === null ? {} : { latestHandshake: f.now! - age }) };
  });
  return { ...f, peers };
}

const endpointDrift = (f: NodeFacts, node: string) => liveDrift(f, desired(node)).peers.filter((r) => /endpoint/.test(r));

describe('live endpoints: what a NAT can change, and what up repairs', () => {
  it('the design says which NAT can roam which endpoint (homelab)', () => {
    const roams = (node: string) => Object.fromEntries(desired(node).peers.map((p) => [p.name, p.natRoams ?? 'nothing']));
    // ms-1 is behind the NAT: its own router may only rewrite the port of ctb-edge-1's inbound flow
    assert.deepEqual(roams('ms-1'), { 'ctb-edge-1': 'port', 'wk-1': 'nothing', 'wk-2': 'nothing' });
    // ctb-edge-1 is public: each home node comes through the home NAT, address and port rewritten
    assert.deepEqual(roams('ctb-edge-1'), { 'ms-1': 'address', 'wk-1': 'address', 'wk-2': 'address' });
  });

  it("repairs a NATed node's endpoint for a PUBLIC peer at another address, even with a fresh handshake", () => {
    // on ms-1: wg set wg0 peer <ctb-edge-1> endpoint 198.51.100.26:51820, 11 s after the last handshake
    const broken = withPeer(ms1, 'ctb-edge-1', '198.51.100.26:51820', 11);
    assert.deepEqual(endpointDrift(broken, 'ms-1'), [
      'peer ctb-edge-1 endpoint 198.51.100.26:51820, wg0.conf 198.51.100.25:51820 (ctb-edge-1 is public: no NAT changes its address)',
    ]);
    const d = desired('ms-1');
    const action = planService(
      broken,
      'wg0',
      'none',
      d.peers.flatMap((p) => p.allowedIps),
      d.publicKey,
      d,
    ).action!;
    // a peer sync (wg addconf of what differs), never a restart: the other pairs keep their sessions
    assert.deepEqual(
      action.changes.map((c) => c.kind),
      ['syncconf'],
    );
    assert.match(
      describeAction(action),
      /^wg syncconf wg0 \(live peers differ from wg0\.conf: peer ctb-edge-1 endpoint 198\.51\.100\.26:51820/,
    );
    assert.doesNotMatch(action.script, /restart|wg-quick down/);
  });

  it("keeps a public peer's port rewritten by the node's own NAT while its session lives, repairs it once stale", () => {
    assert.deepEqual(endpointDrift(withPeer(ms1, 'ctb-edge-1', '198.51.100.25:40001', 30), 'ms-1'), []);
    assert.deepEqual(endpointDrift(withPeer(ms1, 'ctb-edge-1', '198.51.100.25:40001', ROAMED_ENDPOINT_STALE_S + 20), 'ms-1'), [
      `peer ctb-edge-1 endpoint 198.51.100.25:40001, wg0.conf 198.51.100.25:51820 (roamed through this node's NAT but no handshake for ${ROAMED_ENDPOINT_STALE_S + 20} s (over ${ROAMED_ENDPOINT_STALE_S} s): nothing answers there, the design says where the peer is reachable)`,
    ]);
  });

  it("keeps a public node's roamed endpoint for a NATed peer while its session lives; sets the forward back once stale", () => {
    // the captured edge itself: every home node roamed to a NAT port, all fresh: nothing to repair
    assert.deepEqual(endpointDrift(edge, 'ctb-edge-1'), []);
    // on ctb-edge-1: wg set wg0 peer <ms-1> endpoint 203.0.113.10:51829
    assert.deepEqual(endpointDrift(withPeer(edge, 'ms-1', '203.0.113.10:51829', 11), 'ctb-edge-1'), []);
    assert.deepEqual(endpointDrift(withPeer(edge, 'ms-1', '203.0.113.10:51829', ROAMED_ENDPOINT_STALE_S), 'ctb-edge-1'), [
      `peer ms-1 endpoint 203.0.113.10:51829, wg0.conf 203.0.113.10:51821 (roamed through ms-1's NAT but no handshake for ${ROAMED_ENDPOINT_STALE_S} s (over ${ROAMED_ENDPOINT_STALE_S} s): nothing answers there, the design says where the peer is reachable)`,
    ]);
    // a NATed peer's NAT may also show another address (a NAT with several); the same rule
    assert.deepEqual(endpointDrift(withPeer(edge, 'ms-1', '203.0.113.77:1024', 5), 'ctb-edge-1'), []);
    // no handshake ever: nothing was roamed to, it was set
    assert.deepEqual(endpointDrift(withPeer(edge, 'ms-1', '203.0.113.10:51829', null), 'ctb-edge-1'), [
      'peer ms-1 endpoint 203.0.113.10:51829, wg0.conf 203.0.113.10:51821 (no handshake ever: nothing vouches for it, the design says where the peer is reachable)',
    ]);
  });

  it('repairs any difference where no NAT sits between the two (one LAN)', () => {
    assert.deepEqual(endpointDrift(withPeer(ms1, 'wk-1', '192.168.15.3:51999', 1), 'ms-1'), [
      'peer wk-1 endpoint 192.168.15.3:51999, wg0.conf 192.168.15.3:51820 (no NAT between them changes it)',
    ]);
  });

  it('judges without a clock: a NAT-roamed endpoint is kept, an impossible one still repaired', () => {
    const want = desired('ms-1').peers.find((p) => p.name === 'ctb-edge-1')!;
    const have = {
      publicKey: want.publicKey,
      hasPresharedKey: false,
      allowedIps: want.allowedIps,
      rxBytes: 0,
      txBytes: 0,
      latestHandshake: 1,
    };
    assert.equal(judgeLiveEndpoint(want, { ...have, endpoint: '198.51.100.25:40001' }).verdict, 'roamed');
    assert.equal(judgeLiveEndpoint(want, { ...have, endpoint: '198.51.100.26:51820' }).verdict, 'wrong');
    assert.equal(judgeLiveEndpoint(want, { ...have, endpoint: want.endpoint! }).verdict, 'as-designed');
    assert.deepEqual(judgeLiveEndpoint({ ...want, endpoint: 'edge.example.org:51820' }, { ...have, endpoint: '198.51.100.26:51820' }), {
      verdict: 'by-name',
    });
  });

  it('reads IPv4 and bracketed IPv6 endpoints', () => {
    assert.deepEqual(splitEndpoint('198.51.100.25:51820'), { host: '198.51.100.25', port: 51820 });
    assert.deepEqual(splitEndpoint('[2001:db8::1]:51820'), { host: '2001:db8::1', port: 51820 });
    assert.equal(splitEndpoint('nonsense'), undefined);
  });
});
