/**
 * Q8's wrong causes and wrong advice (F-cold, F-port, F-v6fw): the judging of a cold-start burst that reached a closed
 * port, debug's cause for a node that listens on another port, and debug's firewall fix in the dropping rule's family.
 * The evidence is the homelab fixture's (test/fixtures/probes/homelab.ts) changed as the lab showed it; the firewall
 * ruleset is a capture from lab x9 (test/fixtures/firewall/ip6tables-udp-drop-ctb-edge-1*.txt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { classifyPair, udpAcceptCommands, type PairEvidence } from '../../src/debug/classify.js';
import { pairEvidence } from '../../src/debug/run.js';
import type { Collected } from '../../src/checks/collect.js';
import { arrivedAtClosedPort, COLD_START_BURST, judgeDirection, judgeWindow } from '../../src/checks/cold-start.js';
import { parseFirewallFacts } from '../../src/firewall/verdict.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

const causesOf = (e: PairEvidence) => classifyPair(e).map((d) => `${d.cause}${d.node ? `@${d.node}` : ''}`);
const withText = (e: PairEvidence): PairEvidence => ({ ...e, inventoryText: readFileSync(e.inventory.source, 'utf8') });

// ---------------------------------------------------------------------------------------------------------------
// F-cold: Q8 and lab x9 saw NoPorts +14 and +15 of 16 for a stopped wg-quick, judged "does not arrive ... firewall"

const ms1ToWk1 = { from: 'ms-1', to: 'wk-1', endpoint: { host: '192.168.15.3', port: 51820 }, sent: 16 };

test('F-cold: 14 or 15 of 16 datagrams at a closed port name the listener, not the firewall', () => {
  for (const noPorts of [14, 15, 16, 9]) {
    const r = { ...ms1ToWk1, delta: { inDatagrams: 0, noPorts } };
    assert.ok(arrivedAtClosedPort(r), `NoPorts +${noPorts}`);
    const j = judgeDirection(r);
    assert.equal(j.status, 'fail');
    assert.match(j.message, /datagrams to 192\.168\.15\.3:51820 arrive.*but nothing listens on that port/);
    assert.match(j.message, /wk-1's firewall passed them: its WireGuard interface is down or listens on another port/);
    assert.doesNotMatch(j.message, /does not arrive|firewall check/);
    if (noPorts < 16) assert.match(j.message, new RegExp(`\\(${noPorts} of 16 counted\\)`));
    assert.ok(j.evidence.includes(`wk-1 /proc/net/snmp Udp: InDatagrams +0, NoPorts +${noPorts}`));
  }
});

test('F-cold: half the burst or less at a closed port, nothing delivered: still "does not arrive" (the firewall)', () => {
  for (const noPorts of [0, 2, 8]) {
    const r = { ...ms1ToWk1, delta: { inDatagrams: 0, noPorts } };
    assert.ok(!arrivedAtClosedPort(r));
    assert.match(judgeDirection(r).message, /does not arrive \(a one-way pair/);
  }
  // most of them delivered to a socket: a lossy path, as before
  assert.equal(judgeDirection({ ...ms1ToWk1, delta: { inDatagrams: 12, noPorts: 0 } }).status, 'warn');
});

test('F-cold: a window of several bursts names the closed port only when each burst must have had most of it there', () => {
  const b = COLD_START_BURST;
  // two bursts, 30 of 32 at a closed port: every burst had at least 14 there
  assert.equal(judgeWindow([b, b], { inDatagrams: 0, noPorts: 2 * b - 2 }, 0), 'fail');
  const fail = judgeDirection({ ...ms1ToWk1, delta: { inDatagrams: 0, noPorts: 2 * b - 2 }, together: 2 });
  assert.match(fail.message, /nothing listens/);
  // 14 of 32: one burst may have had them all and the other none (a firewall): which one is open, not "does not arrive"
  assert.equal(judgeWindow([b, b], { inDatagrams: 0, noPorts: b - 2 }, 0), 'undecided');
  // little at a closed port: each fails as not arriving
  assert.equal(judgeWindow([b, b], { inDatagrams: 0, noPorts: b / 2 }, 0), 'fail');
  // another sender of ours may be in the growth: never "nothing listens" from the sum
  assert.equal(judgeWindow([b, b], { inDatagrams: 0, noPorts: 2 * b - 2 }, 1), 'undecided');
});

test('F-cold: debug names the closed port for 14 of 16 too (cold-start-blocked at the node, not the router)', () => {
  const collected = factsFrom(healthyScenario()) as Collected;
  collected.coldStart = {
    directions: [
      { from: 'ctb-edge-1', to: 'ms-1', endpoint: { host: '203.0.113.10', port: 51821 }, sent: 16, delta: { inDatagrams: 0, noPorts: 14 } },
      {
        from: 'ms-1',
        to: 'ctb-edge-1',
        endpoint: { host: '198.51.100.25', port: 51820 },
        sent: 16,
        delta: { inDatagrams: 16, noPorts: 0 },
      },
    ],
    roundTrips: 1,
    ms: 10,
  };
  const [d, ...rest] = classifyPair(pairEvidence(collected, 'ctb-edge-1', 'ms-1'));
  assert.equal(rest.length, 0);
  assert.equal(d!.cause, 'cold-start-blocked');
  assert.equal(d!.node, 'ms-1');
  assert.match(d!.summary, /reach ms-1, but nothing listens on that port/);
});

// ---------------------------------------------------------------------------------------------------------------
// F-port: wk-2's ListenPort set to 51830 in wg0.conf and wg-quick restarted (lab x9, as Q8 did on wk-3): ms-1's and
// wk-1's live endpoints for wk-2 roamed to 192.168.15.4:51830, the files still say :51820, and pings pass

function listenPortMoved() {
  const s = healthyScenario();
  const wk2 = s.nodes['wk-2']!;
  wk2.listenPort = 51830;
  wk2.listen = wk2.listen.map((l) => l.replaceAll(':51820', ':51830'));
  wk2.config = wk2.config!.replace('ListenPort = 51820', 'ListenPort = 51830');
  for (const n of ['ms-1', 'wk-1']) {
    const p = s.nodes[n]!.peers.find((x) => x.endpoint === '192.168.15.4:51820')!;
    p.endpoint = '192.168.15.4:51830';
  }
  const collected = factsFrom(s) as Collected;
  collected.coldStart = {
    directions: [
      { from: 'ms-1', to: 'wk-2', endpoint: { host: '192.168.15.4', port: 51820 }, sent: 16, delta: { inDatagrams: 0, noPorts: 15 } },
      { from: 'wk-2', to: 'ms-1', endpoint: { host: '192.168.15.2', port: 51820 }, sent: 16, delta: { inDatagrams: 16, noPorts: 0 } },
      { from: 'ctb-edge-1', to: 'wk-2', endpoint: { host: '203.0.113.10', port: 51822 }, sent: 16, delta: { inDatagrams: 0, noPorts: 16 } },
      {
        from: 'wk-2',
        to: 'ctb-edge-1',
        endpoint: { host: '198.51.100.25', port: 51820 },
        sent: 16,
        delta: { inDatagrams: 16, noPorts: 0 },
      },
    ],
    roundTrips: 1,
    ms: 10,
  };
  return collected;
}

test('F-port: a node listening on another port is named, with up as the fix; no wrong endpoint, no router forward', () => {
  const collected = listenPortMoved();
  for (const [a, b] of [
    ['ms-1', 'wk-2'],
    ['ctb-edge-1', 'wk-2'],
  ] as const) {
    const e = withText(pairEvidence(collected, a, b));
    assert.deepEqual(causesOf(e), ['listen-port@wk-2'], `${a} -> ${b}`);
    const d = classifyPair(e)[0]!;
    assert.equal(d.summary, 'wk-2 listens on UDP 51830, not on 51820, the port its peers dial');
    assert.match(d.explanation, /ms-1 at 192\.168\.15\.4:51820/);
    assert.match(d.explanation, /ctb-edge-1 at 203\.0\.113\.10:51822/);
    assert.match(d.explanation, /as its \/etc\/wireguard\/wg0\.conf says \(line \d+\)/);
    assert.match(
      d.fix,
      /^Run meshctl up: it writes ListenPort = 51820 into wk-2's \/etc\/wireguard\/wg0\.conf and restarts wg-quick@wg0 on wk-2/,
    );
    assert.match(
      d.fix,
      /set nodes\.wk-2\.listenPort: 51830 in .*homelab\.yaml \(the inventory validates with it\), point the router's forward 203\.0\.113\.10:51822 at 192\.168\.15\.4:51830/,
    );
    assert.ok(d.evidence.includes('wg show wg0 listen-port on wk-2: 51830'));
    assert.doesNotMatch(`${d.summary} ${d.fix}`, /Set Endpoint|forward UDP 203\.0\.113\.10:51822 to 192\.168\.15\.4:51820/);
  }
});

test('F-port: a live endpoint that is not where the other node listens is still a wrong LAN endpoint', () => {
  const s = healthyScenario();
  s.nodes['ms-1']!.peers.find((x) => x.endpoint === '192.168.15.4:51820')!.endpoint = '192.168.15.4:51830';
  assert.deepEqual(causesOf(pairEvidence(factsFrom(s) as Collected, 'ms-1', 'wk-2')), ['wrong-lan-endpoint@ms-1']);
});

// ---------------------------------------------------------------------------------------------------------------
// F-v6fw: the dropping rule is ip6tables' (captured on lab x9's ctb-edge-1 after `ip6tables -I INPUT -p udp --dport
// 51820 -j DROP`): the fix must be an ip6tables command, not iptables

const fixture = (f: string) => readFileSync(new URL(`../fixtures/firewall/${f}`, import.meta.url), 'utf8');

function ip6Drop() {
  const collected = SCENARIOS['firewall-udp'] ? (factsFrom(SCENARIOS['firewall-udp']()) as Collected) : undefined;
  assert.ok(collected);
  const edge = collected.checklists.get('ctb-edge-1')!;
  edge.firewall = fixture('ip6tables-udp-drop-ctb-edge-1.firewall.txt')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  edge.firewallRuleset = parseFirewallFacts(fixture('ip6tables-udp-drop-ctb-edge-1.txt'));
  return collected;
}

test('F-v6fw: an ip6tables drop gets an ip6tables fix', () => {
  const e = pairEvidence(ip6Drop(), 'ctb-edge-1', 'wk-1');
  const d = classifyPair(e).find((x) => x.cause === 'firewall-udp')!;
  assert.equal(d.node, 'ctb-edge-1');
  assert.match(d.fix, /ip6tables -I INPUT -p udp --dport 51820 -j ACCEPT/);
  assert.doesNotMatch(d.fix, /(^|[^6])iptables -I/);
});

test('F-v6fw: iptables rules keep the iptables fix; nft tables of other families get nft insert rule', () => {
  const cl = ip6Drop().checklists.get('ctb-edge-1')!;
  assert.deepEqual(
    udpAcceptCommands({ ...cl, firewallRuleset: undefined }, ['[17:2516] -A INPUT -p udp -m udp --dport 51820 -j DROP'], 51820),
    ['iptables -I INPUT -p udp --dport 51820 -j ACCEPT'],
  );
  const inet = {
    nftables: [
      {
        rule: {
          family: 'inet',
          table: 'filter',
          chain: 'input',
          expr: [{ match: { op: '==', left: { payload: { protocol: 'udp', field: 'dport' } }, right: 51820 } }, { drop: null }],
        },
      },
    ],
  };
  assert.deepEqual(
    udpAcceptCommands({ ...cl, firewallRuleset: { nftJson: JSON.stringify(inet), truncated: [] } }, ['udp dport 51820 drop'], 51820),
    ['nft insert rule inet filter input udp dport 51820 accept'],
  );
});
