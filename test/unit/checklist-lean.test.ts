/**
 * Issue 10: verify's checklist and pre script run fewer processes (src/checks/checklist-lean.ts), with the same
 * facts. Each pair of fixtures in test/fixtures/probes/issue10 is the script before (`.old.txt`: the shared
 * definitions' commands, as commit 50e051e ran them) and after (`.new.txt`: the lean ones), run one right after the
 * other on the same node (how: test/fixtures/probes/capture.sh, "issue10"):
 *   converged-*: a 4-node bench lab (scripts/bench/inventory.ts) after `up`; home-2 logs in as admin (sudo)
 *   drifted-home-1: after, on home-1: `iptables -A INPUT -p udp --dport 51820 -j DROP`, `echo "# hand edit" >>
 *     /etc/wireguard/wg0.conf`, `sysctl -w net.ipv4.conf.all.rp_filter=1`, `ip route del 172.27.20.11/32 dev wg0`,
 *     and `rm /etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service` (no daemon-reload)
 *   stopped-home-1: then `systemctl stop wg-quick@wg0` (no interface: every section's fallback runs)
 *   drifted-home-1.systemctl.txt: in the drifted state, `systemctl show -p UnitFileState -p ActiveState`, is-enabled
 *     and is-active
 *   netns-*: in an empty network namespace of this machine (no wg, no interface, no systemd): relay = meshctl's
 *     relay PostUp (iptables) plus a UDP drop rule; relaynft = the same plus the nftables relay table; nftonly = the
 *     iptables tables deleted; none = nothing left
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checklistScript, parseChecklist } from '../../src/checks/probes.js';
import { parsePreFacts } from '../../src/checks/collect.js';
import { relayIptablesFromSave } from '../../src/checks/relay-check.js';
import { judgeService } from '../../src/checks/judge.js';
import { comparable } from '../fixtures/probes/comparable.js';

const fx = (name: string) => readFileSync(`test/fixtures/probes/issue10/${name}.txt`, 'utf8');
const PEERS: Record<string, string[]> = {
  'home-1': ['172.27.20.11', '172.27.20.12', '172.27.20.13'],
  'home-2': ['172.27.20.10', '172.27.20.12', '172.27.20.13'],
  netns: ['172.27.20.11', '172.27.20.12', '172.27.20.13'],
};
const paramsOf = (node: string) => ({ interface: 'wg0', listenPort: 51820, peerIps: PEERS[node]! });
const checklist = (name: string, node: string) => parseChecklist(fx(name), paramsOf(node));

const STATES = [
  ['converged', 'home-1'],
  ['converged', 'home-2'],
  ['drifted', 'home-1'],
  ['stopped', 'home-1'],
  ['netns-relay', 'netns'],
  ['netns-relaynft', 'netns'],
  ['netns-nftonly', 'netns'],
  ['netns-none', 'netns'],
] as const;

describe('verify checklist with fewer processes (issue 10): the same facts as before', () => {
  for (const [state, node] of STATES) {
    const base = state.startsWith('netns') ? state : `${state}-${node}`;
    it(`${base}: the lean checklist's facts equal the shared one's`, () => {
      assert.deepEqual(comparable(checklist(`${base}.cl.new`, node)), comparable(checklist(`${base}.cl.old`, node)));
    });
    if (!state.startsWith('netns'))
      it(`${base}: the lean pre script's facts equal the shared one's`, () => {
        const read = (v: string) => {
          const { now: _n, udpCounters, peers, ...rest } = parsePreFacts(fx(`${base}.pre.${v}`), { interface: 'wg0', listenPort: 0 });
          return { ...rest, udp: udpCounters !== undefined, peers: peers.map((p) => p.publicKey).sort() };
        };
        assert.deepEqual(read('new'), read('old'));
      });
  }

  it('the captures show the drift verify must see (so the comparisons above are not vacuous)', () => {
    const ok = checklist('converged-home-1.cl.new', 'home-1');
    const drifted = checklist('drifted-home-1.cl.new', 'home-1');
    const stopped = checklist('stopped-home-1.cl.new', 'home-1');
    assert.equal(ok.service.enabled, 'enabled');
    assert.equal(ok.service.active, 'active');
    // the wants symlink removed without daemon-reload: `systemctl show` reads UnitFileState from the unit files, as
    // is-enabled does (a cached state would have said enabled)
    assert.equal(drifted.service.enabled, 'disabled');
    // ...and `systemctl show -p UnitFileState` on that node at that moment still said enabled (its cache): so the
    // checklist asks is-enabled, not show (a lean one `show` would have passed the service check)
    assert.match(fx('drifted-home-1.systemctl'), /^UnitFileState=enabled$/m);
    assert.match(fx('drifted-home-1.systemctl'), /^is-enabled=disabled$/m);
    assert.doesNotMatch(checklistScript(paramsOf('home-1')), /systemctl show/);
    assert.equal(judgeService({ iface: 'wg0' }, { service: drifted.service, interfacePresent: true }).status, 'warn');
    assert.equal(stopped.service.active, 'inactive');
    assert.equal(judgeService({ iface: 'wg0' }, { service: stopped.service, interfacePresent: false }).status, 'fail');
    assert.equal(drifted.rpFilter.all, 1);
    assert.match(drifted.configText ?? '', /# hand edit/);
    assert.equal(drifted.routes.find((r) => r.dst === '172.27.20.11')?.dev !== 'wg0', true);
    assert.match(drifted.firewallRuleset?.iptablesNft ?? '', /-A INPUT -p udp -m udp --dport 51820 -j DROP/);
    assert.equal(ok.firewallRuleset?.iptablesNft ?? '', '');
    assert.equal(stopped.iface.exists, false);
    assert.equal(stopped.wgAvailable, false);
  });

  it('relay lines from iptables-save text are the lines `iptables -S` gave (netns-relay capture)', () => {
    const relay = checklist('netns-relay.cl.new', 'netns');
    assert.match(fx('netns-relay.cl.new'), /^ipt-from=fwrules$/m);
    assert.deepEqual(relay.relay?.iptables, [
      '-N meshctl-fwd-wg0',
      '-A meshctl-fwd-wg0 -i wg0 -o wg0 -j ACCEPT',
      '-A meshctl-fwd-wg0 -i wg0 -j DROP',
      '-A FORWARD -i wg0 -j meshctl-fwd-wg0',
    ]);
    assert.deepEqual(relayIptablesFromSave('*nat\n:meshctl-fwd-wg0 - [0:0]\nCOMMIT\n', 'wg0'), [], 'only the filter table');
  });
});
