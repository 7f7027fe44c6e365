/**
 * Q4 item 4 in the lab: a router reboot at a NAT site with forwards (inventories/four-sites.yaml with a-1 given
 * `listenPort: 41001` and the forward 41001 -> :41001; a-2 as written, 41002 -> :51820; router:a port-preserving).
 * a-2 dials p-2 from :51820 before p-2 dials a-2's forward: the forward's reply tuple is a-2's own flow, so netfilter
 * gives p-2's packets a new source port and a-2 roams p-2 there (src/topology/forward-clash.ts). a-1, whose forward's
 * external port is its listen port, has one flow and keeps p-2 at :51820. After `conntrack -F` in the router (a
 * reboot), a-1 reaches p-2 again (README "Router reboots and port-forwards": 0.8-4.8 s measured), while a-2 waits for
 * the re-resolve timer (105 and 146 s measured; not waited for here). `validate` warns for a-2, not for a-1.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describeLab } from './harness.js';
import { tempDir } from '../support/temp-dir.js';

const INVENTORY = join(tempDir('meshctl-forward-clash-'), 'four-sites-a1-equal.yaml');
writeFileSync(
  INVENTORY,
  readFileSync('inventories/four-sites.yaml', 'utf8').replace(
    '    overlayIp: 172.27.40.11\n    forwardedPort: 41001',
    '    overlayIp: 172.27.40.11\n    listenPort: 41001\n    forwardedPort: 41001',
  ),
);
const P2 = '172.27.40.42';
const OVERLAY = { 'a-1': '172.27.40.11', 'a-2': '172.27.40.12' } as const;
const FORWARD = { 'a-1': 41001, 'a-2': 41002 } as const;

describeLab('a router reboot and a forward whose external port is (not) the listen port (four sites)', INVENTORY, (lab) => {
  const sh = (node: string, script: string) => lab().sh(node, script);
  /** the key `node` holds for the peer whose first AllowedIPs entry is `overlay`/32 */
  const keyOf = async (node: string, overlay: string) =>
    (await sh(node, `wg show wg0 allowed-ips | awk '$2 ~ /^${overlay.replaceAll('.', '\\.')}\\/32/ {print $1}'`)).trim();
  const endpointOf = async (node: string, key: string) =>
    (await sh(node, 'wg show wg0 endpoints'))
      .split('\n')
      .find((l) => l.startsWith(key))
      ?.split('\t')[1];

  it('validate warns for a-2 and not for a-1; up converges', async () => {
    const validate = await lab().meshctl(['validate', INVENTORY]);
    assert.equal(validate.code, 0, validate.stderr);
    assert.match(validate.stdout, /warning: a-2: its forward 203\.0\.113\.10:41002 -> :51820 has another external port/);
    assert.doesNotMatch(validate.stdout, /warning: a-1:/);
    const up = await lab().meshctl(['up', INVENTORY, '--yes']);
    assert.equal(up.code, 0, `${up.stdout.slice(-3000)}\n${up.stderr.slice(-2000)}`);
  });

  it('the clash roams a-2 to a port only the router knows; a-1 keeps :51820 and reaches p-2 again after conntrack -F', async () => {
    const p2Key = await keyOf('a-1', P2);
    await sh('router:a', 'conntrack -F');
    for (const node of ['a-1', 'a-2'] as const) {
      // the node's own flow first (as its keepalive makes it), then p-2 dials the node's forward
      await sh(node, `wg set wg0 peer ${p2Key} endpoint 198.51.100.12:51820; ping -c1 -W2 ${P2} >/dev/null || true`);
      const key = await keyOf('p-2', OVERLAY[node]);
      await sh('p-2', `wg set wg0 peer ${key} endpoint 203.0.113.10:${FORWARD[node]}; ping -c1 -W2 ${OVERLAY[node]} >/dev/null || true`);
    }
    const a1 = await endpointOf('a-1', p2Key);
    const a2 = await endpointOf('a-2', p2Key);
    const table = await sh('router:a', 'conntrack -L -p udp 2>/dev/null | grep 198.51.100.12 || true');
    process.stderr.write(`before the flush: a-1 sees p-2 at ${a1}, a-2 at ${a2}\n${table}`);
    assert.equal(a1, '198.51.100.12:51820', 'a-1: one flow, no new source port');
    assert.notEqual(a2, '198.51.100.12:51820', `a-2: the clash gave p-2 a new source port\n${table}`);
    // no data for more than KEEPALIVE_TIMEOUT (10 s): p-2 owes a-2 no passive keepalive that would show the way back
    await new Promise((r) => setTimeout(r, 15_000));
    await sh('router:a', 'conntrack -F');
    const started = Date.now();
    let passed = false;
    while (!passed && Date.now() - started < 60_000) passed = (await lab().exec('a-1', ['ping', '-c1', '-W1', P2])).code === 0;
    process.stderr.write(
      `a-1 -> p-2 after conntrack -F: ${passed ? `passed after ${((Date.now() - started) / 1000).toFixed(1)} s` : 'no reply in 60 s'}\n`,
    );
    assert.ok(passed, 'a-1 reaches p-2 again without the re-resolve timer');
    const a2After = await lab().exec('a-2', ['ping', '-c1', '-W2', P2]);
    process.stderr.write(`a-2 -> p-2 right after: exit ${a2After.code}; a-2 sees p-2 at ${await endpointOf('a-2', p2Key)}\n`);
  });
});
