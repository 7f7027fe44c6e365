/**
 * Underlay IPv6 (issue 11): a node's `address6` in the inventory (validation at file:line:col), the dial rule (both
 * ends with IPv6 dial [address6]:listenPort, ahead of IPv4 NAT forwards; an `endpoint:` override still wins), what
 * the firewall judge and the cold-start counters make of an IPv6 direction, and the lab's IPv6 plan, on
 * inventories/ipv6.yaml (two NAT sites without forwards whose nodes have IPv6, a v4+v6 and a v4-only public node).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { checkInventoryText, loadInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { endpointFor, firstContactPairs, formatEndpoint, keepaliveFor, pairCanConnect } from '../../src/topology/endpoints.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { FACTS, readFact, splitSections } from '../../src/facts/definitions.js';
import type { FirewallFacts } from '../../src/firewall/verdict.js';
import { judgeNodeFirewall } from '../../src/firewall/judge.js';
import { dialersOf } from '../../src/firewall/sources.js';
import {
  COLD_START_BURST,
  COUNTERS_COMMAND,
  burstCommand,
  judgeDirection,
  parseUdpCounters,
  planColdStart,
} from '../../src/checks/cold-start.js';
import { planLab } from '../../src/lab/plan.js';
import { ipBatchFor, nsSysctls } from '../../src/lab/sys.js';
import { MeshctlError } from '../../src/errors.js';
import { inventoryJsonSchema } from '../../src/inventory/jsonSchema.js';

const FILE = 'inventories/ipv6.yaml';
const text = () => readFileSync(FILE, 'utf8');
const byName = (inventory: Inventory, name: string) => inventory.nodes.find((n) => n.name === name)!;
const dial = (inventory: Inventory, from: string, to: string) => {
  const endpoint = endpointFor(inventory, byName(inventory, from), byName(inventory, to));
  return endpoint ? formatEndpoint(endpoint) : undefined;
};
/** ipv6.yaml with lines replaced (old => new), checked as text. */
const variant = (...edits: [string, string][]) => {
  let t = text();
  for (const [from, to] of edits) {
    assert.ok(t.includes(from), from);
    t = t.replace(from, to);
  }
  return checkInventoryText(t, 'v.yaml');
};
const problems = (result: ReturnType<typeof checkInventoryText>) =>
  result.ok ? [] : result.problems.map((p) => `${p.line}:${p.col}: ${p.path}: ${p.message}`);
const E1_ADDRESS6 = '    address6: 2001:db8:61::11     # the router routes 2001:db8:61::/64 to the LAN, no NAT\n';
const withE1Address6 = (value: string) => variant([E1_ADDRESS6, `    address6: ${value}\n`]);

describe('address6 in the inventory', () => {
  it('loads in canonical form (what `wg show` prints), in a nat and in a public site', () => {
    const inventory = loadInventory(FILE);
    assert.equal(byName(inventory, 'e-1').address6, '2001:db8:61::11');
    assert.equal(byName(inventory, 'p-1').address6, '2001:db8:100::61');
    assert.equal(byName(inventory, 'p-2').address6, undefined);
    const upper = withE1Address6('2001:DB8:61:0:0:0:0:0011');
    assert.ok(upper.ok, JSON.stringify(upper));
    assert.equal(byName(upper.inventory, 'e-1').address6, '2001:db8:61::11');
  });

  it('refuses what is not a global unicast address, at file:line:col with the field', () => {
    const cases: [string, RegExp][] = [
      ['fe80::11', /link-local address \(fe80::\/10\)/],
      ['fd00:61::11', /unique local address \(fc00::\/7, RFC 4193\): it is not routed between sites/],
      ['ff02::1', /multicast/],
      ['::1', /not a global unicast address/],
      ['::ffff:192.0.2.1', /IPv4-mapped/],
      ['2001:db8:61::11/64', /without a prefix length: write 2001:db8:61::11/],
      ['"[2001:db8:61::11]"', /without brackets/],
      ['2001:db8:61::11%eth0', /has a zone/],
      ['192.168.61.11', /not an IPv6 address/],
      ['2001:db8:61:::11', /not an IPv6 address/],
    ];
    for (const [value, message] of cases) {
      const found = problems(withE1Address6(value));
      assert.equal(found.length, 1, `${value}: ${found.join(' | ')}`);
      assert.match(found[0]!, /^35:15: nodes\.e-1\.address6: /, value);
      assert.match(found[0]!, message, value);
    }
  });

  it('is unique (compared in canonical form), and is no other node endpoint', () => {
    const dup = variant(['    address6: 2001:db8:62::11\n', '    address6: 2001:DB8:61:0::11\n']);
    assert.deepEqual(problems(dup), ['40:15: nodes.w-1.address6: 2001:DB8:61:0::11 is already the IPv6 address of e-1']);
    const taken = variant(['    overlayIp: 172.27.60.32\n', '    overlayIp: 172.27.60.32\n    endpoint: "[2001:db8:100::61]:51820"\n']);
    assert.deepEqual(problems(taken), [
      '51:15: nodes.p-2.endpoint: [2001:db8:100::61]:51820 is already where node p-1 is dialled: one host:port reaches one node',
    ]);
  });

  it('two NATed nodes without forwards are reachable only through IPv6', () => {
    const withoutPublic = (t: string) =>
      t
        .replace(/ {2}p-1:\n( {4}.*\n)+/, '')
        .replace(/ {2}p-2:\n( {4}.*\n)+/, '')
        .replace('  pub:\n    public: true\n', '');
    const v6 = checkInventoryText(withoutPublic(text()), 'v.yaml');
    assert.deepEqual(problems(v6), []);
    const v4 = checkInventoryText(withoutPublic(text()).replace(/ {4}address6: .*\n/g, ''), 'v.yaml');
    assert.equal(problems(v4).filter((p) => p.includes('no peer could ever reach')).length, 2);
  });

  it('is in the published JSON schema', () => {
    const node = (inventoryJsonSchema() as { properties: { nodes: { additionalProperties: { properties: Record<string, unknown> } } } })
      .properties.nodes.additionalProperties.properties;
    assert.deepEqual((node.address6 as { format: string }).format, 'ipv6');
  });
});

describe('dial rules with IPv6', () => {
  it('both ends with IPv6 dial [address6]:listenPort both ways; a node without IPv6 keeps IPv4', () => {
    const inventory = loadInventory(FILE);
    const table = inventory.nodes.flatMap((a) =>
      inventory.nodes.filter((b) => b !== a).map((b) => `${a.name}->${b.name} ${dial(inventory, a.name, b.name) ?? '-'}`),
    );
    assert.deepEqual(table, [
      'e-1->w-1 [2001:db8:62::11]:51820',
      'e-1->p-1 [2001:db8:100::61]:51820',
      'e-1->p-2 198.51.100.62:51820',
      'w-1->e-1 [2001:db8:61::11]:51820',
      'w-1->p-1 [2001:db8:100::61]:51820',
      'w-1->p-2 198.51.100.62:51820',
      'p-1->e-1 [2001:db8:61::11]:51820',
      'p-1->w-1 [2001:db8:62::11]:51820',
      'p-1->p-2 198.51.100.62:51820',
      'p-2->e-1 -',
      'p-2->w-1 -',
      'p-2->p-1 198.51.100.61:51820',
    ]);
    assert.ok(pairCanConnect(inventory, byName(inventory, 'e-1'), byName(inventory, 'w-1')));
    assert.equal(firstContactPairs(inventory).length, 6);
  });

  it('the pair of NATed nodes without forwards could not connect over IPv4 alone', () => {
    const v4 = checkInventoryText(text().replace(/ {4}address6: .*\n/g, ''), 'v.yaml');
    assert.ok(v4.ok);
    assert.ok(!pairCanConnect(v4.inventory, byName(v4.inventory, 'e-1'), byName(v4.inventory, 'w-1')));
  });

  it('goes ahead of an IPv4 forward; the listen port, not the forwarded one', () => {
    const result = variant([
      '    overlayIp: 172.27.60.11\n',
      '    overlayIp: 172.27.60.11\n    forwardedPort: 41011\n    listenPort: 51830\n',
    ]);
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(dial(result.inventory, 'w-1', 'e-1'), '[2001:db8:61::11]:51830');
    assert.equal(dial(result.inventory, 'p-2', 'e-1'), '203.0.113.61:41011'); // no IPv6 at p-2
  });

  it("a node's own endpoint still wins; sitemates keep their LAN", () => {
    const result = variant(
      ['    overlayIp: 172.27.60.21\n', '    overlayIp: 172.27.60.21\n    endpoint: w1.dyn.example.net:40021\n'],
      [
        '  p-2:\n    site: pub\n',
        '  e-2:\n    site: east\n    address: 192.168.61.12\n    address6: 2001:db8:61::12\n    overlayIp: 172.27.60.12\n  p-2:\n    site: pub\n',
      ],
    );
    assert.ok(result.ok, JSON.stringify(result));
    assert.equal(dial(result.inventory, 'e-1', 'w-1'), 'w1.dyn.example.net:40021');
    assert.equal(dial(result.inventory, 'e-1', 'e-2'), '192.168.61.12:51820');
    assert.equal(dial(result.inventory, 'p-1', 'e-2'), '[2001:db8:61::12]:51820');
  });

  it('keepalive as before: from behind the home router (its IPv6 firewall keeps a pinhole like a NAT mapping), none from public', () => {
    const inventory = loadInventory(FILE);
    const ka = (a: string, b: string) => keepaliveFor(inventory, byName(inventory, a), byName(inventory, b));
    assert.equal(ka('e-1', 'w-1'), 25);
    assert.equal(ka('w-1', 'e-1'), 25);
    assert.equal(ka('e-1', 'p-1'), 25);
    assert.equal(ka('p-1', 'e-1'), undefined);
    const keys = new Map(inventory.nodes.map((n) => [n.name, createHash('sha256').update(n.name).digest('base64')]));
    const w1 = desiredNodeConfig(inventory, 'e-1', keys).peers.find((p) => p.name === 'w-1')!;
    assert.equal(w1.endpoint, '[2001:db8:62::11]:51820');
    assert.equal(w1.persistentKeepalive, 25);
  });
});

const fwFixture = (name: string): FirewallFacts =>
  readFact(FACTS.firewallRuleset, splitSections(readFileSync(`test/fixtures/firewall/${name}.txt`, 'utf8')), {
    interface: 'wg0',
    listenPort: 51820,
  })!;

describe('checks on an IPv6 direction', () => {
  it('the firewall judge never passes a node dialled over IPv6 on its IPv4 ruleset alone', () => {
    const inventory = loadInventory(FILE);
    const p1 = byName(inventory, 'p-1');
    assert.deepEqual(
      dialersOf(inventory, p1).map((d) => `${d.node.name} ${d.source} ${d.ipv6 ? 'v6' : 'v4'}`),
      ['e-1 2001:db8:61::11 v6', 'w-1 2001:db8:62::11 v6', 'p-2 198.51.100.62 v4'],
    );
    const open = judgeNodeFirewall(inventory, p1, fwFixture('default-accept'));
    assert.equal(open.status, 'warn');
    assert.match(
      open.message,
      /^IPv4: .*; IPv6: e-1, w-1 dial p-1 over IPv6 at \[2001:db8:100::61\]:51820, and its IPv6 firewall is not judged/,
    );
    // p-2 (IPv4 only) is judged as before
    assert.equal(judgeNodeFirewall(inventory, byName(inventory, 'p-2'), fwFixture('default-accept')).status, 'pass');
  });

  it('passes the IPv6 path only where nothing can filter IPv6 (no ip6tables table, no nft ip6/inet/netdev chain)', () => {
    const inventory = loadInventory(FILE);
    const e1 = byName(inventory, 'e-1');
    const open = judgeNodeFirewall(inventory, e1, fwFixture('ipv6-none'));
    assert.equal(open.status, 'pass', open.message);
    assert.ok(open.evidence!.some((e) => /^IPv6 \(w-1, p-1 dial over it\): no ip6tables \(legacy\) table and no nftables/.test(e)));
    const drop = judgeNodeFirewall(inventory, e1, fwFixture('ipv6-ip6tables-policy-drop'));
    assert.equal(drop.status, 'warn');
    assert.match(drop.message, /IPv6: w-1, p-1 dial e-1 over IPv6 at \[2001:db8:61::11\]:51820, and its IPv6 firewall is not judged/);
  });

  it('an IPv4 drop on a node dialled only over IPv6 warns (no IPv4 session needs it), an IPv4 drop with IPv4 dialers fails', () => {
    const inventory = loadInventory(FILE);
    const e1 = judgeNodeFirewall(inventory, byName(inventory, 'e-1'), fwFixture('iptables-policy-drop'));
    assert.equal(e1.status, 'warn');
    assert.match(e1.message, /no peer dials e-1 over IPv4/);
    assert.equal(judgeNodeFirewall(inventory, byName(inventory, 'p-1'), fwFixture('iptables-policy-drop')).status, 'fail');
  });

  it('cold start sends to the IPv6 endpoint and counts IPv6 arrivals too (/proc/net/snmp6)', () => {
    const inventory = loadInventory(FILE);
    const directions = planColdStart(inventory, new Set(inventory.nodes.map((n) => n.name))).slots.flat();
    const e1w1 = directions.find((d) => d.from === 'e-1' && d.to === 'w-1')!;
    assert.equal(formatEndpoint(e1w1.endpoint), '[2001:db8:62::11]:51820');
    assert.match(burstCommand(e1w1.endpoint), /\/dev\/udp\/2001:db8:62::11\/51820/);
    assert.match(COUNTERS_COMMAND, /\/proc\/net\/snmp6/);
    // captured on lab node w-1 (COUNTERS_COMMAND) before and after e-1's burst over IPv6 (test/fixtures/firewall/README.md)
    const before = parseUdpCounters(readFileSync('test/fixtures/firewall/udp-counters-w-1-before.txt', 'utf8'))!;
    const after = parseUdpCounters(readFileSync('test/fixtures/firewall/udp-counters-w-1-after.txt', 'utf8'))!;
    const delta = { inDatagrams: after.inDatagrams - before.inDatagrams, noPorts: after.noPorts - before.noPorts };
    const judged = judgeDirection({ ...e1w1, sent: COLD_START_BURST, delta });
    assert.equal(judged.status, 'pass', judged.message);
    // IPv4's counters alone (all the old probe read) did not see the burst: it would have failed a working path
    const v4 = (name: string) =>
      parseUdpCounters(
        readFileSync(`test/fixtures/firewall/udp-counters-w-1-${name}.txt`, 'utf8')
          .split('\n')
          .filter((l) => !l.startsWith('Udp6'))
          .join('\n'),
      )!;
    assert.ok(v4('after').inDatagrams - v4('before').inDatagrams < COLD_START_BURST);
  });
});

describe('the lab plan with IPv6', () => {
  it('routes each site /64 to its router and onto its LAN, a public node its /128, with fe80::1 as gateway', () => {
    const plan = planLab(loadInventory(FILE), 'v6');
    const ns = (role: string) => plan.namespaces.find((n) => n.name === `ml-v6.${role}`)!;
    const batch = (role: string) => ipBatchFor(ns(role), 'configure');
    assert.ok(batch('internet').includes('route add 2001:db8:61::/64 via fe80::2 dev s0-east'));
    assert.ok(batch('internet').includes('route add 2001:db8:100::61/128 dev n2-p-1'));
    assert.ok(batch('internet').includes('address add fe80::1/64 dev n2-p-1 nodad'));
    assert.ok(!batch('internet').some((l) => l.includes('n3-p-2') && l.includes(':')), 'p-2 has no IPv6');
    assert.ok(batch('router.east').includes('route add 2001:db8:61::/64 dev br0'));
    assert.ok(batch('router.east').includes('route add default via fe80::1 dev wan'));
    assert.ok(batch('node.e-1').includes('address add 2001:db8:61::11/64 dev eth0 nodad'));
    assert.ok(batch('node.e-1').includes('route add default via fe80::1 dev eth0'));
    assert.ok(batch('node.p-1').includes('address add 2001:db8:100::61/128 dev eth0 nodad'));
    assert.ok(nsSysctls(ns('router.east')).includes('net.ipv6.conf.all.forwarding=1'));
    assert.ok(!nsSysctls(ns('node.e-1')).some((s) => s.startsWith('net.ipv6')));
    assert.equal(plan.nodes.find((n) => n.name === 'e-1')!.address6, '2001:db8:61::11');
    // the operator gets no IPv6; nothing IPv6 is NATed (the routers' NAT is IPv4's)
    assert.ok(!ipBatchFor(ns('operator'), 'configure').some((l) => l.includes('fe80') || l.includes('2001:')));
  });

  it('a lab without address6 plans no IPv6 at all (other labs are unchanged)', () => {
    const plan = planLab(loadInventory('inventories/homelab.yaml'), 'h');
    for (const n of plan.namespaces) {
      assert.ok(!ipBatchFor(n, 'configure').some((l) => l.includes('fe80') || l.includes('2001:')), n.name);
      assert.ok(!nsSysctls(n).some((s) => s.startsWith('net.ipv6')), n.name);
    }
  });

  it('refuses IPv6 outside 2001:db8::/32 and two /64s in one site', () => {
    const planOf = (result: ReturnType<typeof checkInventoryText>) => {
      assert.ok(result.ok, JSON.stringify(result));
      try {
        planLab(result.inventory, 'v6');
        return '';
      } catch (error) {
        assert.ok(error instanceof MeshctlError);
        return error.message;
      }
    };
    assert.match(planOf(withE1Address6('2a01:4f8::11')), /address6 2a01:4f8::11 is outside 2001:db8::\/32, the only IPv6 the lab builds/);
    const twoPrefixes = variant([
      '  p-2:\n    site: pub\n',
      '  e-2:\n    site: east\n    address: 192.168.61.12\n    address6: 2001:db8:65::12\n    overlayIp: 172.27.60.12\n  p-2:\n    site: pub\n',
    ]);
    assert.match(planOf(twoPrefixes), /address6 2001:db8:65::12 is not in site east's \/64 2001:db8:61::\/64/);
  });
});
