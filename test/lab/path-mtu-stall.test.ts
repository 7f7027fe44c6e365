/**
 * Path MTU under load (docs/ping-round.md, "Path MTU under load"): a node whose WireGuard is held up for a second or
 * more at a time (wireguard-go on a busy host) answers its pings, and its pairs' path MTU passes too; an MTU black
 * hole on the underlay still fails path MTU, held-up node or not.
 *
 * The hold-up is wk-2's wireguard-go stopped (SIGSTOP) 3 s of every 3.5 s while verify runs: every packet it carries
 * waits up to 3 s (in the 32-node lab, 1.5 s of every 2 s on a loaded host did as much, and its full tun queue
 * dropped some). Before the change, the expected 1392-byte DF probe got
 * two tries of 1 s each and then a binary search: pairs of the 32-node lab's held-up node failed path MTU with
 * "largest payload 1391" while their pings passed.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab } from './harness.js';
import type { Check } from '../../src/checks/verify.js';
import type { Matrix } from '../../src/checks/ping-matrix.js';

const INVENTORY = 'inventories/homelab.yaml';
const HELD = 'wk-2';
const BLACK_HOLE = 'FORWARD -p udp -m length --length 1300:65535 -j DROP';

interface VerifyJson {
  exitCode: number;
  checks: Check[];
  matrix: Matrix;
}

describeLab(
  'path MTU with a held-up node, and a real black hole',
  INVENTORY,
  (lab) => {
    const verify = async () => {
      const r = await lab().meshctl(['verify', INVENTORY, '--json', '--all-checks']);
      assert.ok(r.stdout.trim().startsWith('{'), `verify printed no JSON: ${r.stderr}`);
      return JSON.parse(r.stdout) as VerifyJson;
    };
    /** wk-2's wireguard-go stopped 3 s of every 3.5 s for `seconds`, in the background; resolves once it began */
    const holdUp = (seconds: number) =>
      lab().sh(
        HELD,
        [
          'pid=$(pidof wireguard-go) || exit 1',
          `( end=$(($(date +%s) + ${seconds})); while [ $(date +%s) -lt $end ]; do kill -STOP $pid; sleep 3; kill -CONT $pid; sleep 0.5; done; kill -CONT $pid ) </dev/null >/dev/null 2>&1 &`,
          'echo $! > /run/meshctl-test-holdup.pid',
        ].join('\n'),
      );
    const release = () =>
      lab().sh(
        HELD,
        'kill "$(cat /run/meshctl-test-holdup.pid)" 2>/dev/null; rm -f /run/meshctl-test-holdup.pid; kill -CONT "$(pidof wireguard-go)"',
      );
    const pathMtuFails = (report: VerifyJson) => report.checks.filter((c) => c.id === 'path-mtu' && c.status === 'fail');
    const held = (report: VerifyJson) =>
      report.matrix.nodes.flatMap((a) =>
        report.matrix.nodes.filter((b) => b !== a && (a === HELD || b === HELD)).map((b) => report.matrix.cells[a]?.[b]),
      );

    it('brings the mesh up', async () => {
      const r = await lab().meshctl(['up', INVENTORY, '--yes']);
      assert.equal(r.code, 0, `up failed:\n${r.stdout}\n${r.stderr}`);
    });

    it(`${HELD}'s WireGuard held up 3 s of every 3.5 s: its pairs that answer the ping pass path MTU`, async () => {
      // verify's ping round falls at one moment of the hold-up cycle for every pair at once: each run starts at a
      // random point of it, until one run's round fell in a stop long enough to fail a first DF try (not vacuous)
      await holdUp(150);
      const runs: VerifyJson[] = [];
      try {
        for (let attempt = 0; attempt < 5; attempt++) {
          await new Promise((r) => setTimeout(r, Math.random() * 3500));
          const report = await verify();
          runs.push(report);
          // a pair whose ping passed passes path MTU (a pair whose ping failed is the ping check's, not judged here)
          const wrongly = pathMtuFails(report).filter((c) => report.matrix.cells[c.node]?.[c.peer ?? '']?.ok);
          assert.deepEqual(wrongly, [], JSON.stringify(wrongly.map((c) => [c.node, c.peer, report.matrix.cells[c.node]?.[c.peer ?? '']])));
          if (held(report).some((c) => c?.pmtu && c.pmtu.tries.length > 1)) break;
        }
      } finally {
        await release();
      }
      assert.ok(
        held(runs.at(-1)!).some((c) => c?.pmtu && c.pmtu.tries.length > 1),
        `no run's first DF try of a pair with ${HELD} fell in a stop: ${JSON.stringify(runs.map((r) => held(r).map((c) => c?.pmtu?.tries)))}`,
      );
    });

    it('an MTU black hole on the underlay (UDP over 1300 bytes dropped), the node still held up: path MTU fails', async () => {
      await lab().sh('internet', `iptables -w -I ${BLACK_HOLE}`);
      await holdUp(90);
      let report: VerifyJson;
      try {
        report = await verify();
      } finally {
        await release();
        await lab().sh('internet', `iptables -w -D ${BLACK_HOLE}`);
      }
      assert.equal(report.exitCode, 1);
      // every pair with ctb-edge-1 crosses the internet namespace; the home LAN's pairs do not
      const failed = new Set(pathMtuFails(report).map((c) => `${c.node} ${c.peer}`));
      for (const node of ['ms-1', 'wk-1', 'wk-2']) {
        assert.ok(failed.has(`${node} ctb-edge-1`), `${node} -> ctb-edge-1: ${JSON.stringify([...failed])}`);
        assert.ok(failed.has(`ctb-edge-1 ${node}`), `ctb-edge-1 -> ${node}: ${JSON.stringify([...failed])}`);
      }
      assert.ok(
        [...failed].every((pair) => pair.includes('ctb-edge-1')),
        JSON.stringify([...failed]),
      );
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
