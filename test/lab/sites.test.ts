/**
 * Many sites in one lab (issue 11, first half) on inventories/four-sites.yaml: a NAT site whose forwards' external
 * ports differ from the listen ports, a NAT site with no forward, a carrier NAT site two NATs deep, two public nodes.
 * - the lab builds the double NAT (the carrier's public IP is what a public node sees from site c);
 * - the port-forward probe catches a forward that lands on the wrong node and one that lands nowhere, at the
 *   baseline gate, before anything is installed or any config is pushed;
 * - `up --yes` brings every pair to a passing ping: the pairs validate lists without a direct path (b x c) go
 *   through a relay (issue 11, test/lab/relay.test.ts); its baseline gate shows each site's public address and
 *   NAT mapping as discovered through the two public nodes (a: endpoint-independent; b and c: symmetric).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/four-sites.yaml';
const NODES = ['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'c-1', 'p-1', 'p-2'];

interface UpJson {
  result: string;
  stoppedAt?: string;
  phases: { id: string; verdict: string; nodes: { node: string; checks: { id: string; status: string; message: string }[] }[] }[];
  matrix?: { nodes: string[]; cells: Record<string, Record<string, { ok: boolean }>> };
}

interface ValidateJson {
  pairs: { a: string; b: string; connects: boolean }[];
}

describeLab('many sites: double NAT, forwards with other ports, the port-forward probe, NAT discovery', INVENTORY, (lab) => {
  const sh = (target: string, script: string) => lab().sh(target, script);
  /** Replaces rule NUMBER of site a's DNAT chain (rules are in the order of the inventory's forwards). */
  const forward = (rule: number, port: number, to: string) =>
    lab().exec('router:a', [
      'iptables',
      '-w',
      '-t',
      'nat',
      '-R',
      'PREROUTING',
      String(rule),
      '-i',
      'wan',
      '-d',
      '203.0.113.10',
      '-p',
      'udp',
      '--dport',
      String(port),
      '-j',
      'DNAT',
      '--to-destination',
      to,
    ]);

  it('builds site c two NATs deep: the router has a shared-space WAN, the world sees the carrier', async () => {
    assert.match(await sh('router:c', 'ip -4 -o addr show dev wan'), /100\.64\.0\.2\/24/);
    assert.match(await sh('carrier:c', 'ip -4 -o addr show dev wan'), /203\.0\.113\.30\/32/);
    assert.match(await sh('c-1', 'ping -c1 -W3 198.51.100.11'), /1 received/);
    const conntrack = await sh('carrier:c', 'iptables -w -t nat -L POSTROUTING -v -n');
    assert.match(conntrack, /MASQUERADE.*100\.64\.0\.0\/24/);
    assert.match(conntrack, /^\s*[1-9]\d*\s+\S+\s+MASQUERADE/m, 'c-1 went out through the carrier');
    // site a's router preserves ports (endpoint-independent), b's randomises them
    assert.doesNotMatch(await sh('router:a', 'iptables -w -t nat -S POSTROUTING'), /random-fully/);
    assert.match(await sh('router:b', 'iptables -w -t nat -S POSTROUTING'), /random-fully/);
  });

  it('stops at the baseline gate on a forward to the wrong node and one to nowhere, before anything is pushed', async () => {
    assert.equal((await forward(1, 41001, '192.168.10.12:51820')).code, 0); // a-1's forward lands on a-2
    assert.equal((await forward(2, 41002, '192.168.10.99:51820')).code, 0); // a-2's forward lands on no node
    try {
      const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
      assert.equal(result.code, 1, result.stderr);
      const report = JSON.parse(result.stdout) as UpJson;
      assert.equal(report.stoppedAt, 'baseline');
      const probe = (node: string) =>
        report.phases
          .find((p) => p.id === 'baseline')!
          .nodes.find((n) => n.node === node)!
          .checks.find((c) => c.id === 'forward-reaches-node')!;
      assert.equal(probe('a-1').status, 'fail');
      assert.match(
        probe('a-1').message,
        /203\.0\.113\.10:41001 should reach a-1 .* lands on a-2 .*fix .*UDP 41001 -> 192\.168\.10\.11:51820/,
      );
      assert.equal(probe('a-2').status, 'fail');
      assert.match(probe('a-2').message, /203\.0\.113\.10:41002 reaches no node of site a .*UDP 41002 -> 192\.168\.10\.12:51820/);
      assert.equal(probe('a-3').status, 'pass', probe('a-3').message); // 41003 -> :51830, external port != listen port
      for (const node of NODES.filter((n) => !n.startsWith('a-'))) assert.equal(probe(node).status, 'pass');
      // nothing was installed or pushed anywhere
      for (const node of NODES) {
        assert.equal((await lab().exec(node, ['test', '-e', '/etc/wireguard/wg0.conf'])).code, 1, `${node} has a config`);
        assert.equal((await lab().exec(node, ['test', '-e', '/usr/bin/wg'])).code, 1, `${node} has wg installed`);
      }
    } finally {
      await forward(1, 41001, '192.168.10.11:51820');
      await forward(2, 41002, '192.168.10.12:51820');
    }
  });

  it('up --yes: every pair pings, the pairs validate finds no direct path for through a relay', async () => {
    const validate = await lab().meshctl(['validate', INVENTORY, '--json']);
    const noPath = (JSON.parse(validate.stdout) as ValidateJson).pairs
      .filter((p) => !p.connects)
      .map((p) => `${p.a}-${p.b}`)
      .sort();
    assert.deepEqual(noPath, ['b-1-c-1', 'b-2-c-1']);

    const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
    const report = JSON.parse(result.stdout) as UpJson;
    assert.equal(report.result, 'converged', result.stderr);
    const baseline = report.phases.find((p) => p.id === 'baseline')!;
    assert.equal(baseline.verdict, 'GO');
    // NAT discovery through p-1 and p-2: every site's real public address, and its mapping
    const mapping = (name: string) => baseline.nodes.find((n) => n.node === name)!.checks.find((c) => c.id === 'nat-mapping')!.message;
    for (const name of ['a-1', 'a-2', 'a-3'])
      assert.match(mapping(name), /^site a: public address 203\.0\.113\.10 \(as in the inventory\); endpoint-independent/);
    for (const name of ['b-1', 'b-2']) assert.match(mapping(name), /^site b: public address 203\.0\.113\.20 .*; symmetric mapping/);
    assert.match(mapping('c-1'), /^site c: public address 203\.0\.113\.30 .*; symmetric mapping/);
    const failing = new Set<string>();
    for (const from of NODES)
      for (const to of NODES) {
        if (from === to) continue;
        const cell = report.matrix!.cells[from]![to]!;
        if (!cell.ok) failing.add([from, to].sort().join('-'));
      }
    assert.deepEqual([...failing], [], 'no pair fails: those without a direct path are relayed');
    // the pairs that need site a's forwards (external port != listen port) work: b and c dialled a at 41001-41003
    const a3 = await sh('a-3', 'wg show wg0 endpoints');
    assert.match(a3, /\t(203\.0\.113\.20|203\.0\.113\.30):\d+/, 'a-3 learned b or c at their public (carrier) address');
  });
});
