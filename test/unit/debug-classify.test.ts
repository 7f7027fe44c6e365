import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyPair, udpDropRules, icmpDropOnIfaceRules, type Diagnosis, type PairEvidence } from '../../src/debug/classify.js';
import { pairEvidence, failingPairs, chooseSender } from '../../src/debug/run.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import type { Collected } from '../../src/checks/collect.js';
import { noPackets, type CaptureCounts } from '../../src/debug/capture.js';
import { factsFrom, healthyScenario, homelab } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

const collectedOf = (name: string) => factsFrom(SCENARIOS[name]!()) as Collected;
const zero: CaptureCounts = noPackets();

/** The one cause the evidence shows (a second one would be a wrong or an extra diagnosis). */
function only(e: PairEvidence): Diagnosis {
  const found = classifyPair(e);
  assert.equal(found.length, 1, `one cause expected, got ${found.map((d) => d.cause).join(', ')}`);
  return found[0]!;
}

test('1. forward to the wrong node: captures show datagrams at wk-2, none at ms-1; the forward is named', () => {
  const collected = collectedOf('forward-misdirected');
  const e = pairEvidence(collected, 'ctb-edge-1', 'ms-1', ['wk-1', 'wk-2']);
  e.capture = {
    markerSent: true,
    counts: {
      'ctb-edge-1': { ...zero, total: 6 },
      'ms-1': { ...zero },
      'wk-1': { ...zero },
      'wk-2': { ...zero, udpFromSender: 5, initiationsFromSender: 2, markers: 3, total: 5 },
    },
  };
  const d = only(e);
  assert.equal(d.cause, 'forward-misdirected');
  assert.equal(d.summary, 'the forward 203.0.113.10:51821 should reach ms-1 but datagrams arrive at wk-2');
  assert.equal(d.node, 'router:home');
  assert.match(d.fix, /192\.168\.15\.2:51820/);
});

test('1c. a misdirected forward is found even while the pair works (the NATed side dials out, WireGuard roams)', () => {
  const e = pairEvidence(factsFrom(healthyScenario()) as Collected, 'ctb-edge-1', 'ms-1', ['wk-1', 'wk-2']);
  e.capture = {
    markerSent: true,
    counts: {
      'ctb-edge-1': { ...zero },
      'ms-1': { ...zero },
      'wk-1': { ...zero },
      'wk-2': { ...zero, udpFromSender: 3, markers: 3, total: 3 },
    },
  };
  const d = only(e);
  assert.equal(d.cause, 'forward-misdirected');
  assert.match(d.explanation, /only works while ms-1 dials out/);
});

test('2b. UDP dropped while old handshakes are still recent: still the firewall', () => {
  const s = SCENARIOS['firewall-udp']!();
  for (const n of Object.values(s.nodes)) for (const p of n.peers) p.latestHandshake = 1795376844 - 30;
  assert.equal(only(pairEvidence(factsFrom(s) as Collected, 'ctb-edge-1', 'wk-1')).cause, 'firewall-udp');
});

test('1b. the same without captures: no handshake, and it says to run --tcpdump', () => {
  const d = only(pairEvidence(collectedOf('forward-misdirected'), 'ctb-edge-1', 'ms-1'));
  assert.equal(d.cause, 'no-handshake');
  assert.match(d.fix, /--tcpdump/);
});

test('2. UDP dropped by the edge firewall: the rule is named', () => {
  const d = only(pairEvidence(collectedOf('firewall-udp'), 'ctb-edge-1', 'wk-1'));
  assert.equal(d.cause, 'firewall-udp');
  assert.equal(d.node, 'ctb-edge-1');
  assert.ok(d.evidence.some((l) => /--dport 51820 -j DROP/.test(l)));
});

test("3. a peer block with another node's key", () => {
  const d = only(pairEvidence(collectedOf('wrong-public-key'), 'wk-1', 'ms-1'));
  assert.equal(d.cause, 'wrong-public-key');
  assert.equal(d.node, 'wk-1');
  assert.match(d.explanation, /belongs to wk-2/);
});

test('4. ICMP dropped on wg0: handshake fine, ping fails', () => {
  const d = only(pairEvidence(collectedOf('firewall-icmp'), 'wk-1', 'ms-1'));
  assert.equal(d.cause, 'firewall-icmp');
  assert.equal(d.node, 'ms-1');
});

test('5. /32 route removed', () => {
  const d = only(pairEvidence(collectedOf('missing-route'), 'wk-1', 'ms-1'));
  assert.equal(d.cause, 'missing-route');
  assert.equal(d.node, 'ms-1');
  assert.match(d.fix, /ip route replace 172\.27\.15\.11\/32 dev wg0/);
});

test('6. MTU black hole: small pass, large lost', () => {
  const d = only(pairEvidence(collectedOf('mtu'), 'ctb-edge-1', 'ms-1'));
  assert.equal(d.cause, 'mtu');
  assert.match(d.summary, /over 1232 bytes/);
});

test('7. wg-quick@wg0 stopped', () => {
  const d = only(pairEvidence(collectedOf('service-down'), 'wk-1', 'wk-2'));
  assert.equal(d.cause, 'service-down');
  assert.equal(d.node, 'wk-2');
  assert.match(d.fix, /systemctl enable --now wg-quick@wg0/);
});

test('7b. interface missing without systemd', () => {
  const s = SCENARIOS['service-down']!();
  s.nodes['wk-2']!.service = 'no-systemd';
  const d = only(pairEvidence(factsFrom(s) as Collected, 'wk-1', 'wk-2'));
  assert.equal(d.cause, 'interface-missing');
});

test('8. wrong LAN endpoint between two home nodes, while the edge works', () => {
  const d = only(pairEvidence(collectedOf('wrong-lan-endpoint'), 'wk-1', 'wk-2'));
  assert.equal(d.cause, 'wrong-lan-endpoint');
  assert.equal(d.node, 'wk-1');
  assert.match(d.summary, /192\.168\.15\.9:51820 instead of its LAN address 192\.168\.15\.4:51820/);
  assert.match(d.explanation, /Both reach ctb-edge-1/);
});

test('UDP arriving but no handshake answer (captures): key or AllowedIPs on the receiver', () => {
  const e = pairEvidence(collectedOf('forward-misdirected'), 'ctb-edge-1', 'ms-1');
  e.capture = {
    markerSent: true,
    counts: { 'ctb-edge-1': { ...zero }, 'ms-1': { ...zero, udpFromSender: 4, initiationsFromSender: 1, markers: 3, total: 4 } },
  };
  assert.equal(only(e).cause, 'no-handshake-answer');
});

test('no UDP arriving anywhere (captures)', () => {
  const e = pairEvidence(collectedOf('forward-misdirected'), 'ctb-edge-1', 'ms-1', ['wk-1', 'wk-2']);
  e.capture = { markerSent: true, counts: { 'ctb-edge-1': { ...zero }, 'ms-1': { ...zero }, 'wk-1': { ...zero }, 'wk-2': { ...zero } } };
  const d = only(e);
  assert.equal(d.cause, 'no-udp-arriving');
  assert.match(d.explanation, /forward 203\.0\.113\.10:51821 is missing/);
});

test('strict rp_filter with a working handshake', () => {
  const s = SCENARIOS['firewall-icmp']!();
  s.nodes['ms-1']!.firewall = [];
  s.nodes['ms-1']!.rp = { all: 1, default: 1, iface: 1 };
  assert.equal(only(pairEvidence(factsFrom(s) as Collected, 'wk-1', 'ms-1')).cause, 'rp-filter');
});

test('AllowedIPs mismatch', () => {
  const s = healthyScenario();
  s.nodes['wk-1']!.peers[1]!.allowedIps = ['172.27.15.99/32'];
  const facts = factsFrom(s) as Collected;
  const name = homelab().desired.get('wk-1')!.peers[1]!.name;
  assert.equal(only(pairEvidence(facts, 'wk-1', name)).cause, 'allowed-ips');
});

test('healthy pair', () => {
  assert.equal(only(pairEvidence(factsFrom(healthyScenario()) as Collected, 'wk-1', 'ms-1')).cause, 'healthy');
});

test('unreachable node', () => {
  const facts = factsFrom(healthyScenario()) as Collected;
  facts.checklists.delete('ms-1');
  facts.unreachable.set('ms-1', 'timed out');
  assert.equal(only(pairEvidence(facts, 'wk-1', 'ms-1')).cause, 'node-unreachable');
});

test('failing pairs come from the verify checks; the sender dials through the forward', () => {
  const facts = collectedOf('forward-misdirected');
  assert.deepEqual(failingPairs(facts.inventory, evaluateVerify(facts)), [['ms-1', 'ctb-edge-1']]);
  const inv = facts.inventory;
  const n = (x: string) => inv.nodes.find((y) => y.name === x)!;
  const [s, r] = chooseSender(inv, n('ms-1'), n('ctb-edge-1'));
  assert.deepEqual([s.name, r.name], ['ctb-edge-1', 'ms-1']);
  const svc = collectedOf('service-down');
  assert.equal(failingPairs(svc.inventory, evaluateVerify(svc)).length, 3);
});

test('firewall rule readers', () => {
  assert.equal(
    udpDropRules(
      [
        '-A INPUT -p udp -m udp --dport 51820 -j DROP',
        '-A INPUT -p udp --dport 53 -j DROP',
        '-A INPUT -p udp -m multiport --dports 500,51820 -j REJECT',
      ],
      51820,
    ).length,
    2,
  );
  assert.equal(udpDropRules(['        udp dport 51820 counter packets 3 bytes 444 drop'], 51820).length, 1);
  assert.equal(
    icmpDropOnIfaceRules(
      ['[0:0] -A INPUT -i wg0 -p icmp -j DROP', '-A INPUT -i eth0 -p icmp -j DROP', '-A INPUT -i wg0 -p tcp -j DROP'],
      'wg0',
    ).length,
    1,
  );
});

test('an interface without a private key: named before any key or handshake theory, with the one-line fix', () => {
  for (const sender of ['wk-1', 'ctb-edge-1']) {
    const d = only(pairEvidence(collectedOf('no-private-key'), sender, 'wk-2'));
    assert.equal(d.cause, 'no-private-key');
    assert.equal(d.node, 'wk-2');
    assert.match(d.fix, /wg set wg0 private-key \/etc\/wireguard\/wg0\.key/);
  }
});
