/**
 * Underlay IPv6 (issue 11) on inventories/ipv6.yaml: two homes behind NAT with no port forward (east: e-1, west:
 * w-1) whose nodes have public IPv6 addresses, a public node with IPv4 and IPv6 (p-1) and one with IPv4 only (p-2).
 * - the lab gives IPv6 (2001:db8::/32, inside its namespaces only) to exactly the nodes with `address6`, routed
 *   by the routers without NAT;
 * - `up --yes` converges and every pair pings, e-1 <-> w-1 included (over IPv4 alone neither could dial the other),
 *   and `wg show wg0 endpoints` shows the IPv6 endpoints; p-2 (no IPv6) reaches everyone over IPv4;
 * - a second `up` changes nothing; `verify` passes, with its cold-start check passing the IPv6 directions.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab, uniqueLabName } from './harness.js';

const INVENTORY = 'inventories/ipv6.yaml';
const NODES = ['e-1', 'w-1', 'p-1', 'p-2'];

interface UpJson {
  result: string;
  changes: number;
  phases: { id: string; verdict: string; nodes: { node: string; changes: string[] }[] }[];
  matrix?: { nodes: string[]; cells: Record<string, Record<string, { ok: boolean }>> };
}

interface VerifyJson {
  checks: { id: string; node: string; peer?: string; status: string; message: string; evidence: string[] }[];
}

describeLab(
  'underlay IPv6: two NATed homes without forwards connect over IPv6',
  INVENTORY,
  (lab) => {
    const sh = (target: string, script: string) => lab().sh(target, script);
    const up = async () => {
      const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
      assert.ok(result.stdout.trim().startsWith('{'), result.stderr);
      return { report: JSON.parse(result.stdout) as UpJson, code: result.code, stderr: result.stderr };
    };

    it('gives IPv6 to exactly the nodes with address6, routed through the home routers without NAT', async () => {
      assert.match(await sh('e-1', 'ip -6 -o addr show dev eth0 scope global'), /2001:db8:61::11\/64/);
      assert.match(await sh('p-1', 'ip -6 -o addr show dev eth0 scope global'), /2001:db8:100::61\/128/);
      assert.equal((await sh('p-2', 'ip -6 -o addr show dev eth0 scope global')).trim(), '');
      assert.equal((await sh('operator', 'ip -6 -o addr show scope global')).trim(), '', 'the operator has no IPv6');
      // e-1 -> w-1 and e-1 -> p-1 over IPv6: both homes' routers route their /64, nothing is NATed
      assert.match(await sh('e-1', 'ping -6 -c1 -W3 2001:db8:62::11'), /1 received/);
      assert.match(await sh('w-1', 'ping -6 -c1 -W3 2001:db8:100::61'), /1 received/);
      assert.equal((await sh('router:east', 'ip6tables -w -t nat -S 2>/dev/null || true')).includes('MASQUERADE'), false);
      // over IPv4 the two homes cannot dial each other: no forward on either router
      assert.doesNotMatch(await sh('router:east', 'iptables -w -t nat -S PREROUTING'), /DNAT/);
      assert.doesNotMatch(await sh('router:west', 'iptables -w -t nat -S PREROUTING'), /DNAT/);
    });

    it('validate: e-1 and w-1 dial each other at [address6]:listenPort, every pair connects', async () => {
      const result = await lab().meshctl(['validate', INVENTORY, '--json']);
      assert.equal(result.code, 0, result.stderr);
      type Dial = { host: string; port: number } | null;
      const pairs = (JSON.parse(result.stdout) as { pairs: { a: string; b: string; aToB: Dial; bToA: Dial; connects: boolean }[] }).pairs;
      assert.deepEqual(
        pairs.filter((p) => !p.connects).map((p) => `${p.a}-${p.b}`),
        [],
      );
      const ew = pairs.find((p) => p.a === 'e-1' && p.b === 'w-1')!;
      assert.deepEqual(
        [ew.aToB, ew.bToA],
        [
          { host: '2001:db8:62::11', port: 51820 },
          { host: '2001:db8:61::11', port: 51820 },
        ],
      );
    });

    it('up --yes converges; every pair pings; the NATed pair talks over IPv6, p-2 over IPv4', async () => {
      const { report, code, stderr } = await up();
      assert.equal(code, 0, stderr);
      assert.equal(report.result, 'converged', stderr);
      for (const from of NODES)
        for (const to of NODES) if (from !== to) assert.ok(report.matrix!.cells[from]![to]!.ok, `${from} -> ${to} does not ping`);
      const endpoints = async (node: string) => (await sh(node, 'wg show wg0 endpoints')).trim();
      assert.match(await endpoints('e-1'), /\t\[2001:db8:62::11\]:51820$/m, 'e-1 has w-1 at its IPv6 endpoint');
      assert.match(await endpoints('w-1'), /\t\[2001:db8:61::11\]:51820$/m, 'w-1 has e-1 at its IPv6 endpoint (no NAT on the way)');
      assert.match(await endpoints('p-1'), /\t\[2001:db8:61::11\]:51820$/m);
      assert.match(await endpoints('e-1'), /\t\[2001:db8:100::61\]:51820$/m);
      // p-2 has no IPv6: it is dialled over IPv4 and sees the homes at their routers' public IPv4 addresses
      const p2 = await endpoints('p-2');
      assert.doesNotMatch(p2, /\[/);
      assert.match(p2, /\t203\.0\.113\.61:\d+$/m);
      assert.match(p2, /\t203\.0\.113\.62:\d+$/m);
      assert.match(await endpoints('e-1'), /\t198\.51\.100\.62:51820$/m);
      assert.match(await sh('e-1', 'ping -c1 -W3 172.27.60.21'), /1 received/);
    });

    it('a second up changes nothing', async () => {
      const { report, code, stderr } = await up();
      assert.equal(code, 0, stderr);
      assert.equal(report.result, 'converged');
      assert.equal(report.changes, 0, JSON.stringify(report.phases.map((p) => p.nodes.filter((n) => n.changes.length))));
    });

    it('verify passes: the IPv6 directions pass cold start; the firewall check finds nothing that filters IPv6', async () => {
      const result = await lab().meshctl(['verify', INVENTORY, '--json', '--all-checks']);
      const report = JSON.parse(result.stdout) as VerifyJson;
      const failing = report.checks.filter((c) => c.status === 'fail').map((c) => `${c.node} ${c.id} ${c.peer ?? ''}: ${c.message}`);
      assert.deepEqual(failing, []);
      assert.equal(result.code, 0, result.stderr);
      const cold = (from: string, to: string) => report.checks.find((c) => c.id === 'cold-start' && c.node === from && c.peer === to);
      for (const [from, to] of [
        ['e-1', 'w-1'],
        ['w-1', 'e-1'],
        ['p-1', 'e-1'],
        ['e-1', 'p-1'],
      ] as const) {
        assert.equal(cold(from, to)?.status, 'pass', `${from}->${to}: ${cold(from, to)?.message}`);
        assert.match(cold(from, to)!.message, /\[2001:db8:/);
      }
      assert.equal(cold('p-2', 'e-1'), undefined, 'p-2 cannot dial e-1');
      const firewall = (node: string) => report.checks.find((c) => c.id === 'firewall' && c.node === node)!;
      assert.equal(firewall('p-2').status, 'pass', firewall('p-2').message);
      // the lab's nodes filter nothing, IPv6 included: the IPv6 path passes because no chain could drop it
      assert.equal(firewall('w-1').status, 'pass', firewall('w-1').message);
      assert.ok(
        firewall('w-1').evidence.some((e) => /^IPv6 \(e-1, p-1 dial over it\): no ip6tables/.test(e)),
        firewall('w-1').evidence.join(' | '),
      );
      const endpointDrift = report.checks.filter((c) => c.id === 'endpoint' && c.status !== 'pass');
      assert.deepEqual(
        endpointDrift.map((c) => `${c.node}: ${c.message}`),
        [],
      );
    });
  },
  { name: uniqueLabName('v6') },
);
