/**
 * Dynamic public addresses (issue 11): a home addressed by a DNS name (nat.publicHost) in
 * inventories/dynamic-dns.yaml, with the lab's own DNS server (dnsmasq in the internet
 * namespace; src/lab/dns.ts).
 * - `up` converges with the name as the endpoint in every config that dials the home, and installs the re-resolve
 *   timer exactly where a node dials a name (cafe-1 and edge-1, not the home's own nodes);
 * - the lab moves the home to a new public IP and updates the name (labMoveSite); without `up`, every pair passes
 *   again within 120 s (the time is measured and printed). cafe-1 needs its timer for that: it dials the home and the
 *   home cannot dial it (cafe has no forward), so nothing else would ever tell cafe-1 the new address;
 * - a second `up` after the move changes nothing (the configs still say the name; NAT discovery and the forward
 *   probe resolve it on the nodes and find the new address).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab, uniqueLabName } from './harness.js';
import { labMoveSite } from '../../src/lab/dns.js';

const INVENTORY = 'inventories/dynamic-dns.yaml';
const NODES = ['home-1', 'home-2', 'cafe-1', 'edge-1'];
const OVERLAY: Record<string, string> = {
  'home-1': '172.27.40.2',
  'home-2': '172.27.40.3',
  'cafe-1': '172.27.40.4',
  'edge-1': '172.27.40.5',
};
const NEW_IP = '203.0.113.140';
const RECOVERY_LIMIT_S = 120;

interface UpJson {
  result: string;
  changes: number;
  phases: {
    id: string;
    verdict: string;
    nodes: { node: string; changes: string[]; checks: { id: string; status: string; message: string }[] }[];
  }[];
}

describeLab(
  'dynamic public addresses: a home named by DNS moves, the mesh follows without up',
  INVENTORY,
  (lab) => {
    const sh = (node: string, script: string) => lab().sh(node, script);
    const up = async () => {
      const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
      assert.equal(result.code, 0, `stdout:\n${result.stdout.slice(-4000)}\nstderr:\n${result.stderr.slice(-4000)}`);
      return JSON.parse(result.stdout) as UpJson;
    };
    /** Pairs (sorted names) where a ping fails in either direction; every node pings every other once, all at once. */
    const failingPairs = async (): Promise<string[]> => {
      const failing = new Set<string>();
      await Promise.all(
        NODES.map(async (from) => {
          const targets = NODES.filter((n) => n !== from);
          const script = targets.map((to) => `ping -c1 -W2 ${OVERLAY[to]} >/dev/null 2>&1 && echo ok ${to} || echo fail ${to}`).join('\n');
          const out = (await lab().exec(from, ['sh', '-c', script], { timeoutMs: 30_000 })).stdout;
          for (const to of targets) if (!out.includes(`ok ${to}\n`)) failing.add([from, to].sort().join('~'));
        }),
      );
      return [...failing].sort();
    };

    it('the lab serves the name from its own DNS server, inside the lab', async () => {
      assert.match(await sh('cafe-1', 'cat /etc/resolv.conf'), /^nameserver 169\.254\.0\.1$/m);
      for (const node of NODES) assert.match(await sh(node, 'getent ahosts home.dyn.example.net'), /^203\.0\.113\.40\s/m, node);
    });

    it('up converges with the name as the endpoint; the re-resolve timer runs where a node dials the name', async () => {
      const report = await up();
      assert.equal(report.result, 'converged');
      assert.deepEqual(await failingPairs(), []);
      // before anything ran, NAT discovery and the forward probe resolved the name on the nodes
      const baseline = report.phases.find((p) => p.id === 'baseline')!;
      const check = (node: string, id: string) => baseline.nodes.find((n) => n.node === node)!.checks.find((c) => c.id === id)!;
      assert.match(
        check('home-1', 'nat-mapping').message,
        /^site home: public address 203\.0\.113\.40 \(what home\.dyn\.example\.net resolves to\)/,
      );
      for (const node of ['home-1', 'home-2'])
        assert.equal(check(node, 'forward-reaches-node').status, 'pass', check(node, 'forward-reaches-node').message);
      assert.match(check('home-1', 'forward-reaches-node').message, /home\.dyn\.example\.net:41001/);
      const cafe = await sh('cafe-1', 'cat /etc/wireguard/wg0.conf');
      assert.match(cafe, /Endpoint = home\.dyn\.example\.net:41001\n/);
      assert.match(cafe, /Endpoint = home\.dyn\.example\.net:41002\n/);
      assert.match(await sh('edge-1', 'cat /etc/wireguard/wg0.conf'), /Endpoint = home\.dyn\.example\.net:41001\n/);
      for (const node of ['cafe-1', 'edge-1'])
        assert.equal((await sh(node, 'systemctl is-active meshctl-reresolve@wg0.timer')).trim(), 'active', node);
      for (const node of ['home-1', 'home-2'])
        assert.equal((await lab().exec(node, ['test', '-e', '/etc/systemd/system/meshctl-reresolve@.timer'])).code, 1, node);
      // cafe-1's live endpoint of home-1 is the resolved address
      assert.match(await sh('cafe-1', 'wg show wg0 endpoints'), /\t203\.0\.113\.40:41001$/m);
    });

    it(`after the lab moves the home to ${NEW_IP} and updates the name, every pair passes again within ${RECOVERY_LIMIT_S} s without up`, async () => {
      const moved = await labMoveSite(lab().name, 'home', NEW_IP);
      const started = Date.now();
      assert.deepEqual(moved, { site: 'home', from: '203.0.113.40', to: NEW_IP, names: ['home.dyn.example.net'] });
      assert.match(await sh('cafe-1', 'getent ahosts home.dyn.example.net'), new RegExp(`^${NEW_IP.replaceAll('.', '\\.')}\\s`, 'm'));
      let failing = await failingPairs();
      const firstFailing = failing;
      const rounds: string[] = [];
      while (failing.length > 0 && Date.now() - started < RECOVERY_LIMIT_S * 1000) {
        await new Promise((r) => setTimeout(r, 2000));
        failing = await failingPairs();
        rounds.push(`${((Date.now() - started) / 1000).toFixed(0)} s: ${failing.join(', ') || 'none'}`);
      }
      const seconds = (Date.now() - started) / 1000;
      process.stdout.write(
        `dyndns: every pair passes ${seconds.toFixed(1)} s after the move (failing right after it: ${firstFailing.join(', ') || 'none'})\n`,
      );
      assert.deepEqual(failing, [], `still failing after ${seconds.toFixed(0)} s`);
      assert.match(await sh('cafe-1', 'wg show wg0 endpoints'), new RegExp(`\\t${NEW_IP.replaceAll('.', '\\.')}:41001$`, 'm'));
      const journal = await sh(
        'cafe-1',
        'journalctl -u meshctl-reresolve@wg0.service --no-pager -o short-precise | grep -v -e Start -e Finish -e Deactivated',
      );
      process.stdout.write(`dyndns: failing pairs per round: ${rounds.join('; ')}\ndyndns: cafe-1's re-resolve journal:\n${journal}`);
      assert.match(
        journal,
        new RegExp(`home\\.dyn\\.example\\.net is now ${NEW_IP.replaceAll('.', '\\.')} .*endpoint of peer .* set again`),
      );
    });

    it('a second up after the move changes nothing (the name is still the design), and verify passes', async () => {
      const report = await up();
      assert.equal(report.result, 'converged');
      assert.equal(report.changes, 0, JSON.stringify(report.phases.map((p) => [p.id, p.nodes.map((n) => [n.node, n.changes])])));
      // the mesh already runs: the probes are skipped; verify judges the live mesh with the name as the design
      const verify = await lab().meshctl(['verify', INVENTORY, '--json']);
      assert.equal(verify.code, 0, `stdout:\n${verify.stdout.slice(-3000)}\nstderr:\n${verify.stderr.slice(-2000)}`);
    });
  },
  { name: uniqueLabName('dns') },
);
