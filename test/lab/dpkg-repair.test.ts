/**
 * A new user's finding (2026-12-01): a Ctrl-C during `apt-get install` left dpkg with wireguard-tools half done, `wg`
 * present; the install step only looked for the program and passed, and later phases failed with a confusing error.
 * Here dpkg's record of wireguard-tools on ms-1 is broken by hand as such a Ctrl-C leaves it (its Status line in
 * /var/lib/dpkg/status set to `install ok half-configured`, the files all there): the dry run plans the repair, `up`
 * repairs it (dpkg --configure -a, then the reinstall), and the next `up` changes nothing; the same for a package left
 * half-installed with dpkg's reinstall-required flag (`iHR`, what the new user saw).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { describeLab } from './harness.js';
import type { Plan } from '../../src/engine/plan.js';

const INVENTORY = 'inventories/homelab.yaml';

interface UpJson {
  result: string;
  changes: number;
  plan: Plan;
}

describeLab(
  'up repairs a package dpkg left half done',
  INVENTORY,
  (lab) => {
    const up = async (...extra: string[]) => {
      const r = await lab().meshctl(['up', INVENTORY, '--json', ...extra]);
      assert.equal(r.code, 0, `${r.stdout.slice(0, 3000)}\n${r.stderr}`);
      return JSON.parse(r.stdout) as UpJson;
    };
    const installChanges = (report: UpJson, node: string) =>
      report.plan.phases
        .find((p) => p.id === 'install')!
        .nodes.filter((n) => n.node === node)
        .flatMap((n) => n.actions.flatMap((a) => a.changes));
    const dpkgState = async (node: string) => (await lab().sh(node, "dpkg-query -W -f='${db:Status-Abbrev}' wireguard-tools")).trim();

    it('half-configured wireguard-tools with wg present: planned, repaired, then nothing to do', async () => {
      const shared = `${INVENTORY}.state.json`;
      const sharedBefore = existsSync(shared) ? readFileSync(shared, 'utf8') : undefined;
      const cold = await up('--yes');
      assert.equal(cold.result, 'converged');
      // the suite's own inventory (test/lab/harness.ts): its local state beside the copy, the shared one untouched
      assert.notEqual(lab().inventory, INVENTORY);
      assert.ok(existsSync(`${lab().inventory}.state.json`), "the local state beside the suite's copy");
      assert.equal(existsSync(shared) ? readFileSync(shared, 'utf8') : undefined, sharedBefore);
      assert.equal(await dpkgState('ms-1'), 'ii');
      // as an interrupted install leaves it: the program there, dpkg's record half done
      await lab().sh(
        'ms-1',
        "sed -i '/^Package: wireguard-tools$/,/^$/ s/^Status: install ok installed$/Status: install ok half-configured/' /var/lib/dpkg/status",
      );
      assert.equal(await dpkgState('ms-1'), 'iF');
      await lab().sh('ms-1', 'command -v wg && command -v wg-quick');

      const dry = await up('--dry-run');
      const planned = installChanges(dry, 'ms-1');
      assert.equal(planned.length, 1, JSON.stringify(planned));
      assert.ok(planned[0]!.kind === 'install' && planned[0]!.repair?.includes('wireguard-tools'), JSON.stringify(planned));
      assert.ok(planned[0]!.kind === 'install' && planned[0]!.why.some((w) => /half-configured \(iF\)/.test(w)), JSON.stringify(planned));
      for (const other of ['wk-1', 'wk-2', 'ctb-edge-1']) assert.deepEqual(installChanges(dry, other), [], other);
      // the dry run's words (the gate report and the view show these)
      const text = await lab().meshctl(['up', INVENTORY, '--dry-run', '--no-color']);
      assert.match(
        text.stdout + text.stderr,
        /repair dpkg's half-done wireguard-tools: dpkg --configure -a \(it configures every package dpkg left pending on the node, not only these\), then reinstall wireguard-tools \(apt\)/,
      );
      assert.equal(await dpkgState('ms-1'), 'iF', 'a dry run changes nothing');

      const repaired = await up('--yes');
      assert.equal(repaired.result, 'converged');
      assert.equal(installChanges(repaired, 'ms-1').length, 1);
      assert.equal(await dpkgState('ms-1'), 'ii');
      // dpkg has nothing left half done on the node
      assert.equal((await lab().sh('ms-1', 'dpkg --audit')).trim(), '');

      const again = await up('--yes');
      assert.equal(again.result, 'converged');
      assert.equal(again.changes, 0, JSON.stringify(again.plan));
    });

    it('half-installed and reinstall-required (iHR): dpkg --configure -a leaves it, the reinstall repairs it', async () => {
      await lab().sh(
        'wk-1',
        "sed -i '/^Package: wireguard-tools$/,/^$/ s/^Status: install ok installed$/Status: install reinstreq half-installed/' /var/lib/dpkg/status",
      );
      assert.equal(await dpkgState('wk-1'), 'iHR');
      const repaired = await up('--yes');
      assert.equal(repaired.result, 'converged');
      const change = installChanges(repaired, 'wk-1')[0];
      assert.ok(
        change?.kind === 'install' && change.why.some((w) => /half-installed, reinstall required \(iHR\)/.test(w)),
        JSON.stringify(change),
      );
      assert.equal(await dpkgState('wk-1'), 'ii');
      assert.equal((await lab().sh('wk-1', 'dpkg --audit')).trim(), '');
      const again = await up('--yes');
      assert.equal(again.changes, 0, JSON.stringify(again.plan));
    });
  },
  { name: process.env.MESHCTL_LAB },
);
