/**
 * Q10 F15 in the lab: `meshctl import` of a hand-built homelab mesh never moves a private key into a file another
 * user made or can read. On wk-2, /etc/wireguard is 0777 and an empty wg0.key.meshctl-tmp of nobody's (uid 65534,
 * 0666) is planted, as Q10 did (the old import moved wk-2's running PrivateKey into that file, exit 0 "key pair kept"):
 * - 0777: the import refuses (exit 1) naming wk-2, /etc/wireguard and the fix; no file on any node changes (content,
 *   owner, mode), no inventory is written;
 * - after `chmod 700 /etc/wireguard`: the import goes through, the planted temp file is discarded, wg0.key is root's
 *   0600 and wk-2 runs its key as before; no file of nobody's is left.
 * Secrets: keys are made on the nodes and pasted into wg0.conf there; never read by this test.
 */
import { after, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeLab, uniqueLabName } from './harness.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';

const INVENTORY = 'inventories/homelab.yaml';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const PLANTED = '/etc/wireguard/wg0.key.meshctl-tmp';

describeLab(
  "import moves no private key into a file of another user's (Q10 F15)",
  INVENTORY,
  (lab) => {
    const inventory = loadInventory(INVENTORY);
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-x14-import-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const out = join(dir, 'imported.yaml');
    const sh = (node: string, script: string, stdin?: string) =>
      lab().sh(node, script, { timeoutMs: 180_000, ...(stdin === undefined ? {} : { stdin }) });
    /** every file import could touch: owner, mode, type and sha256 (never the content) */
    const snapshot = async () =>
      Object.fromEntries(
        await Promise.all(
          NODES.map(async (n) => [
            n,
            await sh(
              n,
              'cd / && find /etc/wireguard /etc/systemd/system/wg-quick@wg0.service.d 2>/dev/null | sort | while read -r f; do printf \'%s %s \' "$(stat -c \'%U %a %F\' -- "$f")" "$f"; if [ -f "$f" ]; then sha256sum < "$f"; else echo; fi; done',
            ),
          ]),
        ),
      ) as Record<string, string>;
    const keys = new Map<string, string>();

    it('builds the hand mesh: every node keeps its PrivateKey in wg0.conf (root 0600), wg-quick@wg0 running', async () => {
      await Promise.all(
        NODES.map((n) =>
          sh(n, 'apt-get update -q >/dev/null && apt-get install -y -q wireguard-tools wireguard-go >/dev/null && command -v wg-quick'),
        ),
      );
      for (const n of NODES)
        keys.set(n, (await sh(n, 'umask 077 && wg genkey > /root/wg0.private && wg pubkey < /root/wg0.private')).trim());
      for (const n of NODES) {
        const design = desiredNodeConfig(inventory, n, keys);
        const lines = [
          '[Interface]',
          `Address = ${design.address}`,
          `ListenPort = ${design.listenPort}`,
          `MTU = ${design.mtu}`,
          'PrivateKey = @PRIVATE@',
          ...design.peers.flatMap((peer) => [
            '',
            '[Peer]',
            `# ${peer.name}`,
            `PublicKey = ${peer.publicKey}`,
            `AllowedIPs = ${peer.allowedIps.join(', ')}`,
            ...(peer.endpoint ? [`Endpoint = ${peer.endpoint}`] : []),
            ...(peer.persistentKeepalive ? [`PersistentKeepalive = ${peer.persistentKeepalive}`] : []),
          ]),
          '',
        ];
        await sh(
          n,
          'umask 077 && mkdir -p /etc/wireguard && sed -e "s|@PRIVATE@|$(cat /root/wg0.private)|" > /etc/wireguard/wg0.conf && rm -f /root/wg0.private && systemctl enable --now wg-quick@wg0 2>&1',
          lines.join('\n'),
        );
      }
      for (const n of NODES) assert.equal((await sh(n, 'wg show wg0 public-key')).trim(), keys.get(n), `${n} runs with its key`);
    });

    it("/etc/wireguard 0777 on wk-2 with a planted temp file of nobody's: refused (exit 1), naming node, file and fix; nothing changed", async () => {
      await sh('wk-2', `chmod 777 /etc/wireguard && : > ${PLANTED} && chown 65534:65534 ${PLANTED} && chmod 666 ${PLANTED}`);
      const before = await snapshot();
      const r = await lab().meshctl(['import', INVENTORY, '-o', out]);
      process.stderr.write(`x14: import with /etc/wireguard 0777: exit ${r.code}\n${r.stderr}\n`);
      assert.equal(r.code, 1, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /cannot take this mesh over \(nothing changed, nothing written\)/);
      assert.match(r.stderr, /wk-2: \/etc\/wireguard is writable by group and others \(mode 0777\)/);
      assert.match(r.stderr, /chmod 700 \/etc\/wireguard/);
      assert.doesNotMatch(r.stderr, /key pair kept/, 'no adopting script ran');
      assert.deepEqual(await snapshot(), before, 'no file on any node changed');
      assert.equal(existsSync(out), false, 'no inventory written');
    });

    it("after chmod 700: the planted temp file is discarded and wg0.key is root's 0600, wk-2 keeps its key", async () => {
      await sh('wk-2', 'chmod 700 /etc/wireguard');
      const r = await lab().meshctl(['import', INVENTORY, '-o', out]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
      assert.match(r.stderr, /wk-2: key pair kept \(PrivateKey line moved/);
      for (const n of NODES) {
        assert.equal((await sh(n, "stat -c '%u %a %F' /etc/wireguard/wg0.key")).trim(), '0 600 regular file', `${n}: wg0.key`);
        assert.equal(
          (await sh(n, 'find /etc/wireguard -name "*.meshctl-tmp" -o -uid 65534')).trim(),
          '',
          `${n}: no temp, nothing of nobody's`,
        );
        assert.equal((await sh(n, 'grep -ci privatekey /etc/wireguard/wg0.conf || true')).trim(), '0', `${n}: no key line left`);
        assert.equal((await sh(n, 'wg show wg0 public-key')).trim(), keys.get(n), `${n} runs the key it had`);
      }
    });
  },
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('x14') },
);
