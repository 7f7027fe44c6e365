/**
 * The underlay probes' pacing (issue 10) on a fresh lab of the reference design (inventories/homelab.yaml: three
 * forwards into a NAT site, one public node): on a correct mesh the senders start when the watchers listen and the
 * probes end once every datagram has arrived where it should, so the cold `up`'s baseline phase takes less than the
 * probes' 2 s watch window, which the fixed window alone cost before. The wrong-forward STOPs are test/lab/sites.test.ts.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';

interface UpJson {
  result: string;
  phases: {
    id: string;
    verdict: string;
    durationMs: number;
    nodes: { node: string; checks: { id: string; status: string; message: string }[] }[];
  }[];
}

describeLab('underlay probe pacing on the homelab lab', INVENTORY, (lab) => {
  it('a correct mesh: every forward and the NAT mapping pass, and the whole baseline phase takes less than the 2 s window', async () => {
    const result = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as UpJson;
    const baseline = report.phases.find((p) => p.id === 'baseline')!;
    assert.equal(baseline.verdict, 'GO');
    const probes = baseline.nodes.flatMap((n) =>
      n.checks.filter((c) => c.id === 'forward-reaches-node' || c.id === 'nat-mapping').map((c) => ({ node: n.node, ...c })),
    );
    assert.equal(probes.length, 8);
    for (const check of probes) assert.equal(check.status, 'pass', `${check.node} ${check.id}: ${check.message}`);
    assert.match(probes.find((c) => c.node === 'wk-1' && c.id === 'forward-reaches-node')!.message, /reaches wk-1$/);
    // the fixed window made this at least 2 s (2.4 s at 4 nodes in docs/bench.md); now a few tenths on a quiet machine
    assert.ok(baseline.durationMs < 2000, `baseline took ${baseline.durationMs} ms`);
    console.log(`# baseline phase ${baseline.durationMs} ms`);
  });
});
