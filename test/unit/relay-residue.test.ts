/**
 * A relay rule left on a node that relays nothing (Q4's finding 2): `up` restarts wg-quick on the NEW file, whose
 * PreDown has no relay lines, so the old PostUp's FORWARD jump and chain stay. The plan reads them from the live
 * ruleset (up's own firewall fact) and removes them (../../src/firewall/relay-residue.ts); verify's advice for doing
 * it by hand deletes the jump before the chain. The commands are run for real in an empty network namespace (root).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { FACTS } from '../../src/facts/definitions.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import type { FirewallFacts } from '../../src/firewall/verdict.js';
import { relayResidueRemoval, relayRuleFound } from '../../src/firewall/relay-residue.js';
import { judgeRelay, RELAY_FACT, relayIptablesFromSave, type RelayState } from '../../src/checks/relay-check.js';
import { relayHooks } from '../../src/render/relay.js';
import { planService } from '../../src/steps/service.js';
import { describeAction } from '../../src/engine/plan.js';
import type { DesiredNodeConfig } from '../../src/topology/desired.js';

const CTX = { interface: 'wg0', listenPort: 51820 };
const root = process.getuid?.() === 0 && spawnSync('unshare', ['--net', 'true']).status === 0;

/** Runs `script` under bash -e in a fresh network namespace (gone when it exits) with a device per name (wg0). */
function inNamespace(script: string[], devices: readonly string[] = ['wg0']) {
  const links = devices.map((d, i) => `ip link add ${d} type veth peer name wgpeer${i}`);
  const run = spawnSync('unshare', ['--net', 'bash', '-e', '-c', [...links, ...script].join('\n')], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return run;
}
const section = (out: string, name: string) => out.split(`@@@${name}\n`)[1]!.split('@@@')[0]!;
const relayState = (body: string): RelayState => RELAY_FACT.parse({ name: 'relay', body, rc: 0 } as never, CTX);
const ruleset = (body: string): FirewallFacts => FACTS.firewallRuleset.parse({ name: 'fwrules', body, rc: 0 } as never, CTX)!;
const fwFact = LEAN_FACTS.firewallRuleset.command(CTX as never);

/**
 * A node running wg-quick@wg0 whose live firewall ruleset is `rules` (a Debian node as up's facts show it); `systemd`
 * false: one without it (OpenRC, a container without an init), where wg-quick runs by itself.
 */
function runningNode(rules: FirewallFacts | undefined, systemd = true): NodeFacts {
  return {
    uid: 0,
    hostname: 'p-2',
    os: { id: 'debian', versionId: '12', idLike: [], prettyName: 'Debian GNU/Linux 12 (bookworm)' },
    packageManager: 'apt',
    systemd,
    kernelModule: 'loaded',
    tools: { wg: true, wgQuick: true, wireguardGo: false, tcpdump: true, ping: true },
    interfaces: ['lo', 'eth0', 'wg0'],
    wireguardInterfaces: ['wg0'],
    wireguardConfigs: ['wg0'],
    config: { exists: true, hasPrivateKeyLine: false, managedByMeshctl: true },
    interfaceRoutes: ['172.27.40.11'],
    keys: { privateKeyExists: true },
    sysctl: { rpFilterAll: 0, rpFilterDefault: 0 },
    service: { enabled: 'enabled', active: 'active' },
    listenPortUsers: [],
    peers: [],
    baseline: {
      extraIpRules: [],
      leftoverPaths: [],
      leftoverUnits: [],
      leftoverInterfaces: [],
      firewallDrops: [],
      ...(rules ? { firewallRuleset: rules } : {}),
    },
  } as NodeFacts;
}
const design = (relay?: DesiredNodeConfig['relay']) =>
  ({ node: 'p-2', peers: [], ...(relay ? { relay } : {}) }) as unknown as DesiredNodeConfig;

describe('a relay rule left on a node that relays nothing', { skip: root ? false : 'needs root and unshare' }, () => {
  for (const tool of ['iptables', 'nft']) {
    it(`${tool}: up's firewall fact shows it, the plan removes it (after the restart), and a second run finds nothing`, () => {
      const postUp = relayHooks('wg0').postUp.map((l) => (tool === 'nft' ? l.replace('if command -v iptables', 'if false') : l));
      const left = inNamespace([...postUp, 'echo @@@fw', fwFact]);
      assert.equal(left.status, 0, left.stderr);
      const rules = ruleset(section(left.stdout, 'fw'));
      const found = relayRuleFound(rules, 'wg0');
      assert.ok(found.length > 0, JSON.stringify(rules).slice(0, 400));
      if (tool === 'iptables') assert.ok(found.includes('-A FORWARD -i wg0 -j meshctl-fwd-wg0'), found.join('\n'));
      else assert.deepEqual(found, ['nft table inet meshctl_fwd_wg0']);

      const removal = relayResidueRemoval(rules, 'wg0', design()).commands;
      // with systemd and without (RV3 F2: without, the removal was never planned)
      for (const systemd of [true, false]) {
        // the node stops relaying: [Interface] changed (the relay lines went), a restart, then the removal
        const plan = planService(runningNode(rules, systemd), 'wg0', 'interface', ['172.27.40.11/32'], undefined, design());
        const action = plan.action!;
        assert.deepEqual(
          action.changes.map((c) => c.kind),
          [systemd ? 'restart' : 'wg-quick-up', 'remove-relay-rule'],
          `systemd: ${systemd}`,
        );
        assert.match(describeAction(action), /remove meshctl's relay rule for wg0 \(the node relays no pair/);
        const restart = systemd ? 'systemctl restart' : 'wg-quick up';
        assert.ok(action.script.indexOf(restart) < action.script.indexOf(removal[0]!), `removed after the restart (systemd: ${systemd})`);
        // converged otherwise: the plan is not "nothing to change" while the rule is there
        const converged = planService(runningNode(rules, systemd), 'wg0', 'none', ['172.27.40.11/32'], undefined, design());
        assert.deepEqual(
          converged.action?.changes.map((c) => c.kind),
          ['remove-relay-rule'],
          `systemd: ${systemd}`,
        );
        assert.ok(converged.action!.script.includes(removal[0]!));
      }
      // a node that relays keeps its rule; a node whose ruleset was not read, or whose design is unknown, is left alone
      assert.equal(
        planService(runningNode(rules), 'wg0', 'none', ['172.27.40.11/32'], undefined, design({ pairs: [{ a: 'b-2', b: 'c-1' }] })).action,
        undefined,
      );
      assert.equal(planService(runningNode(undefined), 'wg0', 'none', ['172.27.40.11/32'], undefined, design()).action, undefined);
      assert.equal(planService(runningNode(rules), 'wg0', 'none', ['172.27.40.11/32']).action, undefined);

      // the removal, run for real (twice: idempotent), leaves nothing the relay fact or up's fact shows
      const after = inNamespace([
        ...postUp,
        'sysctl -q -w net.ipv4.conf.wg0.forwarding=1',
        ...removal,
        ...removal,
        'echo @@@relay',
        RELAY_FACT.command(CTX),
        'echo @@@fw',
        fwFact,
      ]);
      assert.equal(after.status, 0, after.stderr);
      assert.deepEqual(relayState(section(after.stdout, 'relay')), { forwarding: 0, iptables: [], nft: [] });
      assert.deepEqual(relayRuleFound(ruleset(section(after.stdout, 'fw')), 'wg0'), []);
    });
  }

  for (const ipForward of [0, 1]) {
    it(`the removal leaves wg0's forwarding as a fresh device gets it (net.ipv4.ip_forward=${ipForward})`, () => {
      const rules = ruleset(section(inNamespace([...relayHooks('wg0').postUp, 'echo @@@fw', fwFact]).stdout, 'fw'));
      const removal = relayResidueRemoval(rules, 'wg0', design()).commands;
      assert.equal(removal.length, 1);
      // the relay's PostUp set forwarding=1 on wg0; a fresh device (wg9) shows what a restarted wg0 would get
      const run = inNamespace([
        `sysctl -q -w net.ipv4.ip_forward=${ipForward}`,
        ...relayHooks('wg0').postUp,
        'ip link add wg9 type veth peer name wgpeer9',
        'echo "fresh=$(cat /proc/sys/net/ipv4/conf/wg9/forwarding)"',
        ...removal,
        'echo @@@relay',
        RELAY_FACT.command(CTX),
      ]);
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, new RegExp(`^fresh=${ipForward}$`, 'm'));
      assert.deepEqual(relayState(section(run.stdout, 'relay')), { forwarding: ipForward, iptables: [], nft: [] });
    });
  }

  it("another interface's relay is no leftover of this one (iptables): wg0-b's jump `-j meshctl-fwd-wg0-b` is not wg0's", () => {
    // wg0 relays nothing, wg0-b relays (iptables: its jump `-j meshctl-fwd-wg0-b` starts with wg0's chain name)
    const ipt = inNamespace(
      [...relayHooks('wg0-b').postUp, 'echo @@@relay', RELAY_FACT.command(CTX), 'echo @@@fw', fwFact, 'echo @@@end'],
      ['wg0', 'wg0-b'],
    );
    assert.equal(ipt.status, 0, ipt.stderr);
    const rules = ruleset(section(ipt.stdout, 'fw'));
    assert.ok(JSON.stringify(rules).includes('-j meshctl-fwd-wg0-b'), 'wg0-b relays (not vacuous)');
    assert.deepEqual(relayState(section(ipt.stdout, 'relay')).iptables, [], 'verify reads no rule of wg0');
    assert.deepEqual(relayRuleFound(rules, 'wg0'), []);
    assert.equal(planService(runningNode(rules), 'wg0', 'none', ['172.27.40.11/32'], undefined, design()).action, undefined);
    assert.equal(judgeRelay('wg0', undefined, relayState(section(ipt.stdout, 'relay'))), undefined, 'no by-hand advice for wg0');
  });

  it("another interface's relay is no leftover of this one (nft): wg_a's table is not wg-a's", () => {
    // nft only: wg_a relays, wg-a relays nothing; the two tables are not one
    const nftUp = relayHooks('wg_a').postUp.map((l) => l.replace('if command -v iptables', 'if false'));
    const nft = inNamespace(
      [...nftUp, 'echo @@@relay', RELAY_FACT.command({ ...CTX, interface: 'wg-a' }), 'echo @@@fw', fwFact, 'echo @@@end'],
      ['wg-a', 'wg_a'],
    );
    assert.equal(nft.status, 0, nft.stderr);
    const nftRules = ruleset(section(nft.stdout, 'fw'));
    assert.deepEqual(relayRuleFound(nftRules, 'wg_a').length, 1, 'wg_a relays (not vacuous)');
    assert.deepEqual(relayRuleFound(nftRules, 'wg-a'), []);
    assert.deepEqual(relayState(section(nft.stdout, 'relay')).nft, []);
  });

  it("an older meshctl's table for an interface with `_` (meshctl_fwd_wg_a) is found and removed, and wg-a's own table of that name is not (RV4 F4.1)", () => {
    // before 3f9a0e6, wg_a's table was named as wg-a's is today; its rules say which interface it guards
    const oldUp = (iface: string) =>
      relayHooks(iface)
        .postUp.map((l) => l.replace('if command -v iptables', 'if false'))
        .map((l) => l.replaceAll(/meshctl_fwdx?_[0-9a-z_]+/g, 'meshctl_fwd_wg_a'));
    const left = inNamespace([...oldUp('wg_a'), 'echo @@@fw', fwFact, 'echo @@@end'], ['wg-a', 'wg_a']);
    assert.equal(left.status, 0, left.stderr);
    const rules = ruleset(section(left.stdout, 'fw'));
    assert.deepEqual(relayRuleFound(rules, 'wg_a'), ['nft table inet meshctl_fwd_wg_a']);
    const removal = relayResidueRemoval(rules, 'wg_a', design()).commands;
    const after = inNamespace([...oldUp('wg_a'), ...removal, ...removal, 'echo @@@fw', fwFact, 'echo @@@end'], ['wg-a', 'wg_a']);
    assert.equal(after.status, 0, after.stderr);
    assert.deepEqual(relayRuleFound(ruleset(section(after.stdout, 'fw')), 'wg_a'), [], 'gone: a second up changes nothing');
    // the same name guarding wg-a (its own table, then and now) is no leftover of wg_a's
    const other = inNamespace([...oldUp('wg-a'), 'echo @@@fw', fwFact, 'echo @@@end'], ['wg-a', 'wg_a']);
    assert.equal(other.status, 0, other.stderr);
    const otherRules = ruleset(section(other.stdout, 'fw'));
    assert.deepEqual(relayRuleFound(otherRules, 'wg-a'), ['nft table inet meshctl_fwd_wg_a'], "wg-a's table (not vacuous)");
    assert.deepEqual(relayRuleFound(otherRules, 'wg_a'), []);
  });

  it('a rule left in the backend `iptables` no longer points at (legacy) is removed there too', () => {
    // the relay's PostUp ran when `iptables` was iptables-legacy; now it is the nf_tables one
    const legacyUp = relayHooks('wg0').postUp.map((l) => l.replaceAll('iptables -w', 'iptables-legacy -w'));
    const left = inNamespace([...legacyUp, 'echo @@@fw', fwFact, 'echo @@@end']);
    assert.equal(left.status, 0, left.stderr);
    const rules = ruleset(section(left.stdout, 'fw'));
    assert.ok(relayIptablesFromSave(rules.legacy ?? '', 'wg0').length > 0, 'the legacy backend holds it (not vacuous)');
    const removal = relayResidueRemoval(rules, 'wg0', design()).commands;
    const after = inNamespace([...legacyUp, ...removal, ...removal, 'echo @@@fw', fwFact, 'echo @@@end']);
    assert.equal(after.status, 0, after.stderr);
    assert.deepEqual(relayRuleFound(ruleset(section(after.stdout, 'fw')), 'wg0'), [], 'up finds nothing left: a second up changes nothing');
  });

  it("verify's advice for removing it by hand is commands that work (the jump before the chain)", () => {
    const left = inNamespace([
      ...relayHooks('wg0').postUp,
      'sysctl -q -w net.ipv4.conf.wg0.forwarding=0',
      'echo @@@relay',
      RELAY_FACT.command(CTX),
    ]);
    assert.equal(left.status, 0, left.stderr);
    const state = relayState(section(left.stdout, 'relay'));
    const warning = judgeRelay('wg0', undefined, state)!;
    assert.equal(warning.status, 'warn');
    assert.match(warning.message, /`meshctl up` removes it/);
    // no promise up cannot keep: past the fact's cut (a large ruleset) up does not see the rule (RV3 F9)
    assert.match(warning.message, /unless the node's iptables ruleset is larger than the 512 KB up reads of it/);
    const byHand = /by hand: (.*)\)$/.exec(warning.message)?.[1];
    assert.ok(byHand, warning.message);
    const run = inNamespace([...relayHooks('wg0').postUp, byHand, 'echo @@@relay', RELAY_FACT.command(CTX)]);
    assert.equal(run.status, 0, `${byHand}: ${run.stderr}`);
    assert.deepEqual(relayState(section(run.stdout, 'relay')).iptables, []);
  });
});
