/**
 * Relays in one lab of inventories/four-sites.yaml (b-2 <-> c-1 is relayed via p-2 there), the faults a new user
 * found (Q4's findings 1 and 2):
 * - a relay LEG breaks (UDP b-2 <-> p-2 dropped on site b's router): relay: auto relays that leg via p-1 and must move
 *   b-2 <-> c-1 off p-2 too (it used to stay "via p-2", and b-2's config then had no route to c-1 at all); every pair
 *   pings, and `debug` on the pair does not crash (it exited 70, a TypeError);
 * - a relay that stops relaying (b-2 given `relay: p-1`, so p-2 relays nothing): `up` removes p-2's relay rule,
 *   which the restart on the new file left behind (its PreDown has no relay lines), leaves wg0's forwarding as a fresh
 *   device gets it (conf.default.forwarding, 1 here: RV3 F4), and a second run changes nothing.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describeLab, uniqueLabName } from './harness.js';

const NODES = ['a-1', 'a-2', 'a-3', 'b-1', 'b-2', 'c-1', 'p-1', 'p-2'];

interface UpJson {
  result: string;
  changes: number;
  stoppedAt?: string;
  matrix?: { cells: Record<string, Record<string, { ok: boolean }>> };
  fallbackRelays?: { pairs: string[]; relayedAtGate: string[]; backToDirect: string[] };
  plan?: { phases: { nodes: { node: string; actions: { changes: { kind: string }[] }[] }[] }[] };
}

describeLab(
  'relay legs and relays that stop relaying',
  'inventories/four-sites.yaml',
  (lab) => {
    const sh = (target: string, script: string) => lab().sh(target, script);
    const up = async (inventory: string) => {
      const run = await lab().meshctl(['up', inventory, '--yes', '--json']);
      const report = JSON.parse(run.stdout) as UpJson;
      assert.equal(run.code, 0, `${report.result} at ${report.stoppedAt}: ${run.stderr.slice(-800)}`);
      return report;
    };
    const everyPairPings = (report: UpJson) => {
      for (const from of NODES) for (const to of NODES) if (from !== to) assert.ok(report.matrix!.cells[from]![to]!.ok, `${from} -> ${to}`);
    };

    it('a relay leg that breaks: the leg and the pairs relayed over it move to a relay that works; debug judges', async () => {
      const inventory = lab().inventory;
      everyPairPings(await up(inventory));
      // b-2 (192.168.20.12, behind site b's NAT) and p-2 (198.51.100.12) no longer reach each other over UDP
      const drop = (op: '-I' | '-D') =>
        sh(
          'router:b',
          `iptables -w ${op} FORWARD -s 192.168.20.12 -d 198.51.100.12 -p udp -j DROP && iptables -w ${op} FORWARD -s 198.51.100.12 -d 192.168.20.12 -p udp -j DROP`,
        );
      await drop('-I');
      try {
        const fell = await up(inventory);
        assert.equal(fell.result, 'converged');
        assert.deepEqual(fell.fallbackRelays?.pairs, ['b-2 p-2']);
        everyPairPings(fell);
        // b-2 routes c-1 (172.27.40.31) through p-1 now, as it routes p-2 (Q4: no AllowedIPs for c-1 at all)
        const allowed = await sh('b-2', 'wg show wg0 allowed-ips');
        assert.match(allowed, /172\.27\.40\.31\/32/, allowed);
        const verify = JSON.parse((await lab().meshctl(['verify', inventory, '--json', '--no-mtu'])).stdout) as {
          paths: { a: string; b: string; kind: string; via?: string }[];
        };
        assert.deepEqual(
          verify.paths.filter((p) => p.a === 'b-2' && (p.b === 'c-1' || p.b === 'p-2')).map((p) => `${p.b} ${p.kind} ${p.via}`),
          ['c-1 relayed p-1', 'p-2 relayed p-1'],
        );
        const debug = await lab().meshctl(['debug', inventory, '--pair', 'b-2,c-1']);
        assert.notEqual(debug.code, 70, debug.stderr);
        assert.doesNotMatch(debug.stderr, /internal error/);
      } finally {
        await drop('-D');
      }
      const back = await up(inventory);
      assert.deepEqual(back.fallbackRelays?.backToDirect, ['b-2 p-2']);
      everyPairPings(back);
    });

    it('a relay that stops relaying loses its relay rule, and a second up changes nothing', async () => {
      const base = lab().inventory;
      const moved = base.replace(/\.yaml$/, '-b2-via-p1.yaml');
      writeFileSync(moved, readFileSync(base, 'utf8').replace('  b-2:\n    site: b\n', '  b-2:\n    site: b\n    relay: p-1\n'));
      assert.match(await sh('p-2', 'iptables -w -S'), /meshctl-fwd-wg0/, 'p-2 relays b-2 <-> c-1 before');
      // a host whose new devices forward (conf.default.forwarding=1, as net.ipv4.ip_forward=1 sets it: a Docker host):
      // the restarted wg0 forwards, and the removal must leave it so, as on a node that never relayed (RV3 F4)
      await sh('p-2', 'sysctl -q -w net.ipv4.conf.default.forwarding=1');
      const report = await up(moved).finally(() => sh('p-2', 'sysctl -q -w net.ipv4.conf.default.forwarding=0'));
      assert.equal((await sh('p-2', 'cat /proc/sys/net/ipv4/conf/wg0/forwarding')).trim(), '1', "wg0's forwarding as a fresh device's");
      everyPairPings(report);
      const p2 = report.plan!.phases.flatMap((p) =>
        p.nodes.filter((n) => n.node === 'p-2').flatMap((n) => n.actions.flatMap((a) => a.changes)),
      );
      // the role switched off on the running interface (Q8 F-relay-restart: it restarted wg-quick on p-2), its rule
      // removed as the relay's tear-down
      assert.ok(p2.some((c) => c.kind === 'relay-off') && !p2.some((c) => c.kind === 'restart'), JSON.stringify(p2));
      assert.doesNotMatch(await sh('p-2', 'iptables -w -S'), /meshctl-fwd-wg0/, "p-2's FORWARD jump and chain are gone");
      const verify = JSON.parse((await lab().meshctl(['verify', moved, '--json', '--no-mtu'])).stdout) as {
        checks: { node: string; id: string; status: string; message: string }[];
      };
      assert.deepEqual(
        verify.checks.filter((c) => c.node === 'p-2' && c.id === 'relay'),
        [],
      );
      assert.equal((await up(moved)).changes, 0, 'a second up changes nothing');
    });
  },
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('rlg') },
);
