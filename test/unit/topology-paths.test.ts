/**
 * Relays (issue 11): every pair's path on inventories/four-sites.yaml (a: NAT with forwards, b: NAT without,
 * c: carrier NAT, p-1/p-2 public), the inventory's relay settings, the desired state and the wg-quick file of a relay.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { checkInventoryText, loadInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { pathBetween, planPaths, relayedPairs, type PairPath } from '../../src/topology/paths.js';
import { renderMatrix } from '../../src/checks/matrix-render.js';
import { desiredMesh } from '../../src/topology/desired.js';
import { parseWgQuickConfig, renderWgQuickConfig } from '../../src/render/wgquick.js';
import { compareConfigToDesired } from '../../src/render/drift.js';
import { relayHooks } from '../../src/render/relay.js';

const FILE = 'inventories/four-sites.yaml';
const TEXT = readFileSync(FILE, 'utf8');
const fourSites = () => loadInventory(FILE);
/** four-sites.yaml with `relay:` lines added: mesh-level and/or under nodes. */
function withRelay(mesh: string | undefined, nodes: Record<string, string> = {}): string {
  let text = TEXT;
  if (mesh !== undefined) text = text.replace('  persistentKeepalive: 25\n', `  persistentKeepalive: 25\n  relay: ${mesh}\n`);
  for (const [node, setting] of Object.entries(nodes))
    text = text.replace(`  ${node}:\n    site:`, `  ${node}:\n    relay: ${setting}\n    site:`);
  return text;
}
const load = (text: string) => loadInventory(FILE, { text });
const path = (inventory: Inventory, a: string, b: string): PairPath => pathBetween(planPaths(inventory), a, b)!;
const kindOf = (p: PairPath) => (p.kind === 'relayed' ? `relayed via ${p.via}` : p.kind);
const fakeKey = (name: string) => createHash('sha256').update(`test key ${name}`).digest('base64');
const keysOf = (inventory: Inventory) => new Map(inventory.nodes.map((n) => [n.name, fakeKey(n.name)]));

describe('planPaths on four-sites.yaml (auto, the default)', () => {
  it('relays exactly the pairs with no direct path, b-1/b-2 with c-1, spread over p-1 and p-2', () => {
    const paths = planPaths(fourSites());
    const relayed = paths.pairs.filter((p) => p.path.kind !== 'direct').map((p) => `${p.a}-${p.b} ${kindOf(p.path)}`);
    assert.deepEqual(relayed, ['b-1-c-1 relayed via p-1', 'b-2-c-1 relayed via p-2']);
    assert.equal(paths.pairs.length, 28);
  });

  it('says why: neither side can be dialled (no hole punching, whatever the NAT type)', () => {
    const p = path(fourSites(), 'b-1', 'c-1');
    assert.equal(p.why, 'b-1 is behind NAT with no forward and c-1 is behind carrier NAT: relayed via p-1');
    assert.equal(p.kind === 'relayed' && p.directExists, false);
  });

  it('keeps a-* with b-* and c-1 direct through site a forwards, whose external ports differ from the listen port', () => {
    const inventory = fourSites();
    for (const other of ['b-1', 'b-2', 'c-1']) {
      const p = path(inventory, 'a-3', other);
      assert.equal(p.kind, 'direct');
      assert.equal(p.why, `${other} dials a-3 at 203.0.113.10:41003`);
    }
    assert.equal(path(inventory, 'b-1', 'b-2').kind, 'direct'); // one LAN
    assert.match(path(inventory, 'c-1', 'p-2').why, /^c-1 dials p-2 at 198\.51\.100\.12:51820$/);
  });

  it('phrases two nodes with the same reason once', () => {
    const text = TEXT.replace('    forwardedPort: 41001      # 203.0.113.10:41001 -> 192.168.10.11:51820\n', '');
    const p = path(load(text), 'a-1', 'b-1');
    assert.equal(p.why, 'a-1 and b-1 are both behind NAT with no forward: relayed via p-1');
  });

  it('picks by measured RTT when the hook gives it (lowest sum to both ends), else fewest pairs', () => {
    const rtt = (relay: string, node: string) => (relay === 'p-2' ? 1 : node === 'c-1' ? 50 : 5);
    const paths = planPaths(fourSites(), { rttMs: rtt });
    assert.equal(kindOf(pathBetween(paths, 'b-1', 'c-1')!), 'relayed via p-2');
    assert.equal(kindOf(pathBetween(paths, 'b-2', 'c-1')!), 'relayed via p-2');
  });
});

describe('relay settings in the inventory', () => {
  it('relay: NODE at mesh level sends every relayed pair through it; a node setting wins for its pairs', () => {
    const viaP1 = load(withRelay('p-1'));
    assert.equal(kindOf(path(viaP1, 'b-2', 'c-1')), 'relayed via p-1');
    assert.match(path(viaP1, 'b-2', 'c-1').why, /relayed via p-1 \(named in the inventory\)$/);
    const mixed = load(withRelay('p-1', { 'b-2': 'p-2' }));
    assert.equal(kindOf(path(mixed, 'b-1', 'c-1')), 'relayed via p-1');
    assert.equal(kindOf(path(mixed, 'b-2', 'c-1')), 'relayed via p-2');
  });

  it('relay: always relays every pair of the node except those with a public node', () => {
    const inventory = load(withRelay(undefined, { 'a-1': 'always' }));
    const p = path(inventory, 'a-1', 'b-1');
    assert.equal(p.kind, 'relayed');
    assert.equal(p.kind === 'relayed' && p.directExists, true);
    assert.match(p.why, /^relay: always on a-1: relayed via p-\d \(a direct path exists\)$/);
    assert.equal(path(inventory, 'a-1', 'p-1').kind, 'direct');
    assert.equal(path(inventory, 'a-2', 'b-1').kind, 'direct');
  });

  it('relay: never (mesh) refuses the inventory, naming every pair that needs a relay, at mesh.relay', () => {
    const result = checkInventoryText(withRelay('never'), FILE);
    assert.equal(result.ok, false);
    const messages = result.problems.map((p) => `${p.path}: ${p.message}`);
    assert.deepEqual(messages, [
      'mesh.relay: b-1 <-> c-1 has no direct path and relay: never forbids a relay: b-1 is behind NAT with no forward and c-1 is behind carrier NAT (use relay: auto, or give one side a way in)',
      'mesh.relay: b-2 <-> c-1 has no direct path and relay: never forbids a relay: b-2 is behind NAT with no forward and c-1 is behind carrier NAT (use relay: auto, or give one side a way in)',
    ]);
  });

  it('relay: never on one node refuses only its pairs, at that node; never wins over always', () => {
    const result = checkInventoryText(withRelay('always', { 'b-1': 'never' }), FILE);
    assert.equal(result.ok, false);
    assert.deepEqual(
      result.problems.map((p) => p.path),
      ['nodes.b-1.relay'],
    );
    assert.match(result.problems[0]!.message, /^b-1 <-> c-1 has no direct path/);
    const ok = load(withRelay(undefined, { 'a-1': 'never' }));
    assert.equal(path(ok, 'a-1', 'b-1').kind, 'direct');
  });

  it('a public node with relay: never relays nobody; with no relay left, a pair is none (a warning, not refused)', () => {
    const oneRelay = load(withRelay(undefined, { 'p-2': 'never' }));
    assert.equal(kindOf(path(oneRelay, 'b-2', 'c-1')), 'relayed via p-1');
    const noRelay = load(withRelay(undefined, { 'p-1': 'never', 'p-2': 'never' }));
    const p = path(noRelay, 'b-1', 'c-1');
    assert.equal(p.kind, 'none');
    assert.match(p.why, /, and no public node with a direct path to both can relay it$/);
  });

  it('a named relay must be a node of a public site, not the node itself', () => {
    const problems = (text: string) => {
      const result = checkInventoryText(text, FILE);
      return result.ok ? [] : result.problems.map((p) => `${p.path}: ${p.message}`);
    };
    assert.deepEqual(problems(withRelay('p-3')), [
      'mesh.relay: relay p-3 is not a node; did you mean p-1? (use auto, always, never or a node name)',
    ]);
    assert.deepEqual(problems(withRelay(undefined, { 'b-1': 'a-1' })), [
      'nodes.b-1.relay: relay a-1 is in site a, which is not public: a relay must be dialable by both ends (a node in a public site)',
    ]);
    assert.deepEqual(problems(withRelay(undefined, { 'p-1': 'p-1' })), [
      'nodes.p-1.relay: p-1 cannot relay its own pairs: name another public node, or auto',
    ]);
    assert.match(problems(withRelay('Relay!'))[0]!, /^mesh\.relay: .*is not a relay setting/);
  });
});

describe('desired state and wg-quick file of relayed pairs', () => {
  const inventory = fourSites();
  const mesh = desiredMesh(inventory, keysOf(inventory));
  const config = (name: string) => mesh.find((c) => c.node === name)!;
  const peer = (node: string, name: string) => config(node).peers.find((p) => p.name === name);

  it('a relayed end has no [Peer] for the other; the other /32 rides on its relay peer', () => {
    assert.equal(peer('b-1', 'c-1'), undefined);
    assert.equal(peer('c-1', 'b-1'), undefined);
    assert.deepEqual(peer('b-1', 'p-1')!.allowedIps, ['172.27.40.41/32', '172.27.40.31/32']);
    assert.deepEqual(peer('c-1', 'p-1')!.allowedIps, ['172.27.40.41/32', '172.27.40.21/32']);
    assert.deepEqual(peer('c-1', 'p-2')!.allowedIps, ['172.27.40.42/32', '172.27.40.22/32']);
    assert.deepEqual(peer('b-1', 'p-2')!.allowedIps, ['172.27.40.42/32']);
  });

  it('the relay keeps its ordinary peers and is marked as relaying its pairs; nobody else is', () => {
    assert.deepEqual(peer('p-1', 'b-1')!.allowedIps, ['172.27.40.21/32']);
    assert.deepEqual(peer('p-1', 'c-1')!.allowedIps, ['172.27.40.31/32']);
    assert.deepEqual(config('p-1').relay, { pairs: [{ a: 'b-1', b: 'c-1' }] });
    assert.deepEqual(config('p-2').relay, { pairs: [{ a: 'b-2', b: 'c-1' }] });
    for (const name of ['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'c-1']) assert.equal(config(name).relay, undefined, name);
  });

  it("renders the relay's forwarding for the WireGuard interface only, and nothing on other nodes", () => {
    const p1 = renderWgQuickConfig(config('p-1'));
    const postUps = p1.split('\n').filter((l) => l.startsWith('PostUp = '));
    assert.equal(postUps.length, 3);
    assert.equal(postUps[2], 'PostUp = sysctl -q -w net.ipv4.conf.wg0.forwarding=1');
    assert.match(postUps[1]!, /iptables -w -A meshctl-fwd-wg0 -i wg0 -o wg0 -j ACCEPT && iptables -w -A meshctl-fwd-wg0 -i wg0 -j DROP/);
    assert.match(postUps[1]!, /nft add rule inet meshctl_fwd_wg0 forward iifname wg0 counter drop/);
    assert.doesNotMatch(p1, /ip_forward|conf\.all\.|conf\.default\./);
    assert.doesNotMatch(
      p1
        .split('\n')
        .filter((l) => !l.startsWith('#'))
        .join('\n'),
      /#/,
    ); // wg-quick cuts at '#'
    assert.match(p1, /^PreDown = sysctl -q -w net\.ipv4\.conf\.wg0\.forwarding=0/m);
    assert.match(p1, /^# Relay for b-1<->c-1: /m);
    for (const name of ['a-1', 'b-1', 'c-1']) {
      const text = renderWgQuickConfig(config(name));
      assert.doesNotMatch(text, /forwarding|iptables|nft|PreDown/, name);
    }
  });

  it('a rendered relay file has no drift; one without the relay lines (or a non-relay with them) does', () => {
    const p1 = config('p-1');
    assert.deepEqual(compareConfigToDesired(parseWgQuickConfig(renderWgQuickConfig(p1)), p1), []);
    const bare = renderWgQuickConfig({ ...p1, relay: undefined } as typeof p1);
    const fields = compareConfigToDesired(parseWgQuickConfig(bare), p1).map((i) => `${i.field}: ${i.message}`);
    assert.deepEqual(fields, [
      'postUp: PostUp does not enable relaying (forwarding on wg0 only) the way meshctl does',
      'otherSetting: PreDown does not undo the relay the way meshctl does',
    ]);
    const a1 = config('a-1');
    const extra = renderWgQuickConfig({ ...a1, relay: { pairs: [{ a: 'x', b: 'y' }] } });
    assert.ok(compareConfigToDesired(parseWgQuickConfig(extra), a1).some((i) => i.field === 'postUp'));
  });

  it('relay hooks are stable and name the interface', () => {
    const hooks = relayHooks('wg-mesh');
    assert.equal(hooks.postUp[1], 'sysctl -q -w net.ipv4.conf.wg-mesh.forwarding=1');
    assert.match(hooks.postUp[0]!, /meshctl-fwd-wg-mesh .*meshctl_fwd_wg_mesh/);
    assert.ok('meshctl-fwd-'.length + 15 <= 28, 'the iptables chain name fits (28 characters)');
  });
});

describe("up's printed ping matrix marks relayed cells (relayedPairs)", () => {
  it('names every relayed pair of four-sites.yaml with its relay, and renderMatrix stars them with a legend', () => {
    const inventory = fourSites();
    const relayed = relayedPairs(inventory);
    const expected = planPaths(inventory).pairs.filter((p) => p.path.kind === 'relayed');
    assert.ok(expected.length > 0, 'four-sites.yaml relays some pairs');
    assert.deepEqual(
      [...relayed],
      expected.map((p) => [`${p.a}\u0000${p.b}`, p.path.kind === 'relayed' ? p.path.via : '']),
    );
    const [first] = expected;
    const names = inventory.nodes.map((n) => n.name);
    const ok = { ok: true, loss: 0, transmitted: 3, received: 3, rttAvgMs: 1 };
    const cells = Object.fromEntries(names.map((a) => [a, Object.fromEntries(names.filter((b) => b !== a).map((b) => [b, ok]))]));
    const text = renderMatrix({ nodes: names, cells } as never, { color: false, relayed });
    assert.match(text, new RegExp(`\\* relayed \\(via ${first!.path.kind === 'relayed' ? first!.path.via : ''}`));
  });
});
