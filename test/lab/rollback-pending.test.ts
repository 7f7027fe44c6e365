/**
 * A new user's findings (2026-12-01) in the lab: an `up` interrupted after it changed the nodes leaves its rollback
 * pending on them (src/engine/revert.ts). Then
 * - a second `up` of the same inventory finds the nodes as the design says; it used to say "converged: 0 changes"
 *   and the nodes flipped back when the revert fired: now it confirms the pending revert at the enable gate (the
 *   nodes stay on the design past the deadline);
 * - `down` used to leave the revert pending, and its timer brought wg0 back up: now `down` cancels it first.
 * The interrupted run moves ms-1's listen port to 51825 (every node but the edge changes), holds new SSH logins to
 * ms-1 (the enable gate's fresh login cannot confirm) and is killed once the change is live on every changed node.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { spawnMeshctl } from '../support/spawned-meshctl.js';
import { describeLab, labArgs } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const CHANGED = ['ms-1', 'wk-1', 'wk-2'];
/** long enough for the next meshctl run to reach its gate on a loaded 2-core host, short enough to wait out */
const DEADLINE_S = 45;
const dir = mkdtempSync(join(tmpdir(), 'meshctl-rb-pending-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const PORT_CHANGE = join(dir, 'ms-1-port.yaml');
writeFileSync(PORT_CHANGE, readFileSync(INVENTORY, 'utf8').replace(/( {4}forwardedPort: 51821.*\n)/, '$1    listenPort: 51825\n'));

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeLab(
  'a rollback left pending by an interrupted up: confirmed by the next up, cancelled by down',
  INVENTORY,
  (lab) => {
    const sh = async (node: string, script: string) => (await lab().exec(node, ['sh', '-c', script])).stdout.trim();
    /** what a revert would change: the config file, the live port, the unit's state */
    const nodeState = (node: string) =>
      sh(
        node,
        'sha256sum < /etc/wireguard/wg0.conf | cut -c1-16; wg show wg0 listen-port 2>&1; systemctl is-active wg-quick@wg0; systemctl is-enabled wg-quick@wg0',
      );
    const allStates = async () => Object.fromEntries(await Promise.all(NODES.map(async (n) => [n, await nodeState(n)] as const)));
    /** revert timers or snapshot directories left on a node */
    const leftovers = (node: string) =>
      sh(
        node,
        `systemctl list-units --all --no-legend --plain 'meshctl-revert-*' | awk '{ print $1 }'; ls /run/meshctl | grep revert || true`,
      );

    /**
     * Runs `up INVENTORY` with the run's fresh logins to ms-1 held, and SIGKILLs it once `live` says the change is
     * live on every changed node. Resolves with the time of the kill (ms).
     */
    async function interruptedUp(inventory: string, live: () => Promise<boolean>): Promise<number> {
      const { child, output, exited } = spawnMeshctl(
        lab().name,
        labArgs(lab().name, [
          'up',
          inventory,
          '--no-underlay-probes',
          '--yes',
          '--no-color',
          '--break-lock',
          '--rollback-deadline',
          String(DEADLINE_S),
          '--connect-timeout',
          '60',
        ]),
      );
      const holdLogins = (op: string) => sh('ms-1', `iptables ${op} INPUT -p tcp --dport 22 --syn -j DROP`);
      try {
        for (let i = 0; i < 600 && !/Install WireGuard/.test(output()); i++) await sleep(100);
        await holdLogins('-I');
        let done = false;
        for (let i = 0; i < 900 && !done; i++) {
          done = await live();
          if (!done) await sleep(100);
        }
        assert.ok(done, `the change never went live:\n${output()}`);
        child.kill('SIGKILL');
        const killedAt = Date.now();
        assert.equal(await exited, -1, output());
        assert.doesNotMatch(output(), /rollback disarmed/);
        for (const node of CHANGED) assert.match(await leftovers(node), /revert/, `${node}: no pending rollback to test with`);
        return killedAt;
      } finally {
        child.kill('SIGKILL');
        await holdLogins('-D');
      }
    }
    /** the moved port is live: ms-1 listens on it and wk-1, wk-2 dial it */
    const portMoved = async () =>
      (await sh('ms-1', 'wg show wg0 listen-port')) === '51825' &&
      (await sh('wk-1', 'wg show wg0 endpoints')).includes(':51825') &&
      (await sh('wk-2', 'wg show wg0 endpoints')).includes(':51825');

    it('builds the mesh', async () => {
      const run = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(run.code, 0, run.stdout + run.stderr);
    });

    it('an up of the same inventory after the interrupted run confirms its pending rollback: the nodes stay past its deadline', async () => {
      const killedAt = await interruptedUp(PORT_CHANGE, portMoved);
      const moved = await allStates();
      const again = await lab().meshctl(['up', PORT_CHANGE, '--no-underlay-probes', '--yes', '--no-color', '--break-lock']);
      const seconds = (Date.now() - killedAt) / 1000;
      assert.equal(again.code, 0, again.stdout + again.stderr);
      assert.ok(seconds < DEADLINE_S, `the second up ended ${seconds} s after the kill: the revert may have fired first`);
      assert.match(again.stdout, /mesh converged: 0 changes/);
      // one confirmation per node the interrupted run changed, at the enable gate
      const confirmed =
        again.stdout.match(
          /rollback: confirmed the change an earlier run left unconfirmed \(revert-[0-9a-f]+, due at \d\d:\d\d:\d\d UTC\)/g,
        ) ?? [];
      assert.equal(confirmed.length, CHANGED.length, again.stdout);
      for (const node of NODES) assert.equal(await leftovers(node), '', `${node}: a revert is left`);
      // past the interrupted run's deadline, and the revert's restart: nothing went back
      await sleep(Math.max(0, killedAt + (DEADLINE_S + 15) * 1000 - Date.now()));
      assert.deepEqual(await allStates(), moved);
      assert.match(moved['ms-1']!, /\n51825\nactive\nenabled$/);
    });

    it('down after an interrupted run cancels its pending rollback: wg0 stays down past the deadline', async () => {
      // back to the inventory's port, interrupted the same way
      const killedAt = await interruptedUp(
        INVENTORY,
        async () => !(await portMoved()) && (await sh('ms-1', 'wg show wg0 listen-port')) === '51820',
      );
      const down = await lab().meshctl(['down', INVENTORY, '--yes', '--no-color', '--break-lock']);
      assert.equal(down.code, 0, down.stdout + down.stderr);
      for (const node of CHANGED)
        assert.match(down.stdout, new RegExp(`${node}\\n\\s+cancel the pending rollback of an interrupted up \\(revert-[0-9a-f]+, due at`));
      for (const node of NODES) assert.equal(await leftovers(node), '', `${node}: a revert is left`);
      await sleep(Math.max(0, killedAt + (DEADLINE_S + 15) * 1000 - Date.now()));
      for (const node of NODES)
        assert.equal(
          await sh(node, '[ -e /sys/class/net/wg0 ] && echo wg0-up; systemctl is-active wg-quick@wg0; systemctl is-enabled wg-quick@wg0'),
          'inactive\ndisabled',
          `${node}: brought back after down`,
        );
    });
  },
  { name: 'wtr' },
);
