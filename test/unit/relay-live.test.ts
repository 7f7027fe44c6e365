/**
 * A relay's role and live state, applied on the running interface (a new user's findings Q8):
 * - F-relay-restart: a membership change that switches a node's relay role on or off changes only its wg0.conf's
 *   relay PostUp/PreDown lines, and `up` restarted wg-quick@wg0 on it ("[Interface] changed"), cutting every pair of
 *   that public node ~8 s. Now the enable step runs the relay's set-up (its PostUp lines) or tear-down on the running
 *   interface, and the plan says `relay-on`/`relay-off`;
 * - F-relay: a relay whose wg0 forwarding was switched off (`sysctl -w net.ipv4.ip_forward=0`) or whose rule was
 *   deleted: `plan` said nothing to change. Now the facts probe reads wg0's forwarding (a builtin read of /proc) and
 *   the enable step compares it, and meshctl's rule in the firewall fact, with the design.
 * The facts are the converged homelab's captured on ms-1 (test/fixtures/facts/live-converged-ms-1.txt), its design
 * given a relay pair: the planner is judged on them, and its scripts run for real in a network namespace (a tun
 * device stands in for wg0, iptables and sysctl act on the namespace's own).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { FACTS } from '../../src/facts/definitions.js';
import { capturedFacts, capturedKeys } from '../support/converged-facts.js';
import { planService, relayDrift } from '../../src/steps/service.js';
import { describeAction } from '../../src/engine/plan.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig, type DesiredNodeConfig } from '../../src/topology/desired.js';
import { classifyConfigChange, liveInterfaceChange } from '../../src/render/changes.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { relayHooks, relayNftTableName } from '../../src/render/relay.js';
import { relayRuleInPlace } from '../../src/firewall/relay-live.js';
import { netnsSkipReason, withNetns } from '../support/netns.js';
import type { FirewallFacts } from '../../src/firewall/verdict.js';

const inventory = loadInventory('inventories/homelab.yaml');
const converged: NodeFacts = capturedFacts();
const keys = capturedKeys(converged);
/** ms-1 as designed (no relay), and as a relay of wk-1 <-> wk-2 (the same peers) */
const plain: DesiredNodeConfig = desiredNodeConfig(inventory, 'ms-1', keys);
const relaying: DesiredNodeConfig = { ...plain, relay: { pairs: [{ a: 'wk-1', b: 'wk-2' }] } };
const routes = plain.peers.flatMap((p) => p.allowedIps);
const WG0 = { interface: 'wg0', listenPort: 51820 };

/** iptables-nft-save of a namespace whose relay rule is in place (as `iptables -w -S` prints the rules) */
const RULE = [
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':FORWARD ACCEPT [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':meshctl-fwd-wg0 - [0:0]',
  '-A FORWARD -i wg0 -j meshctl-fwd-wg0',
  '-A meshctl-fwd-wg0 -i wg0 -o wg0 -j ACCEPT',
  '-A meshctl-fwd-wg0 -i wg0 -j DROP',
  'COMMIT',
].join('\n');
const ruleset = (save: string): FirewallFacts => ({ iptablesVersion: 'iptables v1.8.9 (nf_tables)', iptablesNft: save, truncated: [] });

/** ms-1's facts with `file` as its wg0.conf, its live wg0 forwarding and ruleset as given */
const node = (file: DesiredNodeConfig, forwarding: number, save: string): NodeFacts => ({
  ...converged,
  config: { ...converged.config, text: renderWgQuickConfig(file) },
  live: { ...converged.live!, forwarding },
  baseline: { ...converged.baseline, firewallRuleset: ruleset(save) },
});

function enable(facts: NodeFacts, desired: DesiredNodeConfig) {
  const change = classifyConfigChange(facts.config.text, desired).kind;
  return { change, ...planService(facts, 'wg0', change, routes, desired.publicKey, desired) };
}

describe("a node's relay role switched by a membership change is applied live, not restarted (Q8 F-relay-restart)", () => {
  it('role on: the relay lines are the only [Interface] change; the relay is set up live, the plan says so', () => {
    const facts = node(plain, 0, '');
    assert.deepEqual(liveInterfaceChange(facts.config.text, relaying), { relay: 'on', peers: false });
    const { change, action } = enable(facts, relaying);
    assert.equal(change, 'interface', 'the file is still rewritten as an [Interface] change');
    assert.deepEqual(action!.changes, [
      {
        kind: 'relay-on',
        iface: 'wg0',
        why: 'relay PostUp/PreDown lines added to wg0.conf (relays wk-1<->wk-2), the only [Interface] change',
      },
    ]);
    assert.doesNotMatch(action!.script, /systemctl restart|wg-quick (down|up)/);
    assert.match(action!.script, /iptables -w -N meshctl-fwd-wg0 .*\nsysctl -q -w net\.ipv4\.conf\.wg0\.forwarding=1\n/);
    assert.match(describeAction(action!), /^set up wg0's relay live: meshctl's rule, then forwarding on wg0 \(.*; no restart/);
  });

  it('role off: the relay torn down live (forwarding off, the rule found removed), no restart and no second removal', () => {
    const facts = node(relaying, 1, RULE);
    assert.deepEqual(liveInterfaceChange(facts.config.text, plain), { relay: 'off', peers: false });
    const { action } = enable(facts, plain);
    assert.deepEqual(
      action!.changes.map((c) => c.kind),
      ['relay-off'],
      'the leftover-rule removal is folded into relay-off',
    );
    const off = action!.changes[0] as Extract<NonNullable<typeof action>['changes'][number], { kind: 'relay-off' }>;
    assert.match(off.why, /relay PostUp\/PreDown lines gone from wg0\.conf \(the node relays no pair\), the only \[Interface\] change/);
    assert.ok(off.found.includes('-A FORWARD -i wg0 -j meshctl-fwd-wg0'), off.found.join('; '));
    assert.doesNotMatch(action!.script, /systemctl restart|wg-quick (down|up)/);
    assert.equal(action!.script.match(/iptables -w -D FORWARD -i wg0 -j meshctl-fwd-wg0/g)?.length, 1, 'the rule removed once');
    assert.match(describeAction(action!), /^stop wg0's relay live: forwarding off, meshctl's rule removed/);
  });

  it('with an MTU change beside it: both live; with another hook or ListenPort beside it: a restart as before', () => {
    const mtu = enable(node(plain, 0, ''), { ...relaying, mtu: 1380 });
    assert.deepEqual(
      mtu.action!.changes.map((c) => c.kind),
      ['set-mtu', 'relay-on'],
    );
    assert.match(JSON.stringify(mtu.action!.changes), /MTU and relay lines the only \[Interface\] changes/);
    // a hand-made hook in the file is not meshctl's relay: restarted
    const hooked = node(plain, 0, '');
    hooked.config = { ...hooked.config, text: hooked.config.text!.replace('[Interface]\n', '[Interface]\nPreDown = echo bye\n') };
    assert.equal(liveInterfaceChange(hooked.config.text, relaying), undefined);
    assert.equal(enable(hooked, relaying).action!.changes[0]!.kind, 'restart');
    const port = enable(node(plain, 0, ''), { ...relaying, listenPort: 51821 });
    assert.equal(port.action!.changes[0]!.kind, 'restart');
  });

  it('the no-systemd path sets the relay live too', () => {
    const facts = { ...node(plain, 0, ''), systemd: false };
    const { action } = enable(facts, relaying);
    assert.deepEqual(
      action!.changes.map((c) => c.kind),
      ['relay-on'],
    );
    assert.doesNotMatch(action!.script, /wg-quick (down|up)/);
  });
});

describe("a relay's forwarding or rule gone is planned and mended live (Q8 F-relay)", () => {
  it('a converged relay: nothing to change', () => {
    const facts = node(relaying, 1, RULE);
    assert.deepEqual(relayDrift(facts, relaying), []);
    assert.equal(enable(facts, relaying).action, undefined);
  });

  it('forwarding off on wg0: the plan names it, the PostUp lines run on the running interface', () => {
    const facts = node(relaying, 0, RULE);
    const { change, action } = enable(facts, relaying);
    assert.equal(change, 'none');
    assert.deepEqual(action!.changes, [
      {
        kind: 'relay-on',
        iface: 'wg0',
        why: "live net.ipv4.conf.wg0.forwarding = 0, the relay's PostUp sets 1: the relay's PostUp run on the running interface",
      },
    ]);
    assert.doesNotMatch(action!.script, /systemctl restart/);
  });

  it("the rule's FORWARD jump deleted: planned; a ruleset cut at its cap or not read: not judged", () => {
    const noJump = RULE.replace('-A FORWARD -i wg0 -j meshctl-fwd-wg0\n', '');
    assert.equal(relayRuleInPlace(ruleset(noJump), 'wg0'), false);
    assert.equal(relayRuleInPlace(ruleset(RULE.replace('-A meshctl-fwd-wg0 -i wg0 -j DROP\n', '')), 'wg0'), false);
    assert.equal(relayRuleInPlace(ruleset(RULE), 'wg0'), true);
    assert.equal(relayRuleInPlace({ ...ruleset(''), truncated: ['iptables-nft'] }, 'wg0'), undefined);
    assert.equal(relayRuleInPlace(undefined, 'wg0'), undefined);
    const { action } = enable(node(relaying, 1, noJump), relaying);
    assert.match(
      describeAction(action!),
      /meshctl's relay rule for wg0 \(accept wg0 -> wg0, drop wg0 -> other interfaces\) is not in place/,
    );
    // a node that relays nothing is not judged by it
    assert.deepEqual(relayDrift(node(plain, 0, ''), plain), []);
  });

  it('the facts probe reads wg0 forwarding with a builtin read (no process)', () => {
    const command = FACTS.interfaceForwarding.command(WG0);
    assert.match(command, /read -r mc_v < \/proc\/sys\/net\/ipv4\/conf\/wg0\/forwarding/);
    assert.doesNotMatch(command, /\b(cat|sysctl)\b/);
    assert.equal(FACTS.interfaceForwarding.parse({ name: 'ifacefwd', body: 'forwarding=0\n', rc: 0 }, WG0), 0);
    assert.equal(FACTS.interfaceForwarding.parse({ name: 'ifacefwd', body: 'forwarding=\n', rc: 0 }, WG0), undefined);
  });

  it('the scripts do on a real interface what the plan says (a tun link and iptables in a namespace)', (t) => {
    const skip = netnsSkipReason();
    if (skip) return t.skip(skip);
    withNetns('mc-relay', (run) => {
      run('ip tuntap add dev wg0 mode tun && ip link set wg0 up');
      /** the namespace as the facts probe reads it: wg0's forwarding (the fact's own command) and iptables-save */
      const read = (file: DesiredNodeConfig): NodeFacts => {
        const body = run(FACTS.interfaceForwarding.command(WG0));
        return node(file, FACTS.interfaceForwarding.parse({ name: 'ifacefwd', body, rc: 0 }, WG0)!, run('iptables-save'));
      };
      // role on
      run(enable(read(plain), relaying).action!.script);
      assert.equal(run('cat /proc/sys/net/ipv4/conf/wg0/forwarding').trim(), '1');
      assert.equal(run('cat /proc/sys/net/ipv4/ip_forward').trim(), '0', 'forwarding on wg0 alone');
      assert.equal(relayRuleInPlace(read(relaying).baseline.firewallRuleset, 'wg0'), true);
      assert.equal(enable(read(relaying), relaying).action, undefined, 'then nothing to change');
      // forwarding switched off as an operator does it: mended
      run('sysctl -q -w net.ipv4.ip_forward=1; sysctl -q -w net.ipv4.ip_forward=0');
      const off = read(relaying);
      assert.equal(off.live?.forwarding, 0);
      run(enable(off, relaying).action!.script);
      assert.equal(run('cat /proc/sys/net/ipv4/conf/wg0/forwarding').trim(), '1');
      // the FORWARD jump deleted: mended
      run('iptables -w -D FORWARD -i wg0 -j meshctl-fwd-wg0');
      const jumpless = read(relaying);
      assert.equal(relayRuleInPlace(jumpless.baseline.firewallRuleset, 'wg0'), false);
      run(enable(jumpless, relaying).action!.script);
      assert.equal(enable(read(relaying), relaying).action, undefined, 'mended: nothing to change');
      // role off: torn down, wg0 back to a fresh device's forwarding
      run(enable(read(relaying), plain).action!.script);
      assert.equal(run('cat /proc/sys/net/ipv4/conf/wg0/forwarding').trim(), '0');
      assert.doesNotMatch(run('iptables-save'), /meshctl-fwd-wg0/);
      assert.equal(enable(read(plain), plain).action, undefined, 'then nothing to change');
      // a node without iptables: the PostUp's nftables table, read from `nft -j list ruleset`
      const nftUp = /elif command -v nft >\/dev\/null 2>&1; then (.*); else /.exec(relayHooks('wg0').postUp[0]!)![1]!;
      run(nftUp);
      const nftOnly = (): FirewallFacts => ({ nftJson: run('nft -j list ruleset'), truncated: [] });
      assert.equal(relayRuleInPlace(nftOnly(), 'wg0'), true);
      run(`nft flush chain inet ${relayNftTableName('wg0')} forward`);
      assert.equal(relayRuleInPlace(nftOnly(), 'wg0'), false, 'the table without its rules');
    });
  });
});
