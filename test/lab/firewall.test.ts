/**
 * Issue 8, kind 4: the firewall is judged by its effect, and verify proves each designed direction can start a
 * session from cold.
 *
 * The instance from the issue: on ctb-edge-1 `iptables -P INPUT DROP` with ACCEPT only for lo, ESTABLISHED, tcp/22
 * and ICMP. Old code: the baseline said "no rule drops UDP 51820" and, on a mesh converged before the drop, verify
 * said HEALTHY (the existing sessions still worked, held open by conntrack) although no home node could start a
 * session with the edge any more. Now the baseline STOPs naming the policy and the accept rule to add, and verify
 * fails each home -> edge direction (a new flow from a fresh source port does not arrive) and the edge's firewall.
 *
 * A second instance of the kind: native nftables only, on wk-2, a user chain with a catch-all `reject` that accepts
 * WireGuard only from the home LAN. The edge (198.51.100.25, forwarded by the home router) can no longer dial wk-2,
 * while the LAN nodes can. Old code: no rule text names UDP 51820 with drop, so both checks passed.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab, uniqueLabName } from './harness.js';
import type { Check } from '../../src/checks/verify.js';

const INVENTORY = 'inventories/homelab.yaml';
const EDGE_POLICY_DROP = [
  'iptables -P INPUT DROP',
  'iptables -A INPUT -i lo -j ACCEPT',
  'iptables -A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
  'iptables -A INPUT -p tcp --dport 22 -j ACCEPT',
  'iptables -A INPUT -p icmp -j ACCEPT',
].join('; ');
const EDGE_OPEN = 'iptables -F INPUT; iptables -P INPUT ACCEPT';
const WK2_GUARD = `nft -f - <<'EOF'
table inet guard {
  chain input {
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    meta l4proto udp jump screen
  }
  chain screen {
    ip saddr 192.168.15.0/24 udp dport 51820 accept
    reject
  }
}
EOF`;

interface UpJson {
  result: string;
  stoppedAt?: string;
  phases: { id: string; verdict: string; nodes: { node: string; checks: { id: string; status: string; message: string }[] }[] }[];
}

describeLab(
  'the firewall judged by its effect; verify starts every direction from cold (issue 8, kind 4)',
  INVENTORY,
  (lab) => {
    const sh = (node: string, script: string) => lab().sh(node, script);
    const verify = async () => {
      const r = await lab().meshctl(['verify', INVENTORY, '--json', '--all-checks']);
      return { code: r.code, checks: (JSON.parse(r.stdout) as { checks: Check[] }).checks };
    };
    const failing = (checks: Check[]) =>
      checks.filter((c) => c.status === 'fail').map((c) => `${c.node}${c.peer ? `->${c.peer}` : ''} ${c.id}`);
    const baselineFailures = (report: UpJson) =>
      report.phases
        .find((p) => p.id === 'baseline')!
        .nodes.flatMap((n) => n.checks.filter((c) => c.status === 'fail').map((c) => ({ node: n.node, ...c })));

    it('the issue instance before up: the baseline STOPs on the edge, naming the policy and the accept rule', async () => {
      await sh('ctb-edge-1', EDGE_POLICY_DROP);
      try {
        const r = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
        assert.equal(r.code, 1, r.stderr);
        const report = JSON.parse(r.stdout) as UpJson;
        assert.equal(report.stoppedAt, 'baseline');
        const failed = baselineFailures(report);
        assert.deepEqual(
          failed.map((c) => `${c.node}:${c.id}`),
          ['ctb-edge-1:no-firewall-drop'],
        );
        assert.equal(
          failed[0]!.message,
          'the firewall drops new UDP 51820 from 203.0.113.10: iptables-nft filter INPUT: policy drop; add: iptables -I INPUT -p udp --dport 51820 -j ACCEPT',
        );
      } finally {
        await sh('ctb-edge-1', EDGE_OPEN);
      }
    });

    it('converges with the edge open; verify passes every cold-start direction and firewall', async () => {
      const r = await lab().meshctl(['up', INVENTORY, '--yes']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const v = await verify();
      assert.deepEqual(failing(v.checks), []);
      assert.equal(v.checks.filter((c) => c.id === 'cold-start' && c.status === 'pass').length, 12);
      assert.equal(v.checks.filter((c) => c.id === 'firewall' && c.status === 'pass').length, 4);
    });

    it('the drop added afterwards: sessions still work, but no home node can start one with the edge from cold', async () => {
      await sh('ctb-edge-1', EDGE_POLICY_DROP);
      try {
        const v = await verify();
        assert.equal(v.code, 1);
        assert.deepEqual(failing(v.checks).sort(), [
          'ctb-edge-1 firewall',
          'ms-1->ctb-edge-1 cold-start',
          'wk-1->ctb-edge-1 cold-start',
          'wk-2->ctb-edge-1 cold-start',
        ]);
        // the tunnels that exist still carry pings: only the cold start shows the one-way pairs
        assert.ok(
          v.checks.filter((c) => c.id === 'ping').every((c) => c.status === 'pass'),
          JSON.stringify(v.checks.filter((c) => c.id === 'ping')),
        );
        const cold = v.checks.find((c) => c.id === 'cold-start' && c.node === 'ms-1' && c.peer === 'ctb-edge-1')!;
        assert.match(
          cold.message,
          /^ms-1 cannot start a session with ctb-edge-1 from cold: a new flow to 198\.51\.100\.25:51820 does not arrive/,
        );
        assert.ok(
          cold.evidence.some((e) => e.startsWith('firewall on ctb-edge-1: the firewall drops new UDP 51820') && e.includes('policy drop')),
          JSON.stringify(cold.evidence),
        );
        // the edge dials the home nodes through the router's forwards: those directions still start from cold
        for (const to of ['ms-1', 'wk-1', 'wk-2'])
          assert.equal(v.checks.find((c) => c.id === 'cold-start' && c.node === 'ctb-edge-1' && c.peer === to)?.status, 'pass');
      } finally {
        await sh('ctb-edge-1', EDGE_OPEN);
      }
    });

    it('nftables only, a reject catch-all in a user chain on wk-2: the edge cannot dial wk-2; verify and the baseline name it', async () => {
      await sh('wk-2', WK2_GUARD);
      try {
        const v = await verify();
        assert.equal(v.code, 1);
        assert.deepEqual(failing(v.checks).sort(), ['ctb-edge-1->wk-2 cold-start', 'wk-2 firewall']);
        const fw = v.checks.find((c) => c.id === 'firewall' && c.node === 'wk-2')!;
        assert.equal(
          fw.message,
          'the firewall drops new UDP 51820 from 198.51.100.25: nftables inet guard input: input -> screen: inet guard screen: reject; add: nft insert rule inet guard input udp dport 51820 accept',
        );
        const r = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
        assert.equal(r.code, 1, r.stderr);
        const report = JSON.parse(r.stdout) as UpJson;
        assert.deepEqual(
          baselineFailures(report).map((c) => `${c.node}:${c.id}:${c.message}`),
          [`wk-2:no-firewall-drop:${fw.message}`],
        );
      } finally {
        await sh('wk-2', 'nft delete table inet guard');
      }
    });
  },
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('fw') },
);
