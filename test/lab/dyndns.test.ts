/**
 * Dynamic public addresses (issue 11): a home addressed by a DNS name (nat.publicHost) in
 * inventories/dynamic-dns.yaml, with the lab's own DNS server (dnsmasq in the internet
 * namespace; src/lab/dns.ts).
 * - `up` converges with the name as the endpoint in every config that dials the home, and installs the re-resolve
 *   timer on every node that dials a peer (here all four: the home's nodes dial each other and edge-1 by address);
 * - the lab moves the home to a new public IP and updates the name (labMoveSite); without `up`, every pair passes
 *   again within 120 s (the time is measured and printed). cafe-1 needs its timer for that: it dials the home and the
 *   home cannot dial it (cafe has no forward), so nothing else would ever tell cafe-1 the new address;
 * - a second `up` after the move changes nothing (the configs still say the name; NAT discovery and the forward
 *   probe resolve it on the nodes and find the new address);
 * - the home router's case (test/lab/relay.test.ts, found with a-1 and p-2): home-1 dials edge-1 and keeps the flow
 *   in the router's conntrack; edge-1 restarts and dials home-1's forward, the clash gets a new source port from
 *   nf_nat and home-1 roams edge-1 to it; after the router forgets its entries (`conntrack -F`, as a reboot) home-1
 *   loses every ping to edge-1. The timer's script leaves the roamed endpoint alone while its handshake is fresh and
 *   sets it back once it is stale (run by hand with a short STALE_SECONDS instead of waiting 180 s), and pings pass.
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

    it('up converges with the name as the endpoint; the re-resolve timer runs on every node that dials a peer', async () => {
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
      for (const node of NODES) {
        assert.equal((await sh(node, 'systemctl is-active meshctl-reresolve@wg0.timer')).trim(), 'active', node);
        assert.match(
          await sh(node, 'systemctl list-timers --no-pager'),
          /\smeshctl-reresolve@wg0\.timer\s+meshctl-reresolve@wg0\.service$/m,
          node,
        );
      }
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

    it('a roamed endpoint that the home router forgot is set back once its handshake is stale, and pings pass', async () => {
      const edgeKey = (await sh('edge-1', 'wg show wg0 public-key')).trim();
      const endpointOfEdge = async () => (await sh('home-1', `wg show wg0 endpoints | awk -v k=${edgeKey} '$1 == k { print $2 }'`)).trim();
      const received = async (count: number) =>
        Number(
          /(\d+) received/.exec(
            (await lab().exec('home-1', ['ping', '-c', String(count), '-i', '0.5', '-W', '1', OVERLAY['edge-1']!])).stdout,
          )?.[1],
        );
      const reresolve = (...args: string[]) => sh('home-1', ['/usr/local/lib/meshctl/reresolve-endpoints', 'wg0', ...args].join(' '));
      // the router tracks home-1's own flow to edge-1 (home-1 speaks first, as its keepalive does after up)
      await sh('router:home', 'conntrack -F');
      assert.equal(await received(2), 2);
      assert.equal(await endpointOfEdge(), '198.51.100.40:51820');
      // edge-1 restarts (a public node's reboot) and dials home-1's forward first: nf_nat gives it a new source port
      await sh('edge-1', `systemctl restart wg-quick@wg0 && ping -c 2 -W 2 ${OVERLAY['home-1']}`);
      // past edge-1's passive keepalive (KEEPALIVE_TIMEOUT 10 s), which still goes through the clashing entry
      await new Promise((r) => setTimeout(r, 12_000));
      const roamed = await endpointOfEdge();
      assert.match(roamed, /^198\.51\.100\.40:(\d+)$/);
      assert.notEqual(roamed, '198.51.100.40:51820', 'home-1 roamed edge-1 to the port the router gave');
      // fresh handshake: the timer's script (default age) leaves the roamed endpoint alone
      assert.equal(await reresolve(), '');
      assert.equal(await endpointOfEdge(), roamed);
      // the router forgets every flow: the roamed port is dead, and edge-1 (public, no keepalive) never speaks first
      await sh('router:home', 'conntrack -F');
      assert.equal(await received(4), 0, "home-1 loses every ping to edge-1 after the router's conntrack flush");
      assert.equal(await reresolve(), '', 'still fresh by the default age');
      // by hand with a short age instead of waiting REJECT_AFTER_TIME: set back to the configured endpoint
      const out = await reresolve('3');
      process.stdout.write(`dyndns: home-1's edge-1 roamed to ${roamed}; after the flush: ${out}`);
      assert.match(
        out,
        new RegExp(
          `^wg0: peer \\S+: latest handshake \\d+ s ago, live endpoint ${roamed.replaceAll('.', '\\.')} is not the configured 198\\.51\\.100\\.40:51820: set back$`,
          'm',
        ),
      );
      assert.equal(await endpointOfEdge(), '198.51.100.40:51820');
      assert.equal(await received(3), 3, 'home-1 reaches edge-1 again');
      assert.equal(await reresolve('3'), '', 'nothing more to set back');
    });
  },
  { name: uniqueLabName('dns') },
);
