/**
 * Q9 F-perm-rollback on the homelab lab: ms-1's key and wg-quick file made another user's (nobody) and wg0.conf
 * writable by anyone, content unchanged. `up` said "mesh converged: 0 changes", `plan` "nothing to change" and
 * verify passed ms-1, while `su nobody` read the private key and could add a PostUp that root ran at the next
 * restart (a rollback restored nobody's file: `cp -p` kept its owner and mode in wg0.conf.bak). Now `up` stops at the
 * baseline (check `wireguard-file-modes`, exit 1) and changes nothing on ms-1 (same sha256 of every file, same
 * wg-quick@wg0 InvocationID: no restart), `plan` stops there too, verify fails ms-1's `file-modes`; once the modes
 * are fixed with the commands the message names, `up` is 0 changes again.
 * Q9 F-immutable: an immutable wg0.conf (`chattr +i`, which works in the lab's containers) on wk-1 makes the write of
 * an MTU change fail; no /etc/wireguard/wg0.conf.meshctl-tmp is left behind (it was).
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const Q9_SETUP =
  'chmod 755 /etc/wireguard; chown nobody:nogroup /etc/wireguard/wg0.key /etc/wireguard/wg0.conf; chmod 666 /etc/wireguard/wg0.conf';
/** Every file of /etc/wireguard with its sha256, owner and mode, and wg-quick@wg0's InvocationID (a new one per start). */
const SNAPSHOT = 'cd /etc/wireguard && sha256sum -- * && stat -c "%n %U %a" -- . * && systemctl show -p InvocationID --value wg-quick@wg0';

const dir = mkdtempSync(join(tmpdir(), 'meshctl-file-modes-lab-'));
after(() => rmSync(dir, { recursive: true, force: true }));
/** the homelab with MTU 1400 (its own file: its local state is its own), for a run that writes wg0.conf */
const MTU_1400 = join(dir, 'mtu-1400.yaml');
writeFileSync(MTU_1400, readFileSync(INVENTORY, 'utf8').replace('mtu: 1420', 'mtu: 1400'));

describeLab(
  "the node's WireGuard files owned by another user or writable by others stop up at the baseline",
  INVENTORY,
  (lab) => {
    const sh = (node: string, script: string) => lab().sh(node, script);

    it('up converges the lab (the premise), and a second up is 0 changes', async () => {
      const built = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(built.code, 0, built.stdout + built.stderr);
      const again = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.match(again.stdout, /mesh converged: 0 changes/);
      assert.match(again.stdout, /ok {3}wireguard-file-modes: \/etc\/wireguard 0700, \/etc\/wireguard\/wg0\.key 0600/);
    });

    it("Q9's setup on ms-1: up stops at the baseline (exit 1) naming files, owner, mode, why and the fix; nothing changes on ms-1", async () => {
      await sh('ms-1', Q9_SETUP);
      const before = await sh('ms-1', SNAPSHOT);
      const run = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(run.code, 1, run.stdout + run.stderr);
      const line = run.stdout.split('\n').find((l) => /FAIL wireguard-file-modes/.test(l)) ?? '';
      assert.match(
        line,
        /\/etc\/wireguard\/wg0\.key is owned by nobody \(uid 65534\), not root: another user can read or replace the private key/,
      );
      assert.match(
        line,
        /\/etc\/wireguard\/wg0\.conf is owned by nobody \(uid 65534\), not root, writable by group and others \(mode 0666\)/,
      );
      assert.match(line, /PostUp command that root runs when wg-quick starts/);
      assert.match(line, /check the content first/);
      assert.match(
        line,
        /chown root:root \/etc\/wireguard\/wg0\.key \/etc\/wireguard\/wg0\.conf; chmod 700 \/etc\/wireguard; chmod 600 \/etc\/wireguard\/wg0\.key \/etc\/wireguard\/wg0\.conf/,
      );
      assert.match(run.stdout, /STOP {2}NO-GO: ms-1 wireguard-file-modes/);
      assert.equal(run.stdout.match(/FAIL wireguard-file-modes/g)?.length, 1, 'only ms-1 fails');
      assert.equal(await sh('ms-1', SNAPSHOT), before, 'ms-1 changed (a file, an owner or mode, or a restart)');
    });

    it('plan stops there too (exit 1), and verify fails ms-1 file-modes (exit 1), the others pass it', async () => {
      const plan = await lab().meshctl(['plan', INVENTORY, '--no-color']);
      assert.equal(plan.code, 1, plan.stdout + plan.stderr);
      assert.match(plan.stdout + plan.stderr, /NO-GO: ms-1 wireguard-file-modes/);
      const verify = await lab().meshctl(['verify', INVENTORY, '--json']);
      assert.equal(verify.code, 1, verify.stderr);
      const checks = (
        JSON.parse(verify.stdout) as { checks: { node: string; id: string; status: string; message: string }[] }
      ).checks.filter((c) => c.id === 'file-modes');
      assert.deepEqual(
        checks.map((c) => [c.node, c.status]),
        [
          ['ms-1', 'fail'],
          ['wk-1', 'pass'],
          ['wk-2', 'pass'],
          ['ctb-edge-1', 'pass'],
        ],
      );
      assert.match(checks[0]!.message, /wg0\.conf is owned by nobody/);
    });

    it('after the fix the message names, up is 0 changes again', async () => {
      await sh(
        'ms-1',
        'chown root:root /etc/wireguard/wg0.key /etc/wireguard/wg0.conf; chmod 700 /etc/wireguard; chmod 600 /etc/wireguard/wg0.key /etc/wireguard/wg0.conf',
      );
      const run = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
      assert.match(run.stdout, /mesh converged: 0 changes/);
    });

    it('an immutable wg0.conf on wk-1 (chattr +i), MTU 1400: the write fails and no wg0.conf.meshctl-tmp is left', async (t) => {
      await sh('wk-1', 'chattr +i /etc/wireguard/wg0.conf');
      try {
        const before = await sh('wk-1', 'sha256sum /etc/wireguard/wg0.conf');
        const run = await lab().meshctl(['up', MTU_1400, '--yes', '--no-color']);
        // what the run said (the rollback's own verdict is src/engine/revert.ts's)
        for (const line of (run.stdout + run.stderr).split('\n').filter((l) => /FAIL|ROLLED|rolled back|not reverted/.test(l)))
          t.diagnostic(line);
        assert.notEqual(run.code, 0, run.stdout + run.stderr);
        assert.match(run.stdout + run.stderr, /write-config.*(Operation not permitted|failed)/s);
        assert.equal(await sh('wk-1', 'sha256sum /etc/wireguard/wg0.conf'), before);
        assert.equal((await sh('wk-1', 'ls -a /etc/wireguard')).includes('meshctl-tmp'), false, 'the temp file is left');
      } finally {
        await sh('wk-1', 'chattr -i /etc/wireguard/wg0.conf');
      }
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
