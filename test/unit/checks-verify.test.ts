import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateVerify, summarize, type Check } from '../../src/checks/verify.js';
import { factsFrom, healthyScenario, KEYS } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

const failing = (checks: Check[]) => checks.filter((c) => c.status === 'fail');
const has = (checks: Check[], id: string, node: string, peer?: string) =>
  failing(checks).some((c) => c.id === id && c.node === node && (peer === undefined || c.peer === peer));

test('healthy homelab: every check passes', () => {
  const checks = evaluateVerify(factsFrom(healthyScenario()));
  const notPass = checks.filter((c) => c.status !== 'pass');
  assert.deepEqual(notPass, []);
  const s = summarize(checks);
  assert.equal(s.fail, 0);
  // 4 nodes x (connect + 8 node checks) + 4 x 3 peers x 6 peer checks + 12 ordered pairs x 2
  assert.equal(checks.length, 4 * 9 + 4 * 3 * 6 + 12 * 2);
});

test('edge live endpoints of NATed home nodes roam to other ports: not a failure', () => {
  const checks = evaluateVerify(factsFrom(healthyScenario()));
  const ep = checks.find((c) => c.node === 'ctb-edge-1' && c.id === 'endpoint' && c.peer === 'ms-1')!;
  assert.equal(ep.status, 'pass');
  assert.match(ep.message, /NAT/);
});

test('1. forward pointed at the wrong node: ping and handshake fail for edge <-> ms-1 only', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['forward-misdirected']!()));
  assert.ok(has(checks, 'ping', 'ctb-edge-1', 'ms-1'));
  assert.ok(has(checks, 'handshake', 'ctb-edge-1', 'ms-1'));
  assert.ok(has(checks, 'handshake', 'ms-1', 'ctb-edge-1'));
  assert.ok(!failing(checks).some((c) => c.peer === 'wk-1' || c.peer === 'wk-2'));
});

test('2. edge drops UDP 51820: handshakes with the edge fail', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['firewall-udp']!()));
  for (const n of ['ms-1', 'wk-1', 'wk-2']) assert.ok(has(checks, 'handshake', 'ctb-edge-1', n));
  assert.ok(has(checks, 'ping', 'wk-1', 'ctb-edge-1'));
});

test("3. a peer block holding another node's key: peers check names it, config drift too", () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['wrong-public-key']!()));
  const peers = failing(checks).find((c) => c.id === 'peers' && c.node === 'wk-1' && c.peer === 'ms-1')!;
  assert.ok(peers, 'peers check for ms-1 on wk-1 fails');
  assert.match(peers.message, /public key of wk-2/);
  assert.ok(has(checks, 'config-drift', 'wk-1'));
  assert.ok(has(checks, 'allowed-ips', 'wk-1', 'wk-2'));
});

test('4. ICMP dropped on wg0: pings fail, handshakes pass', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['firewall-icmp']!()));
  assert.ok(has(checks, 'ping', 'wk-1', 'ms-1'));
  assert.ok(!failing(checks).some((c) => c.id === 'handshake'));
});

test('5. /32 route removed: route check fails with where it goes instead', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['missing-route']!()));
  const route = failing(checks).find((c) => c.id === 'route')!;
  assert.equal(route.node, 'ms-1');
  assert.equal(route.peer, 'wk-1');
  assert.match(route.message, /via eth0/);
  assert.deepEqual(route.evidence, ['ip route get 172.27.15.11: dev eth0 via 192.168.15.1']);
});

test('6. MTU black hole: path-mtu fails, pings pass', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS.mtu!()));
  const pm = failing(checks).filter((c) => c.id === 'path-mtu');
  assert.equal(pm.length, 6);
  assert.match(pm[0]!.message, /1204/);
  assert.match(pm[0]!.message, /^MTU black hole: /);
  assert.ok(!failing(checks).some((c) => c.id === 'ping'));
});

test('6b. an MTU change not applied on the sender is its own MTU, not a black hole (Q3 finding 9)', () => {
  // the design says 1420; ms-1's wg0 still runs 1380, so its DF probes pass up to 1352 bytes of payload, no further
  const s = healthyScenario();
  s.nodes['ms-1']!.iface!.mtu = 1380;
  for (const n of ['wk-1', 'wk-2', 'ctb-edge-1']) s.pings['ms-1']![n] = { received: 3, largest: 1352 };
  const checks = evaluateVerify(factsFrom(s));
  assert.ok(has(checks, 'mtu', 'ms-1'), 'the mtu check names the cause');
  const pm = failing(checks).filter((c) => c.id === 'path-mtu');
  assert.deepEqual(pm.map((c) => `${c.node}>${c.peer}`).sort(), ['ms-1>ctb-edge-1', 'ms-1>wk-1', 'ms-1>wk-2']);
  for (const c of pm) {
    assert.doesNotMatch(c.message, /black hole/, c.message);
    assert.match(
      c.message,
      /ms-1's own wg0 MTU is 1380, not the designed 1420 \(its mtu check\): payloads over 1352 bytes are refused on ms-1 itself/,
    );
  }
});

test('7. wg-quick@wg0 stopped: service, interface and listener fail on that node', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['service-down']!()));
  assert.ok(has(checks, 'service', 'wk-2'));
  assert.ok(has(checks, 'interface', 'wk-2'));
  assert.ok(has(checks, 'listener', 'wk-2'));
  assert.match(failing(checks).find((c) => c.id === 'service')!.message, /inactive/);
});

test('8. wrong LAN endpoint: endpoint check fails (same site), config drift names the line', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['wrong-lan-endpoint']!()));
  const ep = failing(checks).find((c) => c.id === 'endpoint')!;
  assert.equal(ep.node, 'wk-1');
  assert.equal(ep.peer, 'wk-2');
  assert.match(ep.message, /wrong LAN endpoint/);
  const drift = failing(checks).find((c) => c.id === 'config-drift')!;
  assert.ok(drift.evidence.some((e) => /192\.168\.15\.9/.test(e)));
});

test('rp_filter strict fails, off warns, loose passes', () => {
  for (const [all, status] of [
    [1, 'fail'],
    [0, 'warn'],
    [2, 'pass'],
  ] as const) {
    const s = healthyScenario();
    s.nodes['ms-1']!.rp = { all, default: 0, iface: 0 };
    const check = evaluateVerify(factsFrom(s)).find((c) => c.node === 'ms-1' && c.id === 'rp-filter')!;
    assert.equal(check.status, status, `all=${all}`);
  }
});

test('stale peer and old handshake', () => {
  const s = healthyScenario();
  s.nodes['ms-1']!.peers.push({
    publicKey: 'CiJr5j/thLuUsohaTA+q7utZd/jl0TfsRnXnIUmoiUs=',
    allowedIps: ['172.27.15.99/32'],
    latestHandshake: 0,
    rx: 0,
    tx: 0,
  });
  const peer = s.nodes['wk-1']!.peers.find((p) => p.publicKey === KEYS['ms-1'])!;
  peer.latestHandshake = 1795376844 - 600;
  const checks = evaluateVerify(factsFrom(s));
  assert.ok(failing(checks).some((c) => c.node === 'ms-1' && c.id === 'peers' && /stale/.test(c.message)));
  const hs = checks.find((c) => c.node === 'wk-1' && c.id === 'handshake' && c.peer === 'ms-1')!;
  assert.equal(hs.status, 'warn');
});

test('an unreachable node is one connect failure, the others are still checked', () => {
  const facts = factsFrom(healthyScenario());
  facts.checklists.delete('wk-2');
  facts.unreachable.set('wk-2', 'connect ECONNREFUSED');
  const checks = evaluateVerify(facts);
  const wk2 = checks.filter((c) => c.node === 'wk-2' && c.id !== 'ping' && c.id !== 'path-mtu');
  assert.deepEqual(
    wk2.map((c) => [c.id, c.status]),
    [['connect', 'fail']],
  );
  assert.ok(checks.some((c) => c.node === 'ms-1' && c.id === 'interface' && c.status === 'pass'));
});

test('an interface running without a private key fails public-key on that node (not "not running")', () => {
  const checks = evaluateVerify(factsFrom(SCENARIOS['no-private-key']!()));
  const key = checks.find((c) => c.id === 'public-key' && c.node === 'wk-2')!;
  assert.equal(key.status, 'fail');
  assert.match(key.message, /runs without a private key/);
  assert.ok(key.evidence.includes('wg public-key: (none)'));
  assert.ok(has(checks, 'ping', 'ms-1', 'wk-2'));
  assert.equal(checks.find((c) => c.id === 'public-key' && c.node === 'ms-1')!.status, 'pass');
});
