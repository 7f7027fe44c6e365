/**
 * Q4 item 3 in the lab (inventories/four-sites.yaml): site a's public address moves under the running mesh
 * (`labMoveSite`, the router's WAN readdressed) and the inventory still says 203.0.113.10. Before: `up` skipped its
 * probes, the 9 pairs that dial a's forwards failed the ping gate and were relayed ("converged"), and `debug` blamed
 * a missing port-forward. Now:
 * - once p-1's live endpoints read a's nodes at the new address (a's nodes keep their sessions to the public nodes
 *   alive with keepalive, and WireGuard roams to them), `up` probes, STOPs at the baseline gate naming the moved
 *   address, who saw it and the fix, and changes nothing (no relay added, every config as before);
 * - `debug --pair b-1,a-1` names PUBLIC-ADDRESS-MOVED with the inventory fix, not the router's forward;
 * - with the inventory updated to the new address, `up` converges (the pairs stay direct).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describeLab } from './harness.js';
import { labMoveSite } from '../../src/lab/dns.js';

const INVENTORY = 'inventories/four-sites.yaml';
const NEW_IP = '203.0.113.99';

/** What this file reads of `up --json`: each phase's verdict and each node's checks. */
interface UpJson {
  phases: { id: string; verdict: string; nodes: { node: string; checks: { id: string; status: string; message: string }[] }[] }[];
}

describeLab('a site whose public address moved under a running mesh (four sites)', INVENTORY, (lab) => {
  const up = async () => {
    const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
    const report = JSON.parse(result.stdout) as UpJson;
    return { code: result.code, report, stderr: result.stderr };
  };
  const confs = async () => Promise.all(['a-1', 'b-1', 'c-1', 'p-1', 'p-2'].map((n) => lab().sh(n, 'sha256sum /etc/wireguard/wg0.conf')));

  it('up converges on the inventory as written', async () => {
    const first = await up();
    assert.equal(first.code, 0, first.stderr.slice(-3000));
  });

  it('after the move, up STOPs at the baseline naming the moved address, who saw it and the fix; nothing changes', async () => {
    await labMoveSite(lab().name, 'a', NEW_IP);
    // a-1's keepalive (25 s) reaches p-1 from the new address: p-1 roams a-1's endpoint there
    const deadline = Date.now() + 90_000;
    let endpoints = '';
    while (Date.now() < deadline) {
      endpoints = await lab().sh('p-1', 'wg show wg0 endpoints');
      if (endpoints.includes(`${NEW_IP}:`)) break;
      await new Promise((r) => setTimeout(r, 3000));
    }
    assert.ok(endpoints.includes(`${NEW_IP}:`), `p-1 never saw site a at ${NEW_IP}:\n${endpoints}`);
    const before = await confs();
    const started = Date.now();
    const run = await up();
    process.stderr.write(`up after the move: exit ${run.code} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    assert.equal(run.code, 1, run.stderr.slice(-3000));
    const baseline = run.report.phases.find((p) => p.id === 'baseline')!;
    assert.equal(baseline.verdict, 'STOP');
    const nat = baseline.nodes.find((n) => n.node === 'a-1')!.checks.find((c) => c.id === 'nat-mapping')!;
    process.stderr.write(`a-1 nat-mapping: ${nat.message}\n`);
    assert.equal(nat.status, 'fail');
    assert.match(nat.message, new RegExp(`public address ${NEW_IP.replaceAll('.', '\\.')}, but the inventory says 203\\.0\\.113\\.10`));
    assert.match(nat.message, /set sites\.a\.nat\.publicIp: 203\.0\.113\.99/);
    assert.match(nat.message, /on the running mesh p-\d.* see|on the running mesh p-\d sees/);
    assert.equal(run.report.phases.at(-1)!.id, 'baseline', 'no phase after the baseline ran');
    assert.deepEqual(await confs(), before, 'no wg0.conf changed');
  });

  it('debug names the moved address, not a missing forward', async () => {
    const r = await lab().meshctl(['debug', INVENTORY, '--json', '--pair', 'b-1,a-1']);
    const report = JSON.parse(r.stdout) as { diagnoses: { cause: string; summary: string; fix: string }[] };
    const causes = report.diagnoses.map((d) => d.cause);
    process.stderr.write(`debug --pair b-1,a-1: ${causes.join(', ')}: ${report.diagnoses[0]?.summary}\n`);
    assert.ok(causes.includes('public-address-moved'), causes.join(', '));
    assert.ok(!causes.includes('cold-start-blocked'), causes.join(', '));
  });

  it('verify names the moved address in the failing cold-start checks, not the target firewall', async () => {
    const r = await lab().meshctl(['verify', INVENTORY, '--json']);
    const report = JSON.parse(r.stdout) as { checks: { id: string; status: string; message: string }[] };
    const cold = report.checks.filter((c) => c.id === 'cold-start' && c.status !== 'pass' && /203\.0\.113\.10:/.test(c.message));
    assert.ok(cold.length > 0, JSON.stringify(report.checks.filter((c) => c.id === 'cold-start')).slice(0, 3000));
    for (const c of cold) assert.match(c.message, /site a's public address seems to have moved/, c.message);
  });

  it('with the inventory updated, up converges with every pair direct', async () => {
    const path = lab().inventory;
    writeFileSync(path, readFileSync(path, 'utf8').replace('publicIp: 203.0.113.10', `publicIp: ${NEW_IP}`));
    const run = await up();
    assert.equal(run.code, 0, run.stderr.slice(-3000));
    assert.doesNotMatch(JSON.stringify(run.report), /now relayed/);
  });
});
