/**
 * The ping phase's second round (src/checks/ping-matrix.ts RECHECK) end to end, in a 4-node lab: two home nodes
 * behind a NAT router with port-forwards, two public nodes. Site home's router drops the UDP between h-1 and p-2
 * (the late pair) and between h-2 and p-2 (the broken pair) before a cold `up` (p-1, which sends the baseline's
 * port-forward probe, is left alone). The late pair's drop is lifted the moment h-1 starts the second round (its
 * ping runs with the second round's deadline), as a handshake that comes late would: the first round failed that
 * pair, the second finds it answering, and `up` ends with h-1/p-2 DIRECT. The broken pair's drop stays: it fails
 * both rounds and relay: auto relays it through p-1, as before.
 * Without the second round (meshctl before 2026-12-02) the late pair failed the only round and was relayed too
 * (docs/ping-round.md has the 32-node lab's capture that made this test).
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RECHECK } from '../../src/checks/ping-matrix.js';
import { describeLab, uniqueLabName } from './harness.js';

const DIR = mkdtempSync(join(tmpdir(), 'meshctl-recheck-'));
const INVENTORY = join(DIR, 'recheck.yaml');
writeFileSync(
  INVENTORY,
  `mesh:
  interface: wg0
  network: 172.27.45.0/24
  listenPort: 51820
  mtu: 1420
  persistentKeepalive: 25
  rpFilter: loose

sites:
  home:
    lan: 192.168.45.0/24
    router: 192.168.45.1
    nat:
      publicIp: 203.0.113.45
  edge:
    public: true

nodes:
  h-1: { site: home, address: 192.168.45.10, overlayIp: 172.27.45.10, forwardedPort: 51820 }
  h-2: { site: home, address: 192.168.45.11, overlayIp: 172.27.45.11, forwardedPort: 51821 }
  p-1: { site: edge, address: 198.51.100.45, overlayIp: 172.27.45.21 }
  p-2: { site: edge, address: 198.51.100.46, overlayIp: 172.27.45.22 }
`,
);
const NODES = ['h-1', 'h-2', 'p-1', 'p-2'];
const H1 = '192.168.45.10';
const H2 = '192.168.45.11';
const P2 = '198.51.100.46';

interface UpJson {
  result: string;
  stoppedAt?: string;
  matrix?: { cells: Record<string, Record<string, { ok: boolean }>> };
  fallbackRelays?: { pairs: string[]; relayedAtGate: string[]; backToDirect: string[] };
  firstPass?: { stoppedAt: string };
}

interface VerifyJson {
  paths: { a: string; b: string; kind: string; via?: string }[];
}

describeLab(
  'the ping phase pings a failed pair once more: a late pair stays direct, a broken one is relayed',
  INVENTORY,
  (lab) => {
    const sh = (target: string, script: string) => lab().sh(target, script);

    it('cold up: h-1/p-2 (answering only in the second round) ends direct, h-2/p-2 (never) relayed via p-1', async () => {
      /** site home's router drops the UDP between HOME and p-2 both ways */
      const drop = (op: '-I' | '-D', home: string) =>
        lab().exec('router:home', [
          'sh',
          '-c',
          `iptables -w ${op} FORWARD -s ${home} -d ${P2} -p udp -j DROP && iptables -w ${op} FORWARD -s ${P2} -d ${home} -p udp -j DROP`,
        ]);
      assert.equal((await drop('-I', H1)).code, 0);
      assert.equal((await drop('-I', H2)).code, 0);
      // the late pair's drop goes when h-1 runs a ping with the second round's deadline (-w RECHECK, or fping's -t)
      let running = true;
      let lifted = false;
      const secondRound = new RegExp(` -w ${RECHECK.deadlineSeconds} | -t ${RECHECK.deadlineSeconds * 1000} `);
      const watcher = (async () => {
        while (running && !lifted) {
          const ps = await lab().exec('h-1', ['ps', '-eo', 'args']);
          if (secondRound.test(ps.stdout)) {
            assert.equal((await drop('-D', H1)).code, 0);
            lifted = true;
          } else await new Promise((resolve) => setTimeout(resolve, 200));
        }
      })();
      let report: UpJson;
      try {
        const up = await lab().meshctl(['up', INVENTORY, '--yes', '--json']);
        report = JSON.parse(up.stdout) as UpJson;
        assert.equal(up.code, 0, `${report.result} at ${report.stoppedAt}: ${up.stderr.slice(-800)}`);
      } finally {
        running = false;
        await watcher;
        if (!lifted) await drop('-D', H1);
        await drop('-D', H2);
      }
      assert.equal(report.result, 'converged');
      // only the broken pair was relayed at the gate; the late one answered the second round and stayed direct
      assert.deepEqual(report.fallbackRelays, { pairs: ['h-2 p-2'], relayedAtGate: ['h-2 p-2'], backToDirect: [] });
      assert.ok(lifted, 'h-1 ran the second round (its ping with the second round deadline)');
      assert.equal(report.firstPass?.stoppedAt, 'verify', 'the first pass stopped at the ping gate (on h-2/p-2)');
      for (const from of NODES) for (const to of NODES) if (from !== to) assert.ok(report.matrix!.cells[from]![to]!.ok, `${from} -> ${to}`);
      // the state beside the lab's own copy of the inventory (harness.ts: lab().inventory)
      assert.deepEqual(JSON.parse(readFileSync(`${lab().inventory}.state.json`, 'utf8')).fallbackRelays, ['h-2 p-2']);
      // h-1 has p-2 as a direct peer at its own address; h-2 has none (p-2's /32 rides on p-1's)
      assert.match(await sh('h-1', 'wg show wg0 endpoints'), /\t198\.51\.100\.46:51820$/m);
      assert.doesNotMatch(await sh('h-2', 'wg show wg0 endpoints'), /198\.51\.100\.46/);
      const verify = JSON.parse((await lab().meshctl(['verify', INVENTORY, '--json', '--no-mtu', '--all-checks'])).stdout) as VerifyJson;
      const path = (a: string, b: string) => verify.paths.find((p) => p.a === a && p.b === b);
      assert.equal(path('h-1', 'p-2')?.kind, 'direct');
      assert.equal(path('h-2', 'p-2')?.kind, 'relayed');
      assert.equal(path('h-2', 'p-2')?.via, 'p-1');
    });
  },
  // MESHCTL_LAB names the lab (a helper's own lab name), else a unique one
  { name: process.env.MESHCTL_LAB ?? uniqueLabName('rck') },
);
