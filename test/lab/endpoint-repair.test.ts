/**
 * A wrong live endpoint set by hand on a healthy homelab mesh (/work/wt/Q3-findings.md, "Broken pair 2"): on ms-1
 * (behind the home NAT) ctb-edge-1's endpoint moved to 198.51.100.26:51820, on ctb-edge-1 (public) ms-1's to
 * 203.0.113.10:51829, both with `wg set`. Before: `plan` said "nothing to change", `up` changed nothing and stopped at
 * the ping matrix, and `debug` blamed firewalls outside iptables from a handshake made before the break.
 * Now: `debug --pair` names ms-1's endpoint; `plan` shows its repair and says why; `up` repairs it with a peer sync
 * (no interface is recreated on any node) and every pair pings.
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab, uniqueLabName } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];

interface Diagnosis {
  cause: string;
  node?: string;
  summary: string;
  fix: string;
  evidence: string[];
}

describeLab(
  'a wrong live endpoint: debug names it, plan shows its repair, up repairs it without a restart',
  INVENTORY,
  (lab) => {
    const sh = async (target: string, script: string) => (await lab().sh(target, script)).trim();
    const ifindexes = async () => Promise.all(NODES.map((n) => sh(n, 'cat /sys/class/net/wg0/ifindex')));
    const pub = (node: string) => sh(node, 'wg show wg0 public-key');
    const endpointOf = async (node: string, peer: string) => {
      const key = await pub(peer);
      const line = (await sh(node, 'wg show wg0 endpoints')).split('\n').find((l) => l.startsWith(key));
      return line?.split('\t')[1];
    };
    let before: string[] = [];

    it('converges, then the two endpoints are set wrong by hand and the pair stops pinging', async () => {
      const up = await lab().meshctl(['up', INVENTORY, '--yes']);
      assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
      before = await ifindexes();
      await sh('ms-1', `wg set wg0 peer ${await pub('ctb-edge-1')} endpoint 198.51.100.26:51820`);
      await sh('ctb-edge-1', `wg set wg0 peer ${await pub('ms-1')} endpoint 203.0.113.10:51829`);
      assert.equal(await endpointOf('ms-1', 'ctb-edge-1'), '198.51.100.26:51820');
      const ping = await lab().exec('ms-1', ['ping', '-c', '3', '-W', '1', '-i', '0.3', '172.27.15.31']);
      assert.notEqual(ping.code, 0, `ms-1 still pings ctb-edge-1: ${ping.stdout}`);
    });

    it('debug --pair names ms-1\'s live endpoint, with meshctl up as the fix, not "handshake OK, ping fails"', async () => {
      const r = await lab().meshctl(['debug', INVENTORY, '--json', '--pair', 'ms-1,ctb-edge-1']);
      assert.ok(r.stdout.trim().startsWith('{'), `debug printed no JSON: ${r.stderr}`);
      const diagnoses = (JSON.parse(r.stdout) as { diagnoses: Diagnosis[] }).diagnoses;
      const causes = diagnoses.map((d) => `${d.cause}${d.node ? `@${d.node}` : ''}`);
      assert.ok(causes.includes('wrong-endpoint@ms-1'), causes.join(', '));
      assert.ok(!causes.includes('handshake-ok-ping-fails'), causes.join(', '));
      const d = diagnoses.find((x) => x.cause === 'wrong-endpoint')!;
      assert.equal(d.summary, 'ms-1 sends to ctb-edge-1 at 198.51.100.26:51820, not at the designed 198.51.100.25:51820');
      assert.match(d.fix, /^Run meshctl up/);
    });

    it('plan shows the repair of that endpoint and says why (exit 4)', async () => {
      const plan = await lab().meshctl(['plan', INVENTORY, '--no-color']);
      assert.equal(plan.code, 4, `${plan.stdout}\n${plan.stderr}`);
      assert.match(
        plan.stdout,
        /peer ctb-edge-1 endpoint 198\.51\.100\.26:51820, wg0\.conf 198\.51\.100\.25:51820 \(ctb-edge-1 is public: no NAT changes its address\)/,
      );
      assert.doesNotMatch(plan.stdout, /restart wg-quick@wg0/);
    });

    it('up repairs it with a peer sync: no interface recreated, every pair pings, verify passes', async () => {
      const up = await lab().meshctl(['up', INVENTORY, '--yes']);
      assert.equal(up.code, 0, `${up.stdout}\n${up.stderr}`);
      assert.equal(await endpointOf('ms-1', 'ctb-edge-1'), '198.51.100.25:51820');
      // syncconf (wg addconf of what differs), never a restart: every node keeps its wg0, the other pairs their sessions
      assert.deepEqual(await ifindexes(), before);
      const verify = await lab().meshctl(['verify', INVENTORY, '--json']);
      const report = JSON.parse(verify.stdout) as {
        checks: Array<{ id: string; node: string; peer?: string; status: string; message: string }>;
      };
      const pingFails = report.checks.filter((c) => c.id === 'ping' && c.status === 'fail');
      assert.deepEqual(
        pingFails.map((c) => `${c.node} -> ${c.peer}: ${c.message}`),
        [],
      );
      const next = await lab().meshctl(['plan', INVENTORY, '--no-color']);
      assert.equal(next.code, 0, `the repair converged: ${next.stdout}`);
    });
  },
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('ep') },
);
