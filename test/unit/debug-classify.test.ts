import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { classifyPair, RULES, udpDropRules, icmpDropOnIfaceRules, type Diagnosis, type PairEvidence } from '../../src/debug/classify.js';
import { checkInventoryPatch } from '../../src/debug/inventory-fix.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredMesh } from '../../src/topology/desired.js';
import { pairCanConnect } from '../../src/topology/endpoints.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { parseChecklist } from '../../src/checks/probes.js';
import type { MatrixCell } from '../../src/checks/ping-matrix.js';
import { pairEvidence, failingPairs, chooseSender } from '../../src/debug/run.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import type { Collected } from '../../src/checks/collect.js';
import { markerWasSent, noPackets, type CaptureCounts } from '../../src/debug/capture.js';
import {
  checklistStdout,
  factsFrom,
  healthyNode,
  healthyScenario,
  homelab,
  KEYS,
  noHandshake,
  NOW,
  pairDown,
  type FakeNode,
} from '../fixtures/probes/homelab.js';
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

// ---------------------------------------------------------------------------------------------------------------
// Issue 8, kind 9: every diagnosis consistent with its evidence, every cause named, every fix one that validates.

const causesOf = (e: PairEvidence) => classifyPair(e).map((d) => `${d.cause}${d.node ? `@${d.node}` : ''}`);
/** evidence with the inventory's own text, so that inventory changes are validated before they are suggested */
const withText = (e: PairEvidence): PairEvidence => ({ ...e, inventoryText: readFileSync(e.inventory.source, 'utf8') });

test('(a) a peer removed from the live interface (the file is right): named so, fixed by a sync, not a file edit', () => {
  const s = healthyScenario();
  const ms1 = s.nodes['ms-1']!;
  ms1.peers = ms1.peers.filter((p) => p.publicKey !== KEYS['ctb-edge-1']); // wg set wg0 peer <edge> remove
  pairDown(s, 'ms-1', 'ctb-edge-1');
  noHandshake(s, 'ms-1', 'ctb-edge-1');
  const e = pairEvidence(factsFrom(s) as Collected, 'ctb-edge-1', 'ms-1');
  assert.deepEqual(causesOf(e), ['peer-missing-live@ms-1']);
  const d = only(e);
  assert.match(d.summary, /ctb-edge-1 is missing from ms-1's live interface/);
  assert.match(
    d.explanation,
    new RegExp(`holds ctb-edge-1's \\[Peer\\] block with the right key ${KEYS['ctb-edge-1']!.replace(/[+/]/g, '\\$&')}`),
  );
  assert.match(d.fix, /Re-run meshctl up/);
  assert.match(d.fix, /wg syncconf wg0 \/dev\/stdin/);
  assert.match(d.fix, /cat \/etc\/wireguard\/wg0\.key/, 'the sync keeps the private key (a key-less syncconf clears it)');
  assert.doesNotMatch(d.fix, /Fix the \[Peer\] block|PublicKey =/);
});

test('(a) the same peer missing from the file too is still a wrong-key/file fault (the file fix is the right one)', () => {
  const s = healthyScenario();
  const ms1 = s.nodes['ms-1']!;
  ms1.peers = ms1.peers.filter((p) => p.publicKey !== KEYS['ctb-edge-1']);
  ms1.config = ms1.config!.replace(`PublicKey = ${KEYS['ctb-edge-1']}`, `PublicKey = ${KEYS['wk-1']!.replace('Lj', 'Xx')}`);
  pairDown(s, 'ms-1', 'ctb-edge-1');
  noHandshake(s, 'ms-1', 'ctb-edge-1');
  const d = only(pairEvidence(factsFrom(s) as Collected, 'ctb-edge-1', 'ms-1'));
  assert.equal(d.cause, 'wrong-public-key');
  assert.match(d.fix, /Fix the \[Peer\] block for ctb-edge-1/);
});

/** Evidence for a pair of test/fixtures/inventories/good/unconnectable-pair.yaml: every node healthy, as captured. */
function unconnectableEvidence(sender: string, receiver: string): PairEvidence {
  const path = 'test/fixtures/inventories/good/unconnectable-pair.yaml';
  const inventory = loadInventory(path);
  const keys = new Map(Object.entries({ ...KEYS, 'lab-1': KEYS['wk-1']! }).filter(([n]) => inventory.nodes.some((x) => x.name === n)));
  const desired = new Map(desiredMesh(inventory, keys).map((d) => [d.node, d]));
  const node = (n: string) => inventory.nodes.find((x) => x.name === n)!;
  const sides: PairEvidence['sides'] = {};
  for (const name of [sender, receiver]) {
    const d = desired.get(name)!;
    const state: FakeNode = {
      ...healthyNode('ms-1'),
      name,
      iface: { up: true, mtu: 1420, addresses: [d.address], ifindex: 5 },
      livePublicKey: d.publicKey,
      filePublicKey: d.publicKey,
      peers: d.peers.map((p) => ({
        publicKey: p.publicKey,
        ...(p.endpoint ? { endpoint: p.endpoint } : {}),
        allowedIps: [...p.allowedIps],
        latestHandshake: pairCanConnect(inventory, node(name), node(p.name)) ? NOW - 20 : 0,
        rx: 0,
        tx: 0,
      })),
      config: renderWgQuickConfig(d),
      routes: Object.fromEntries(d.peers.map((p) => [p.allowedIps[0]!.replace('/32', ''), { dev: 'wg0' }])),
    };
    const peerIps = d.peers.map((p) => p.allowedIps[0]!.replace('/32', ''));
    const checklist = parseChecklist(checklistStdout(state, peerIps), { interface: 'wg0', listenPort: 51820, peerIps });
    sides[name] = { node: name, reached: true, checklist, now: NOW };
  }
  const down: MatrixCell = {
    ok: false,
    loss: 100,
    transmitted: 35,
    received: 0,
    pmtu: { expected: 1392, largest: 0, ok: false, tries: [], skipped: true },
  };
  return { inventory, desired, sender, receiver, sides, forward: down, backward: down };
}

test('(b) a pair the inventory makes unconnectable: the inventory is named, no firewall, no datagrams that were never sent', () => {
  const e = withText(unconnectableEvidence('wk-2', 'lab-1'));
  // what `debug --tcpdump` gathered before: nothing captured, and the marker taken as sent from "marker not sent"
  e.capture = { markerSent: true, counts: { 'wk-2': { ...zero }, 'lab-1': { ...zero } } };
  const d = only(e);
  assert.equal(d.cause, 'unconnectable');
  assert.match(d.explanation, /wk-2 has no forwardedPort on the router of site home \(203\.0\.113\.10\)/);
  assert.match(d.explanation, /lab-1 is in site lab, a lan site with no way in/);
  assert.doesNotMatch(`${d.summary} ${d.explanation} ${d.fix}`, /firewall|sent datagrams/i);
  // the fix validates, and the patched inventory lets the pair connect
  assert.deepEqual(d.inventoryPatch, [{ path: ['nodes', 'wk-2', 'forwardedPort'], value: 51820 }]);
  assert.match(d.fix, /nodes\.wk-2\.forwardedPort: 51820 .*forward UDP 203\.0\.113\.10:51820 -> 192\.168\.15\.4:51820/);
  const patched = checkInventoryPatch(e.inventoryText!, e.inventory.source, d.inventoryPatch!);
  assert.ok(patched.ok, JSON.stringify(patched));
  const n = (x: string) => patched.inventory.nodes.find((y) => y.name === x)!;
  assert.ok(pairCanConnect(patched.inventory, n('wk-2'), n('lab-1')));
});

test('(b) unconnectable with no inventory text to check a change against: no inventory change is offered', () => {
  const d = only(unconnectableEvidence('lab-1', 'wk-2'));
  assert.equal(d.cause, 'unconnectable');
  assert.equal(d.inventoryPatch, undefined);
  assert.match(d.fix, /No forwardedPort can fix this pair/);
});

test('(b) the provocation without an endpoint sent no marker: "marker not sent" is not "sent"', () => {
  assert.equal(markerWasSent('no endpoint: marker not sent'), false);
  assert.equal(markerWasSent('no bash: marker not sent'), false);
  assert.equal(markerWasSent('sent\nsent\nsent'), true);
});

test('(c) an MTU black hole at 1232: no mesh.mtu below the 1280 minimum is suggested; the underlay fix is', () => {
  const e = withText(pairEvidence(collectedOf('mtu'), 'ctb-edge-1', 'ms-1'));
  const d = only(e);
  assert.equal(d.cause, 'mtu');
  assert.equal(d.inventoryPatch, undefined);
  assert.doesNotMatch(d.fix, /mesh\.mtu: 1232|to 1232/);
  assert.match(d.fix, /No value of mesh\.mtu fixes this: the path carries at most 1232-byte packets/);
  assert.match(d.fix, /from 1280 to 9000/, 'the validation says why');
  assert.match(d.fix, /underlay.*over about 1292 bytes/);
  // and the value it would have suggested really is rejected by the validation
  assert.equal(checkInventoryPatch(e.inventoryText!, e.inventory.source, [{ path: ['mesh', 'mtu'], value: 1232 }]).ok, false);
});

test('(c) an MTU black hole at 1328: mesh.mtu 1328 is suggested, after the inventory validated with it', () => {
  const s = SCENARIOS.mtu!();
  for (const n of ['ms-1', 'wk-1', 'wk-2']) {
    s.pings['ctb-edge-1']![n] = { received: 3, largest: 1300 };
    s.pings[n]!['ctb-edge-1'] = { received: 3, largest: 1300 };
  }
  const e = withText(pairEvidence(factsFrom(s) as Collected, 'ctb-edge-1', 'ms-1'));
  const d = only(e);
  assert.equal(d.cause, 'mtu');
  assert.deepEqual(d.inventoryPatch, [{ path: ['mesh', 'mtu'], value: 1328 }]);
  assert.match(d.fix, /Set mesh\.mtu: 1328 in .*homelab\.yaml \(the inventory validates with it\)/);
  const patched = checkInventoryPatch(e.inventoryText!, e.inventory.source, d.inventoryPatch!);
  assert.ok(patched.ok);
  assert.equal(patched.inventory.mesh.mtu, 1328);
  assert.match(patched.text, /# The reference design/, 'comments are kept');
});

test('(d) a missing /32 route and a UDP drop on the same node: both named, in runbook order', () => {
  const s = SCENARIOS['missing-route']!();
  s.nodes['ms-1']!.firewall = ['*filter', ':INPUT ACCEPT [0:0]', '[17:2516] -A INPUT -p udp -m udp --dport 51820 -j DROP', 'COMMIT'];
  const e = pairEvidence(factsFrom(s) as Collected, 'wk-1', 'ms-1');
  assert.deepEqual(causesOf(e), ['missing-route@ms-1', 'firewall-udp@ms-1']);
});

test('causes on both ends are all named (a stopped service on one, a wrong key file on the other)', () => {
  const s = SCENARIOS['service-down']!();
  const wk1 = s.nodes['wk-1']!;
  wk1.config = wk1.config!.replace(`PublicKey = ${KEYS['wk-2']}`, `PublicKey = ${KEYS['ms-1']!.replace('up', 'UP')}`);
  wk1.peers = wk1.peers.filter((p) => p.publicKey !== KEYS['wk-2']);
  assert.deepEqual(causesOf(pairEvidence(factsFrom(s) as Collected, 'wk-1', 'wk-2')), ['service-down@wk-2', 'wrong-public-key@wk-1']);
});

test('a symptom is not blamed twice: a UDP drop explains the silent receiver the captures show', () => {
  const e = pairEvidence(collectedOf('firewall-udp'), 'wk-1', 'ctb-edge-1');
  // tcpdump sees the initiations before the firewall drops them: not a key problem
  e.capture = {
    markerSent: true,
    counts: { 'wk-1': { ...zero }, 'ctb-edge-1': { ...zero, udpFromSender: 5, initiationsFromSender: 2, markers: 3 } },
  };
  assert.deepEqual(causesOf(e), ['firewall-udp@ctb-edge-1']);
});

test('a /32 pointing at another device: the fix is `ip route replace` (`ip route add` fails with "File exists")', () => {
  const s = SCENARIOS['missing-route']!();
  s.nodes['ms-1']!.routes['172.27.15.11'] = { dev: 'eth0', prefsrc: '192.168.15.2' };
  const d = only(pairEvidence(factsFrom(s) as Collected, 'wk-1', 'ms-1'));
  assert.equal(d.cause, 'missing-route');
  assert.match(d.fix, /^On ms-1: ip route replace 172\.27\.15\.11\/32 dev wg0 /);
});

test('no node reached: only what the inventory and the reached side show, no theory about the path', () => {
  const facts = collectedOf('forward-misdirected');
  facts.checklists.delete('ms-1');
  facts.unreachable.set('ms-1', 'timed out');
  assert.deepEqual(causesOf(pairEvidence(facts, 'ctb-edge-1', 'ms-1')), ['node-unreachable@ms-1']);
});

test('every rule has a name, and the rules are few lines each (the table replaces one long function)', () => {
  assert.ok(RULES.length >= 10);
  assert.equal(new Set(RULES.map((r) => r.name)).size, RULES.length);
});

// ---------------------------------------------------------------------------------------------------------------
// Finding 20: debug --pair called a pair HEALTHY that verify failed on cold start (a moved forward: the NATed side
// dialled out, so handshakes and pings passed).

/** The healthy homelab with verify's cold-start probe for ctb-edge-1 -> ms-1 seeing `delta` (and ms-1 -> edge passing). */
function coldStartEvidence(delta: { inDatagrams: number; noPorts: number }, collected = factsFrom(healthyScenario()) as Collected) {
  const edgeToMs1 = { from: 'ctb-edge-1', to: 'ms-1', endpoint: { host: '203.0.113.10', port: 51821 }, sent: 16, delta };
  const ms1ToEdge = {
    from: 'ms-1',
    to: 'ctb-edge-1',
    endpoint: { host: '198.51.100.25', port: 51820 },
    sent: 16,
    delta: { inDatagrams: 16, noPorts: 0 },
  };
  collected.coldStart = { directions: [edgeToMs1, ms1ToEdge], roundTrips: 1, ms: 10 };
  return collected;
}

test('finding 20: a pair that works now but cannot start a session from cold through its forward is not HEALTHY', () => {
  const collected = coldStartEvidence({ inDatagrams: 0, noPorts: 0 });
  const e = withText(pairEvidence(collected, 'ms-1', 'ctb-edge-1'));
  const d = only(e);
  assert.equal(d.cause, 'cold-start-blocked');
  assert.equal(d.node, 'router:home');
  assert.equal(d.summary, 'ctb-edge-1 cannot start a session with ms-1: a new flow to 203.0.113.10:51821 does not arrive');
  assert.match(d.explanation, /works now only because ms-1 dialled out first/);
  assert.match(d.fix, /forward UDP 203\.0\.113\.10:51821 to 192\.168\.15\.2:51820 \(ms-1\)/);
  assert.ok(d.evidence.includes('ms-1 /proc/net/snmp Udp: InDatagrams +0, NoPorts +0'), d.evidence.join('\n'));
  // and debug without --pair picks the pair from verify's failing cold-start check
  assert.deepEqual(failingPairs(collected.inventory, evaluateVerify(collected)), [['ms-1', 'ctb-edge-1']]);
});

test('finding 20: datagrams that arrive on a port nothing listens on are named so; a pair whose directions pass stays healthy', () => {
  const noListener = only(pairEvidence(coldStartEvidence({ inDatagrams: 0, noPorts: 16 }), 'ctb-edge-1', 'ms-1'));
  assert.equal(noListener.cause, 'cold-start-blocked');
  assert.equal(noListener.node, 'ms-1');
  assert.match(noListener.summary, /reach ms-1, but nothing listens on that port/);
  const healthy = only(pairEvidence(coldStartEvidence({ inDatagrams: 16, noPorts: 0 }), 'ctb-edge-1', 'ms-1'));
  assert.equal(healthy.cause, 'healthy');
  assert.match(healthy.explanation, /ctb-edge-1 and ms-1 can start a session from cold/);
});

test('a healthy pair names only the sides whose cold-start check passed: a direction that warned proves nothing', () => {
  // 12 of 16 datagrams arrived: verify warns (a lossy path or a rate limit); the pair is healthy, but ctb-edge-1 is not
  // shown to start a session from cold
  const d = only(pairEvidence(coldStartEvidence({ inDatagrams: 12, noPorts: 0 }), 'ctb-edge-1', 'ms-1'));
  assert.equal(d.cause, 'healthy');
  assert.match(d.explanation, /; ms-1 can start a session from cold\./);
  assert.doesNotMatch(d.explanation, /ctb-edge-1 and ms-1 can start/);
});

test('finding 20: a cold-start failure a firewall rule already explains is not named twice', () => {
  const collected = coldStartEvidence({ inDatagrams: 0, noPorts: 0 }, factsFrom(SCENARIOS['firewall-udp']!()) as Collected);
  assert.deepEqual(causesOf(pairEvidence(collected, 'ctb-edge-1', 'ms-1')), ['firewall-udp@ctb-edge-1']);
});

test("findings 27, 28: wg-quick@wg0 stopped: wg's raw 'Protocol not supported' is said in words (verify and debug)", () => {
  const collected = collectedOf('service-down');
  // what wg prints on a node running wireguard-go when the interface is gone (the lab's nodes: no kernel module)
  collected.checklists.get('wk-2')!.wgError = 'Unable to access interface: Protocol not supported';
  const d = only(pairEvidence(collected, 'wk-1', 'wk-2'));
  assert.equal(d.cause, 'service-down');
  const wg = d.evidence.find((line) => line.startsWith('wg: '))!;
  assert.equal(
    wg,
    'wg: wg0 is not up: no WireGuard interface of that name runs (wg-quick@wg0 stopped, or it failed to start) (wg said: Unable to access interface: Protocol not supported)',
  );
  const peers = evaluateVerify(collected).filter((c) => c.node === 'wk-2' && c.id === 'peers' && c.status === 'fail');
  assert.ok(peers.length > 0);
  for (const check of peers) assert.match(check.message, /^cannot read wg0: wg0 is not up: no WireGuard interface of that name runs/);
});

test('finding 26: sshd stopped on a node: the diagnosis says so and how to fix it, not only "could not be reached"', () => {
  const facts = factsFrom(healthyScenario()) as Collected;
  facts.checklists.delete('ms-1');
  facts.unreachable.set('ms-1', 'root@192.168.15.2:22: connection refused (is sshd running on that port?)');
  const d = only(pairEvidence(facts, 'wk-1', 'ms-1'));
  assert.equal(d.cause, 'node-unreachable');
  assert.equal(d.summary, 'nothing accepts SSH on ms-1 (connection refused): its sshd is stopped, or listens on another port');
  assert.match(d.fix, /^On ms-1's console: systemctl start ssh \(or sshd\), or set ssh\.port in the inventory/);
  assert.match(d.explanation, /connection refused \(is sshd running on that port\?\)/);
  facts.unreachable.set('ms-1', 'root@192.168.15.2:22: connect timed out after 10.0 s');
  assert.equal(only(pairEvidence(facts, 'wk-1', 'ms-1')).summary, 'ms-1 does not answer on its SSH port (timed out)');
  // an unknown host key is to be trusted (--accept-new), not repaired as a changed one
  facts.unreachable.set(
    'ms-1',
    'root@192.168.15.2:22: host key not known: ED25519 SHA256:abc is not in /root/.ssh/known_hosts; refusing to connect.',
  );
  const unknown = only(pairEvidence(facts, 'wk-1', 'ms-1'));
  assert.equal(unknown.summary, "ms-1's SSH host key is not known yet");
  assert.match(unknown.fix, /--accept-new/);
  facts.unreachable.set('ms-1', 'root@192.168.15.2:22: HOST KEY CHANGED: the host offers ED25519 SHA256:abc, but ...');
  assert.equal(only(pairEvidence(facts, 'wk-1', 'ms-1')).summary, "ms-1's SSH host key is not the one known for it");
});
