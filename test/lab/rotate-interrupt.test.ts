/**
 * Ctrl-C during `rotate-keys` (a new user's finding 1): a real SIGINT to meshctl at the point where peers have
 * ms-1's new public key and ms-1's key file is still the old one (the swap not done). Old code: the peer updates in
 * flight were killed, the rollback was sent with the aborted signal (so never ran) and the new private key was
 * removed: ms-1's pairs were down, and the peers held a key whose private half existed nowhere. Now every node must
 * end on ms-1's old key (ms-1 itself live and in its file), ms-1 without `wg0.key.new`, and `verify` must pass
 * (every pair pings) without an `up`.
 * The point is made certain by a `wg` wrapper on wk-2 that holds its `wg addconf` (the live sync, after its
 * wg0.conf was written with the new key; the swap waits for every peer) until the test has sent SIGINT.
 * MESHCTL_LAB names the lab (a helper's own lab name), else a unique one.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnMeshctl } from '../support/spawned-meshctl.js';
import { describeLab } from './harness.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const PEERS = NODES.filter((n) => n !== 'ms-1');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** on wk-2, ahead of /usr/bin/wg in PATH: `wg addconf` waits while /tmp/r3-hold exists, after marking it started */
const WRAPPER = `#!/bin/sh
if [ "$1" = addconf ] && [ -e /tmp/r3-hold ]; then
  touch /tmp/r3-addconf-started
  i=0; while [ -e /tmp/r3-hold ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
fi
exec /usr/bin/wg "$@"
`;

describeLab(
  'Ctrl-C during rotate-keys',
  INVENTORY,
  (lab) => {
    const sh = async (node: string, script: string) => (await lab().sh(node, script)).trim();

    it('SIGINT after the peers got the new key, before the swap: every peer gets the old key back, verify passes without up', async () => {
      const built = await lab().meshctl(['up', INVENTORY, '--yes', '--no-color']);
      assert.equal(built.code, 0, built.stdout + built.stderr);
      const oldKey = await sh('ms-1', 'wg show wg0 public-key');
      await sh('wk-2', `printf '%s' '${WRAPPER}' > /usr/local/bin/wg && chmod 755 /usr/local/bin/wg && touch /tmp/r3-hold`);
      try {
        const run = spawnMeshctl(lab().name, ['rotate-keys', INVENTORY, 'ms-1', '--yes', '--no-color']);
        let held = false;
        for (let i = 0; i < 300 && !held; i++) {
          held = (await lab().exec('wk-2', ['test', '-e', '/tmp/r3-addconf-started'])).code === 0;
          if (!held) await sleep(100);
        }
        assert.ok(held, `wk-2's update never reached wg addconf:\n${run.output()}`);
        // the point: wk-2's wg0.conf already names ms-1's new key, and ms-1's key file is still the old one
        assert.doesNotMatch(await sh('wk-2', 'grep PublicKey /etc/wireguard/wg0.conf'), new RegExp(oldKey.replace(/[+/]/g, '\\$&')));
        assert.equal(await sh('ms-1', 'wg pubkey < /etc/wireguard/wg0.key'), oldKey);
        run.child.kill('SIGINT');
        await sleep(500); // Ctrl-C reaches meshctl while wk-2's update is still held
        await sh('wk-2', 'rm -f /tmp/r3-hold');
        const code = await run.exited;
        const output = run.output();
        assert.equal(code, 130, output);

        assert.equal(await sh('ms-1', 'wg show wg0 public-key'), oldKey, output);
        assert.equal(await sh('ms-1', 'wg pubkey < /etc/wireguard/wg0.key'), oldKey, output);
        assert.doesNotMatch(await sh('ms-1', 'ls /etc/wireguard'), /wg0\.key\.new/);
        for (const peer of PEERS) {
          const live = await sh(peer, 'wg show wg0 peers');
          const file = await sh(peer, 'grep PublicKey /etc/wireguard/wg0.conf');
          assert.ok(live.includes(oldKey) && file.includes(oldKey), `${peer} lacks ms-1's old key:\n${live}\n${file}\n${output}`);
          assert.equal(live.split('\n').length, 3, `${peer} live peers:\n${live}`);
        }
        assert.match(output, /ms-1: NOT ROTATED \(interrupted\): .*rolled back: every peer has its old public key again/, output);
        const verify = await lab().meshctl(['verify', INVENTORY, '--no-color']);
        assert.equal(verify.code, 0, verify.stdout + verify.stderr);
      } finally {
        await sh('wk-2', 'rm -f /usr/local/bin/wg /tmp/r3-hold /tmp/r3-addconf-started');
      }
    });
  },
  process.env.MESHCTL_LAB ? { name: process.env.MESHCTL_LAB } : {},
);
