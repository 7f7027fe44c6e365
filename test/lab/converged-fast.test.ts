/**
 * Issue 10, a second `up` with nothing to change, on the homelab lab: the cold run's fresh pairs pass the ping round
 * at its 0.05 s echo interval (first handshakes included); the run lock's release is started and not waited for,
 * yet no lock of a run that ended is left on any node, and an `up` started right after the previous one returned is
 * not refused. Counts and order are asserted, never durations.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab } from './harness.js';
import { LOCK_PATH } from '../../src/engine/lock.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];

interface UpJson {
  result: string;
  changes: number;
  pingAhead?: boolean;
  roundTrips: Record<string, number>;
  channels?: Record<string, Record<string, number>>;
  matrix?: { nodes: string[]; cells: Record<string, Record<string, { ok: boolean; transmitted: number; received: number }>> };
}

describeLab('a converged up on the homelab lab: ping interval, lock release', INVENTORY, (lab) => {
  const up = async () => {
    const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
    assert.equal(result.code, 0, `${result.stdout.slice(0, 2000)}\n${result.stderr}`);
    return JSON.parse(result.stdout) as UpJson;
  };
  /** the nodes where a run lock file is there right now */
  const locked = async () => {
    const held: string[] = [];
    for (const node of NODES) if ((await lab().exec(node, ['test', '-e', LOCK_PATH])).code === 0) held.push(node);
    return held;
  };

  it('a cold up on fresh nodes: every pair passes the 0.05 s ping round (first handshakes included)', async () => {
    const report = await up();
    assert.equal(report.result, 'converged');
    assert.ok(report.changes > 0);
    for (const from of NODES)
      for (const to of NODES.filter((n) => n !== from)) {
        const cell = report.matrix!.cells[from]![to]!;
        assert.ok(cell.ok && cell.received >= 3, `${from} -> ${to}: ${JSON.stringify(cell)}`);
      }
  });

  it('second and third up back to back: converged, one round trip per node, and no lock left on any node after either', async () => {
    for (let run = 0; run < 2; run++) {
      const report = await up();
      // started right after the previous run returned: its release may still be landing; never 'locked'
      assert.equal(report.result, 'converged', `run ${run + 2}`);
      assert.equal(report.changes, 0);
      assert.equal(report.pingAhead, true);
      assert.deepEqual(Object.values(report.roundTrips), [1, 1, 1, 1], JSON.stringify(report.roundTrips));
      assert.deepEqual(
        NODES.map((n) => report.channels?.facts?.[n]),
        [1, 1, 1, 1],
      );
      // the release was started before up returned; it removes the lock on the node a moment later
      let held = await locked();
      for (let i = 0; i < 100 && held.length > 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        held = await locked();
      }
      assert.deepEqual(held, [], `a lock of a run that ended is left on ${held.join(', ')}`);
    }
  });
});
