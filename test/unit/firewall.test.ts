/**
 * Issue 8, kind 4: the firewall is judged by the effect of its whole ruleset on a new UDP datagram to the listen
 * port. Fixtures: test/fixtures/firewall/*.txt, the `fwrules` fact captured on Debian 12 lab nodes in each state
 * (see test/fixtures/firewall/README.md). The old heuristic (udpDropRules) passed every one of the drop cases below
 * but the explicit raw-table rule.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { FACTS, readFact, splitSections, udpDropRules } from '../../src/facts/definitions.js';
import { judgeFirewall, parseFirewallFacts, type FirewallFacts } from '../../src/firewall/verdict.js';
import { words } from '../../src/firewall/iptables.js';
import { judgeNodeFirewall } from '../../src/firewall/judge.js';
import { apparentSource, dialersOf } from '../../src/firewall/sources.js';
import {
  COLD_START_BURST,
  burstCommand,
  judgeDirection,
  parseUdpCounters,
  planColdStart,
  roundScript,
} from '../../src/checks/cold-start.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { loadInventory } from '../../src/inventory/load.js';

const ctx = { interface: 'wg0', listenPort: 51820 };
const raw = (name: string) => readFileSync(`test/fixtures/firewall/${name}.txt`, 'utf8');
const fixture = (name: string): FirewallFacts => readFact(FACTS.firewallRuleset, splitSections(raw(name)), ctx)!;
const judge = (name: string, sources?: Array<string | undefined>) =>
  judgeFirewall(fixture(name), { port: 51820, ...(sources ? { sources } : {}) });

const inventory = loadInventory('inventories/homelab.yaml');
const node = (name: string) => inventory.nodes.find((n) => n.name === name)!;

describe('firewall verdict on real rulesets', () => {
  it('no rules at all: accepted', () => {
    const v = judge('default-accept');
    assert.equal(v.status, 'accept');
    assert.match(v.summary, /no firewall chain filters incoming packets/);
  });

  it('the issue: policy DROP with ACCEPT only for lo, ESTABLISHED, tcp/22, ICMP: dropped by the policy, fix named', () => {
    const v = judge('iptables-policy-drop');
    assert.equal(v.status, 'drop');
    assert.equal(v.blockers.length, 1);
    assert.equal(v.blockers[0]!.text, 'iptables-nft filter INPUT: policy drop');
    assert.equal(v.blockers[0]!.fix, 'iptables -I INPUT -p udp --dport 51820 -j ACCEPT');
    // what the old code judged: no rule names UDP 51820, so "no rule drops UDP 51820"
    const old = readFact(FACTS.firewall, splitSections(raw('iptables-policy-drop')), ctx);
    assert.deepEqual(udpDropRules(old, 51820), []);
  });

  it('policy DROP with a udp dport accept: accepted', () => {
    assert.equal(judge('iptables-policy-drop-udp-accepted').status, 'accept');
  });

  it('a REJECT catch-all in a user chain: dropped for a source outside the accepted 10.0.0.0/8, named through the jump', () => {
    const v = judge('iptables-reject-user-chain', ['203.0.113.10']);
    assert.equal(v.status, 'drop');
    assert.equal(
      v.blockers[0]!.text,
      'iptables-nft filter INPUT: INPUT -> MESHIN: -A MESHIN -j REJECT --reject-with icmp-port-unreachable',
    );
    assert.deepEqual(v.blockers[0]!.sources, ['203.0.113.10']);
    assert.equal(judge('iptables-reject-user-chain', ['10.1.2.3']).status, 'accept');
    // any source: it depends on the source, named
    const any = judge('iptables-reject-user-chain');
    assert.equal(any.status, 'conditional');
    assert.match(any.reasons[0]!, /not source 10\.0\.0\.0\/8/);
  });

  it('native nftables: an inet table with policy drop (ct state vmap, iif lo, tcp 22, icmp)', () => {
    const v = judge('nft-inet-policy-drop');
    assert.equal(v.status, 'drop');
    assert.equal(v.blockers[0]!.text, 'nftables inet filter input: policy drop');
    assert.equal(v.blockers[0]!.fix, 'nft insert rule inet filter input udp dport 51820 accept');
    assert.equal(judge('nft-inet-udp-accepted').status, 'accept');
  });

  it('nftables accepting only one source: that source passes, another is dropped, any source is conditional', () => {
    assert.equal(judge('nft-inet-one-source', ['203.0.113.10']).status, 'accept');
    const other = judge('nft-inet-one-source', ['203.0.113.10', '198.51.100.25']);
    assert.equal(other.status, 'drop');
    assert.deepEqual(other.blockers[0]!.sources, ['198.51.100.25']);
    assert.equal(judge('nft-inet-one-source').status, 'conditional');
  });

  it('iptables-legacy tables are judged too (nf_tables is the default backend): the legacy policy drops', () => {
    const v = judge('legacy-policy-drop');
    assert.equal(v.status, 'drop');
    assert.equal(v.blockers[0]!.text, 'iptables-legacy filter INPUT: policy drop');
    assert.equal(v.blockers[0]!.fix, 'iptables-legacy -I INPUT -p udp --dport 51820 -j ACCEPT');
  });

  it('a drop in the raw table PREROUTING is found and fixed in that table', () => {
    const v = judge('iptables-raw-drop');
    assert.equal(v.status, 'drop');
    assert.equal(v.blockers[0]!.fix, 'iptables -t raw -I PREROUTING -p udp --dport 51820 -j ACCEPT');
  });

  it('an accept only on one interface before a udp DROP: conditional, never a pass', () => {
    const v = judge('iptables-interface-accept');
    assert.equal(v.status, 'conditional');
    assert.match(v.reasons[0]!, /arriving on eth0/);
  });

  it('the same port number elsewhere does not count: another port is judged on its own', () => {
    assert.equal(judgeFirewall(fixture('iptables-policy-drop-udp-accepted'), { port: 51830 }).status, 'drop');
    assert.equal(judgeFirewall(fixture('nft-inet-udp-accepted'), { port: 51830 }).status, 'drop');
  });
});

describe('firewall verdict: unreadable or unknown is a warning, never a pass', () => {
  it('no fact at all', () => assert.equal(judgeFirewall(undefined, { port: 51820 }).status, 'unknown'));

  it('neither iptables nor nft on the node', () => assert.equal(judgeFirewall(parseFirewallFacts(''), { port: 51820 }).status, 'unknown'));

  it('nft output that is not JSON (cut short)', () => {
    const facts = fixture('nft-inet-policy-drop');
    const cut = { ...facts, nftJson: facts.nftJson!.slice(0, 200) };
    assert.equal(judgeFirewall(cut, { port: 51820 }).status, 'unknown');
  });

  it('a part cut at the size cap', () => {
    assert.equal(judgeFirewall({ ...fixture('default-accept'), truncated: ['nft'] }, { port: 51820 }).status, 'unknown');
  });

  it('iptables-nft rules seen only through nft (xt matches and targets it cannot show): unknown', () => {
    const facts = fixture('iptables-reject-user-chain');
    const { iptablesNft: _, ...onlyNft } = facts;
    const v = judgeFirewall(onlyNft, { port: 51820, sources: ['203.0.113.10'] });
    assert.equal(v.status, 'unknown');
    assert.match(v.reasons.join('\n'), /xt target REJECT not judged/);
  });

  it('a target it does not know (NFQUEUE) is unknown', () => {
    const facts = parseFirewallFacts(
      '@@ version\niptables v1.8.9 (nf_tables)\n@@ iptables-nft\n*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -p udp -j NFQUEUE --queue-num 1\nCOMMIT\n',
    );
    assert.equal(judgeFirewall(facts, { port: 51820 }).status, 'unknown');
  });

  it('iptables-save words keep quoted comments whole', () => {
    assert.deepEqual(words('-A X -m comment --comment "wg peers" -j ACCEPT'), [
      '-A',
      'X',
      '-m',
      'comment',
      '--comment',
      'wg peers',
      '-j',
      'ACCEPT',
    ]);
  });
});

describe('the no-firewall-drop judgement for a node of the homelab', () => {
  it('the edge is dialled from the home NAT (203.0.113.10); home nodes from each other and from the edge', () => {
    assert.deepEqual(
      dialersOf(inventory, node('ctb-edge-1')).map((d) => [d.node.name, d.source]),
      [
        ['ms-1', '203.0.113.10'],
        ['wk-1', '203.0.113.10'],
        ['wk-2', '203.0.113.10'],
      ],
    );
    assert.equal(apparentSource(inventory, node('ctb-edge-1'), node('wk-2')), '198.51.100.25');
    assert.equal(apparentSource(inventory, node('ms-1'), node('wk-2')), '192.168.15.2');
  });

  it('fails naming the policy and the accept rule to add', () => {
    const j = judgeNodeFirewall(inventory, node('ctb-edge-1'), fixture('iptables-policy-drop'));
    assert.equal(j.status, 'fail');
    assert.equal(
      j.message,
      'the firewall drops new UDP 51820 from 203.0.113.10: iptables-nft filter INPUT: policy drop; add: iptables -I INPUT -p udp --dport 51820 -j ACCEPT',
    );
  });

  it('passes on an open ruleset; warns on an unreadable one', () => {
    assert.equal(judgeNodeFirewall(inventory, node('ms-1'), fixture('default-accept')).status, 'pass');
    assert.equal(judgeNodeFirewall(inventory, node('ms-1'), undefined).status, 'warn');
  });
});

describe('cold start: every designed direction, one sender per receiver at a time', () => {
  it('the homelab: 12 directions in 3 slots, no receiver twice in a slot', () => {
    const plan = planColdStart(inventory, new Set(inventory.nodes.map((n) => n.name)));
    assert.equal(plan.slots.flat().length, 12);
    assert.equal(plan.slots.length, 3);
    for (const slot of plan.slots) assert.equal(new Set(slot.map((d) => d.to)).size, slot.length);
    const edge = plan.slots.flat().filter((d) => d.from === 'ctb-edge-1');
    assert.deepEqual(
      edge.map((d) => `${d.to} ${d.endpoint.host}:${d.endpoint.port}`),
      ['ms-1 203.0.113.10:51821', 'wk-1 203.0.113.10:51820', 'wk-2 203.0.113.10:51822'],
    );
  });

  it('only reachable nodes take part', () => {
    const plan = planColdStart(inventory, new Set(['ms-1', 'ctb-edge-1']));
    assert.deepEqual(
      plan.slots.flat().map((d) => `${d.from}->${d.to}`),
      ['ctb-edge-1->ms-1', 'ms-1->ctb-edge-1'],
    );
  });

  it('reads the UDP counters of a real /proc/net/snmp', () => {
    assert.deepEqual(parseUdpCounters(readFileSync('test/fixtures/firewall/proc-net-snmp-ms-1.txt', 'utf8')), {
      inDatagrams: 197,
      noPorts: 0,
    });
    assert.equal(parseUdpCounters(''), undefined);
  });

  it('scripts: the burst goes to the endpoint only, quoted; a read round prints the counters', () => {
    const cmd = burstCommand({ host: '198.51.100.25', port: 51820 });
    assert.match(cmd, /exec 3>\/dev\/udp\/198\.51\.100\.25\/51820/);
    assert.match(cmd, /nc -u -w 0 198\.51\.100\.25 51820/);
    assert.match(roundScript(true, []), /\/proc\/net\/snmp/);
    assert.doesNotMatch(roundScript(false, []), /\/proc\/net\/snmp/);
  });

  const direction = { from: 'ms-1', to: 'ctb-edge-1', endpoint: { host: '198.51.100.25', port: 51820 }, sent: COLD_START_BURST };
  it('judges a direction: arrived, dropped, nothing listening, partly, not measured', () => {
    assert.equal(judgeDirection({ ...direction, delta: { inDatagrams: 16, noPorts: 0 } }).status, 'pass');
    const dropped = judgeDirection({ ...direction, delta: { inDatagrams: 1, noPorts: 0 } });
    assert.equal(dropped.status, 'fail');
    assert.match(
      dropped.message,
      /ms-1 cannot start a session with ctb-edge-1 from cold: a new flow to 198\.51\.100\.25:51820 does not arrive/,
    );
    assert.match(judgeDirection({ ...direction, delta: { inDatagrams: 0, noPorts: 16 } }).message, /nothing listens/);
    assert.equal(judgeDirection({ ...direction, delta: { inDatagrams: 12, noPorts: 0 } }).status, 'warn');
    assert.equal(judgeDirection({ ...direction, sent: 0, error: 'ms-1 could not send' }).status, 'warn');
  });

  it('verify: a firewall check per node and a cold-start check per direction, the failure pointing to the firewall', () => {
    const facts = factsFrom(healthyScenario());
    for (const [name, cl] of facts.checklists)
      cl.firewallRuleset = fixture(name === 'ctb-edge-1' ? 'iptables-policy-drop' : 'default-accept');
    const dirs = planColdStart(inventory, new Set(inventory.nodes.map((n) => n.name))).slots.flat();
    facts.coldStart = {
      roundTrips: 7,
      ms: 1,
      directions: dirs.map((d) => ({ ...d, sent: 16, delta: { inDatagrams: d.to === 'ctb-edge-1' ? 0 : 16, noPorts: 0 } })),
    };
    const checks = evaluateVerify(facts);
    const bad = checks.filter((c) => c.status !== 'pass');
    assert.deepEqual(
      bad.map((c) => `${c.node}${c.peer ? `->${c.peer}` : ''} ${c.id}`),
      ['ctb-edge-1 firewall', 'ms-1->ctb-edge-1 cold-start', 'wk-1->ctb-edge-1 cold-start', 'wk-2->ctb-edge-1 cold-start'],
    );
    assert.ok(
      bad[1]!.evidence.some((e) => e.startsWith('firewall on ctb-edge-1: the firewall drops new UDP 51820') && e.includes('policy drop')),
    );
    assert.equal(checks.filter((c) => c.id === 'cold-start').length, 12);
  });
});
