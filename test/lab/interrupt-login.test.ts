/**
 * Ctrl-C while `up` logs in, in the lab: wk-2's sshd listener is stopped (SIGSTOP: the kernel still completes the TCP
 * handshake, so the login waits for a banner that never comes), a real `meshctl up` is started in the operator
 * namespace and gets a real SIGINT once the other three nodes are logged in. It ends with the one message of where it
 * was (`interrupted while logging in: 3 of 4 nodes connected (ms-1, wk-1, ctb-edge-1), wk-2 not yet; nothing was
 * changed on any node`), exit 130, at once (not at --connect-timeout 60), no run lock and no process of the run left
 * on any node; once wk-2's sshd goes on, the next `up` runs at once and converges. Before, the run ended with the bare
 * `meshctl: interrupted`. The same for every command, over a local sshd: test/unit/interrupted-commands.test.ts.
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnMeshctl } from '../support/spawned-meshctl.js';
import { describeLab, labArgs } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const CONNECTED = ['ms-1', 'wk-1', 'ctb-edge-1'];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeLab(
  'Ctrl-C while up logs in (one node sshd stopped)',
  INVENTORY,
  (lab) => {
    /** The pid of the node's sshd listener (systemd's main process of ssh.service). */
    const listener = async (node: string) => (await lab().sh(node, 'systemctl show -p MainPID --value ssh.service')).trim();
    /** Logins the node's sshd accepted since `since` (its journal's "Accepted publickey" lines). */
    const accepted = async (node: string, since: string) =>
      Number(
        (
          await lab().sh(node, `journalctl -q -u ssh.service --since '${since}' -o cat 2>/dev/null | grep -c 'Accepted publickey' || true`)
        ).trim(),
      );
    /** What a run may leave on a node: its lock, and processes of a run (marked MESHCTL_RUN). */
    const leftovers = async (node: string) =>
      (
        await lab().sh(
          node,
          'ls -d /run/meshctl/lock 2>/dev/null; grep -l \'MESHCTL_RUN=\' /proc/[0-9]*/environ 2>/dev/null | grep -v "/proc/$$/" || true',
        )
      ).trim();

    it('the message of how far the logins got, exit 130 at once, nothing left on any node; the next up runs at once', async () => {
      const pid = await listener('wk-2');
      assert.match(pid, /^[1-9]\d*$/, "wk-2's sshd listener");
      const since = (await lab().sh('ms-1', "date -u '+%Y-%m-%d %H:%M:%S'")).trim();
      await lab().sh('wk-2', `kill -STOP ${pid}`);
      let output = '';
      let code: number | null = null;
      let exitMs = -1;
      try {
        const run = spawnMeshctl(lab().name, labArgs(lab().name, ['up', INVENTORY, '--yes', '--no-color', '--connect-timeout', '60']));
        // the three other nodes logged in (the run's logins all start at once; wk-2's waits for its banner)
        let ready = false;
        for (let i = 0; i < 300 && !ready; i++) {
          ready = (await Promise.all(CONNECTED.map((n) => accepted(n, since)))).every((count) => count >= 1);
          if (!ready) await sleep(100);
        }
        assert.ok(ready, `the other nodes never logged in:\n${run.output()}`);
        await sleep(500); // the client's side of the last login
        const sentAt = Date.now();
        run.child.kill('SIGINT');
        code = await run.exited;
        exitMs = Date.now() - sentAt;
        output = run.output();
      } finally {
        await lab().sh('wk-2', `kill -CONT ${pid}`);
      }
      assert.equal(code, 130, output);
      assert.equal(
        output.trim(),
        'meshctl: interrupted while logging in: 3 of 4 nodes connected (ms-1, wk-1, ctb-edge-1), wk-2 not yet; nothing was changed on any node',
      );
      assert.ok(exitMs < 10_000, `exited ${exitMs} ms after the SIGINT (the connect timeout is 60 s)`);
      process.stderr.write(`# interrupt-login: meshctl exited ${exitMs} ms after the SIGINT\n`);
      await sleep(1000);
      for (const node of NODES) assert.equal(await leftovers(node), '', `${node}: left by the run`);
      const next = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(next.code, 0, next.stdout + next.stderr);
      assert.match(next.stdout, /mesh converged/);
      assert.doesNotMatch(next.stdout + next.stderr, /locked by another meshctl run|took over/);
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
