/**
 * Issue 10: verify's first script is the pre script and the checklist in one (src/checks/collect.ts firstScript),
 * proving root on the way (no separate `id -u` round trip). Captures from a homelab lab (lab hv, `lab up`, `up --yes`),
 * each pair run one right after the other on the same node (`lab exec --name hv NODE -- sh < SCRIPT`):
 *   first-STATE-NODE.old.txt: the scripts as commit ef902ca ran them, the pre script, then (in a shell of its own, as
 *     beside the pings) the checklist without the pre facts, their outputs joined as collectVerify joined them;
 *   first-STATE-NODE.new.txt: firstScript(inventory, NODE, { uid: true }), one shell.
 *   States: converged (after `up`), drifted (on ms-1: `iptables -A INPUT -p udp --dport 51820 -j DROP`,
 *   `echo "# hand edit" >> /etc/wireguard/wg0.conf`, `sysctl -w net.ipv4.conf.all.rp_filter=1`,
 *   `ip route del 172.27.15.11/32 dev wg0`, `rm /etc/systemd/system/multi-user.target.wants/wg-quick@wg0.service`),
 *   stopped (then `systemctl stop wg-quick@wg0`).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseChecklist } from '../../src/checks/probes.js';
import { firstScript, parsePreFacts, rootFailure } from '../../src/checks/collect.js';
import { loadInventory } from '../../src/inventory/load.js';
import { comparable } from '../fixtures/probes/comparable.js';

const fx = (name: string) => readFileSync(`test/fixtures/probes/issue10/${name}.txt`, 'utf8');
const inventory = loadInventory(new URL('../../inventories/homelab.yaml', import.meta.url).pathname);
const peerIps = (node: string) => inventory.nodes.filter((n) => n.name !== node).map((n) => n.overlayIp);
/** the checklist as collectVerify reads it from the first script (pre facts left out, its own end section) */
const paramsOf = (node: string) => ({
  interface: 'wg0',
  listenPort: 51820,
  peerIps: peerIps(node),
  without: ['now', 'pubkey', 'port', 'dump', 'udpsnmp'],
  endSection: 'checklist-done',
});

const STATES = [
  ['converged', 'ms-1'],
  ['converged', 'wk-1'],
  ['drifted', 'ms-1'],
  ['stopped', 'ms-1'],
] as const;

describe("verify's first script (issue 10): the pre script and the checklist in one shell, the same facts", () => {
  for (const [state, node] of STATES) {
    const base = `first-${state}-${node}`;
    it(`${base}: the checklist read from the first script equals the one read from the two scripts`, () => {
      assert.deepEqual(
        comparable(parseChecklist(fx(`${base}.new`), paramsOf(node))),
        comparable(parseChecklist(fx(`${base}.old`), paramsOf(node))),
      );
      assert.deepEqual(
        parseChecklist(fx(`${base}.new`), paramsOf(node)).problems,
        parseChecklist(fx(`${base}.old`), paramsOf(node)).problems,
      );
    });
    it(`${base}: the pre facts are the same, and the first script proved root`, () => {
      const read = (v: string) => {
        const { now: _n, udpCounters, peers, ...rest } = parsePreFacts(fx(`${base}.${v}`), { interface: 'wg0', listenPort: 0 });
        return { ...rest, udp: udpCounters !== undefined, peers: peers.map((p) => p.publicKey).sort() };
      };
      assert.deepEqual(read('new'), read('old'));
      assert.equal(rootFailure(node, `root@${node}:22`, false, fx(`${base}.new`), { code: 0, stderr: '' }), undefined);
      // the script the capture ran is the one verify sends now
      assert.equal(fx(`${base}.new`).includes('@@meshctl begin uid\n0\n'), true);
      assert.match(firstScript(inventory, node, { uid: true }), /begin uid'[\s\S]*begin pre-done'[\s\S]*begin checklist-done'/);
    });
  }

  it('the captures show the drift verify must see (so the comparisons above are not vacuous)', () => {
    const drifted = parseChecklist(fx('first-drifted-ms-1.new'), paramsOf('ms-1'));
    const stopped = parseChecklist(fx('first-stopped-ms-1.new'), paramsOf('ms-1'));
    assert.equal(drifted.service.enabled, 'disabled');
    assert.equal(drifted.rpFilter.all, 1);
    assert.match(drifted.configText ?? '', /# hand edit/);
    assert.notEqual(drifted.routes.find((r) => r.dst === '172.27.15.11')?.dev, 'wg0');
    assert.match(drifted.firewallRuleset?.iptablesNft ?? '', /--dport 51820 -j DROP/);
    assert.equal(stopped.service.active, 'inactive');
    assert.equal(stopped.iface.exists, false);
    assert.equal(stopped.wgAvailable, false);
  });
});
