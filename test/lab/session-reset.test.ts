/**
 * The ping phase's session reset (src/engine/session-reset.ts) on a real node of the reference lab
 * (inventories/homelab.yaml, wireguard-go): after a cold `up`, ms-1 clears its session with wk-1 by the command the
 * ping phase sends. The session is gone (no handshake with wk-1 any more), the peer is back exactly as it was (public
 * key, AllowedIPs, endpoint, keepalive; the routes via wg0 unchanged), no other peer lost its session, and the next
 * echo request makes a fresh handshake and is answered. No private or preshared key is read: only `wg show`'s
 * public fields.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { sessionResetCommand } from '../../src/engine/session-reset.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { describeLab, uniqueLabName } from './harness.js';

const INVENTORY = new URL('../../inventories/homelab.yaml', import.meta.url).pathname;
const inventory = loadInventory(INVENTORY);
const overlayOf = (name: string) => inventory.nodes.find((n) => n.name === name)!.overlayIp;

describeLab(
  'the session reset clears one peer’s session on a live node and puts the peer back as it was',
  INVENTORY,
  (lab) => {
    const sh = (target: string, script: string) => lab().sh(target, script);
    /** a node's peers as public fields, one line per peer: key, AllowedIPs, endpoint, keepalive */
    const peers = async (node: string) => {
      const fields = await Promise.all(
        ['allowed-ips', 'endpoints', 'persistent-keepalive'].map((what) => sh(node, `wg show wg0 ${what} | sort`)),
      );
      return fields.join('\n');
    };
    const handshakes = async (node: string) =>
      new Map(
        (await sh(node, 'wg show wg0 latest-handshakes'))
          .trim()
          .split('\n')
          .map((line) => line.split('\t') as [string, string])
          .map(([key, at]) => [key, Number(at)]),
      );

    it('ms-1 resets its session with wk-1: gone, peer unchanged, others untouched, then a fresh handshake answers', async () => {
      const up = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
      assert.equal(up.code, 0, up.stderr.slice(-800));
      const keys = new Map<string, string>();
      for (const n of inventory.nodes) keys.set(n.name, (await sh(n.name, 'wg show wg0 public-key')).trim());
      const config = desiredNodeConfig(inventory, 'ms-1', keys);
      // every pair of ms-1 has a session (up's ping round made them)
      await sh(
        'ms-1',
        inventory.nodes
          .filter((n) => n.name !== 'ms-1')
          .map((n) => `ping -n -q -c 1 -w 7 ${n.overlayIp} >/dev/null`)
          .join(' && '),
      );
      const before = {
        peers: await peers('ms-1'),
        routes: await sh('ms-1', 'ip -4 route show dev wg0'),
        handshakes: await handshakes('ms-1'),
      };
      for (const [key, at] of before.handshakes) assert.ok(at > 0, `ms-1 has a session with ${key}`);

      const reset = sessionResetCommand(config, ['wk-1']);
      assert.ok(reset);
      const said = await sh('ms-1', reset.command);
      assert.deepEqual(reset.read(/@@meshctl begin session-reset\n([\s\S]*?)\n@@meshctl end/.exec(said)?.[1]), {
        reset: ['wk-1'],
        notReset: [],
      });

      const after = await handshakes('ms-1');
      assert.equal(after.get(keys.get('wk-1')!), 0, "ms-1's session with wk-1 is gone");
      for (const [key, at] of before.handshakes)
        if (key !== keys.get('wk-1')) assert.equal(after.get(key), at, `the session with ${key} is kept`);
      assert.equal(await peers('ms-1'), before.peers, 'the peer is back as it was');
      assert.equal(await sh('ms-1', 'ip -4 route show dev wg0'), before.routes, 'the routes via wg0 are unchanged');

      // the next echo request starts a fresh handshake from ms-1, and both directions answer
      await sh('ms-1', `ping -n -q -c 3 -i 0.2 -w 7 ${overlayOf('wk-1')} >/dev/null`);
      await sh('wk-1', `ping -n -q -c 3 -i 0.2 -w 7 ${overlayOf('ms-1')} >/dev/null`);
      assert.ok((await handshakes('ms-1')).get(keys.get('wk-1')!)! > 0, 'a fresh handshake');

      // RV4 F1.1: with wk-1's Endpoint a name that does not resolve in ms-1's file (an inventory endpoint.host during
      // a DNS change), the reset adds wk-1 back with its live endpoint: no lookup, the peer kept as it was
      const conf = '/etc/wireguard/wg0.conf';
      const live = await peers('ms-1');
      // the Endpoint line of the [Peer] block with wk-1's key, its host made a name (the port kept)
      const rename = `/^\\[/ { p = 0 } /^PublicKey = / { p = ($3 == "${keys.get('wk-1')!}") } p && /^Endpoint = / { sub(/= .*:/, "= wk-1.dyn.invalid:") } { print }`;
      await sh('ms-1', `cp -p ${conf} ${conf}.x5 && awk '${rename}' ${conf}.x5 > ${conf}`);
      try {
        assert.match(await sh('ms-1', `cat ${conf}`), /Endpoint = wk-1\.dyn\.invalid:/, 'the file dials wk-1 by a name now');
        const named = await sh('ms-1', reset.command);
        assert.match(named, /^reset wk-1$/m, named);
        assert.equal(await peers('ms-1'), live, 'wk-1 is back with its live endpoint');
      } finally {
        await sh('ms-1', `mv ${conf}.x5 ${conf}`);
      }
    });
  },
  // MESHCTL_LAB names the lab (a helper's own lab name), else a unique one
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('rst') },
);
