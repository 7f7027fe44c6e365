/**
 * --control-persist on the homelab lab: after a cold `up`, `up --control-persist 30` twice then `verify --control-persist 30`
 * (three separate meshctl processes in the lab's operator namespace) log in to each node once in total: the later runs
 * borrow the first one's connections from the background master. Logins are counted in each node's own sshd journal
 * ("Accepted publickey"), so nothing of meshctl's is trusted for the count. The master is ended at the end (and in
 * `after` whatever happened). Counts only, no durations.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab } from './harness.js';
import { controlMasters, endControlMasters } from '../../scripts/bench/control-master.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];

/** The control directory of this file's runs (meshctlInOperator passes this process's environment on). */
const controlDir = mkdtempSync(join(tmpdir(), 'meshctl-cm-lab-'));
process.env.MESHCTL_CONTROL_DIR = join(controlDir, 'cm');

/** Masters serving a socket in this file's control directory, found by their command line (as the bench finds its own). */
const masters = () => controlMasters(controlDir);
const end = (signal: NodeJS.Signals) => endControlMasters(controlDir, signal);

after(() => {
  end('SIGKILL');
  rmSync(controlDir, { recursive: true, force: true });
});

describeLab('--control-persist on the homelab lab', INVENTORY, (lab) => {
  /** SSH logins each node's sshd has accepted so far, from its journal */
  const logins = async () => {
    const counts: Record<string, number> = {};
    for (const node of NODES)
      counts[node] = Number((await lab().sh(node, 'journalctl -u ssh --no-pager -o cat | grep -c "Accepted publickey" || true')).trim());
    return counts;
  };

  it('two more `up` and a `verify` with --control-persist 30 log in to each node once in total; the master ends', async () => {
    const cold = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
    assert.equal(cold.code, 0, cold.stderr);
    assert.deepEqual(masters(), [], 'no master without the flag');
    const before = await logins();

    const up = await lab().meshctl(['up', INVENTORY, '--yes', '--json', '--control-persist', '30']);
    assert.equal(up.code, 0, up.stderr);
    const report = JSON.parse(up.stdout) as { changes: number; reusedConnections?: string[] };
    assert.equal(report.changes, 0);
    assert.deepEqual(report.reusedConnections, [], 'the first run with the flag opens its connections in the master');
    assert.equal(masters().length, 1, 'one master holds the connections after the run');
    const again = await lab().meshctl(['up', INVENTORY, '--yes', '--json', '--control-persist', '30']);
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual((JSON.parse(again.stdout) as { reusedConnections?: string[] }).reusedConnections, NODES, 'the next one borrows them');
    const verify = await lab().meshctl(['verify', INVENTORY, '--json', '--control-persist', '30']);
    assert.equal(verify.code, 0, `${verify.stdout.slice(0, 2000)}\n${verify.stderr}`);
    assert.doesNotMatch(`${up.stderr}${verify.stderr}`, /control-persist/, 'no fallback warning');

    const afterRuns = await logins();
    for (const node of NODES) assert.equal(afterRuns[node]! - before[node]!, 1, `${node}: logins ${before[node]} -> ${afterRuns[node]}`);

    end('SIGTERM');
    for (let i = 0; i < 200 && masters().length > 0; i++) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(masters(), [], 'the master ended');
    assert.deepEqual(readdirSync(process.env.MESHCTL_CONTROL_DIR!), [], 'and removed its socket');
  });
});
