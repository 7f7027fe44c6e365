/**
 * Issue 8, kind 10: a lasting cause is named. A later sysctl file (/etc/sysctl.d/99-zz-hardening.conf) sets
 * rp_filter strict for all and default, and is applied as a boot would apply it; `verify` must warn and name the file
 * (old code passed: wg0 stayed loose, so the effective value was loose), and `up` must name it in its config phase
 * while still restoring loose now (old code re-applied loose silently).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const HARDENING = '/etc/sysctl.d/99-zz-hardening.conf';

interface VerifyJson {
  checks: { node: string; id: string; status: string; message: string; evidence?: string[] }[];
}
interface UpJson {
  result: string;
  phases: { id: string; nodes: { node: string; changes: string[]; warnings?: string[] }[] }[];
}

describeLab('a later sysctl file that makes rp_filter strict is named (issue 8, kind 10)', INVENTORY, (lab) => {
  const sh = async (node: string, script: string) => (await lab().sh(node, script)).trim();

  it('builds the mesh, then the hardening file is applied on wk-1 with wg0 still loose', async () => {
    const r = await lab().meshctl(['up', INVENTORY, '--yes']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await sh(
      'wk-1',
      `printf 'net.ipv4.conf.all.rp_filter=1\\nnet.ipv4.conf.default.rp_filter = 1\\n' > ${HARDENING}; sysctl -q -p ${HARDENING}`,
    );
    assert.equal(await sh('wk-1', 'cat /proc/sys/net/ipv4/conf/default/rp_filter /proc/sys/net/ipv4/conf/wg0/rp_filter'), '1\n2');
  });

  it('verify warns on wk-1 and names the file; other nodes pass rp-filter', async () => {
    const r = await lab().meshctl(['verify', INVENTORY, '--json']);
    const report = JSON.parse(r.stdout) as VerifyJson;
    const rp = report.checks.filter((c) => c.id === 'rp-filter');
    const wk1 = rp.find((c) => c.node === 'wk-1')!;
    assert.equal(wk1.status, 'warn', JSON.stringify(wk1));
    assert.match(wk1.message, /99-zz-hardening\.conf sets net\.ipv4\.conf\.all\.rp_filter = 1 after 99-wireguard\.conf/);
    assert.ok(
      wk1.evidence?.some((e) => /default\.rp_filter is strict \(1\)/.test(e)),
      JSON.stringify(wk1.evidence),
    );
    assert.ok(wk1.evidence?.some((e) => e.includes(`${HARDENING} sets net.ipv4.conf.default.rp_filter = 1`)));
    for (const c of rp.filter((c) => c.node !== 'wk-1')) assert.equal(c.status, 'pass', JSON.stringify(c));
  });

  it('up warns in the config phase naming the file, restores loose now, and a rerun changes nothing more', async () => {
    const r = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const report = JSON.parse(r.stdout) as UpJson;
    const config = report.phases.find((p) => p.id === 'config')!;
    const warnings = config.nodes.find((n) => n.node === 'wk-1')?.warnings ?? [];
    assert.ok(
      warnings.includes(
        `${HARDENING} sets net.ipv4.conf.all.rp_filter = 1 after 99-wireguard.conf: rp_filter will be strict again after a reboot`,
      ),
      JSON.stringify(warnings),
    );
    assert.ok(config.nodes.filter((n) => n.node !== 'wk-1').every((n) => !n.warnings?.length));
    assert.equal(await sh('wk-1', 'cat /proc/sys/net/ipv4/conf/all/rp_filter /proc/sys/net/ipv4/conf/default/rp_filter'), '2\n2');
    // the file still wins at boot: the warning stays, and nothing is changed again
    const again = JSON.parse((await lab().meshctl(['up', INVENTORY, '--yes', '--json'])).stdout) as UpJson & { changes: number };
    assert.equal(again.changes, 0, JSON.stringify(again.phases.map((p) => p.nodes.map((n) => n.changes))));
    assert.ok(again.phases.find((p) => p.id === 'config')!.nodes.find((n) => n.node === 'wk-1')?.warnings?.length);
  });
});
