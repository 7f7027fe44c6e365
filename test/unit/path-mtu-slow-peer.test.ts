/**
 * The path-MTU probe against a peer that is slow to answer (docs/ping-round.md, "Path MTU under load"). In the 32-node
 * bench lab a node whose wireguard-go was held up for 1.5 s at a time answered every ping (which waits 7 s) and
 * failed path MTU with 10 of its 62 pairs: both 1-s DF tries of the expected 1392 bytes went unanswered, then every
 * smaller size of the search passed once the stall was over (captured: `expected=1392 largest=1391 tries=1392:fail
 * 696:ok 1044:ok ... 1391:ok`, the ping 16 of 28 answered at 1,147 ms), and verify reported an MTU black hole that was
 * not there. The expected size's second try (DF_CONFIRM) now waits as long as the ping.
 *
 * The scripts run for real (as root, in an empty network namespace of our own, loopback only) through both
 * branches, ping per peer and fping, against test/fixtures/probes/slow-peer/echo.pl: the kernel's echo replies off,
 * a raw socket answering each echo request DELAY seconds after it came (a held-up WireGuard) and never one over
 * DROP_OVER bytes (an MTU black hole: dropped, no "frag needed").
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pingProbe, type PingParams } from '../../src/checks/probes.js';
import { tempDir } from '../support/temp-dir.js';

const ECHO = join(process.cwd(), 'test/fixtures/probes/slow-peer/echo.pl');
const root = process.getuid?.() === 0;
const netnsWorks = root && spawnSync('unshare', ['--net', '--mount', 'true']).status === 0;
const hasFping = spawnSync('sh', ['-c', 'command -v fping']).status === 0;
const hasPerl = spawnSync('perl', ['-MSocket', '-MTime::HiRes', '-e', '1']).status === 0;

/** verify's round for one peer, with a shorter deadline (4 s, verify's is 7) to keep the test short */
const PARAMS: PingParams = { targets: [{ node: 'slow', ip: '127.0.0.1' }], count: 3, intervalSeconds: 0.05, deadlineSeconds: 4, mtu: 1420 };

/**
 * Runs `script` in a new network namespace (loopback up, the kernel's echo replies off) with echo.pl answering, and
 * with `hideFping` in a mount namespace where fping is /dev/null (the per-peer branch runs). Resolves with its stdout.
 */
function withSlowPeer(
  script: string,
  peer: { delay: number; dropOver: number },
  hideFping: boolean,
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const ready = join(tempDir('meshctl-slow-peer-'), 'ready');
  const hide = hideFping ? 'f=$(command -v fping) && mount --bind /dev/null "$f"; ' : '';
  const setup = [
    `${hide}ip link set lo up && sysctl -qw net.ipv4.icmp_echo_ignore_all=1 || exit 3`,
    `perl ${ECHO} ${peer.delay} ${peer.dropOver} </dev/null >${ready} & peer=$!`,
    `n=0; until grep -q ready ${ready} 2>/dev/null; do n=$((n + 1)); [ $n -lt 100 ] || exit 4; sleep 0.05; done`,
    'sh; rc=$?; kill $peer; exit $rc',
  ].join('\n');
  return new Promise((resolve, reject) => {
    const child = spawn('unshare', ['--net', '--mount', 'sh', '-c', setup], { stdio: ['pipe', 'pipe', 'pipe'], timeout: 90_000 });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(script);
  });
}

async function probeSlowPeer(peer: { delay: number; dropOver: number }, branch: 'ping' | 'fping') {
  const probe = pingProbe(PARAMS);
  const r = await withSlowPeer(probe.script, peer, branch === 'ping');
  assert.equal(r.status, 0, r.stderr);
  const parsed = probe.parse(r.stdout);
  assert.ok(parsed.complete, r.stdout);
  return { ping: parsed.ping.get('127.0.0.1')!, mtu: parsed.mtu.get('127.0.0.1')! };
}

for (const branch of ['ping', 'fping'] as const) {
  const skip = !netnsWorks
    ? 'needs root and unshare --net --mount'
    : !hasPerl
      ? 'needs perl (Socket, Time::HiRes)'
      : branch === 'fping' && !hasFping
        ? 'fping not installed'
        : false;
  describe(`path MTU, ${branch} branch, against a peer that answers late`, { skip, concurrency: true }, () => {
    it('a peer that answers every packet 1.5 s late passes: the ping does, and so does the expected size at its second try', async () => {
      const { ping, mtu } = await probeSlowPeer({ delay: 1.5, dropOver: 65535 }, branch);
      assert.equal(ping.received, 3, JSON.stringify(ping));
      assert.ok(ping.rttMs && ping.rttMs.avg >= 1400, JSON.stringify(ping));
      // before: both tries of 1392 waited 1 s, then every size of the search too: largest 0, "MTU black hole"
      assert.deepEqual(mtu, {
        expected: 1392,
        largest: 1392,
        ok: true,
        tries: [
          { size: 1392, ok: false },
          { size: 1392, ok: true },
        ],
      });
    });

    it('a real black hole (packets over 1300 bytes dropped, no frag needed) still fails, largest 1272', async () => {
      const { ping, mtu } = await probeSlowPeer({ delay: 0, dropOver: 1300 }, branch);
      assert.equal(ping.received, 3, JSON.stringify(ping));
      assert.equal(mtu.ok, false);
      assert.equal(mtu.largest, 1272);
      assert.deepEqual(mtu.tries.slice(0, 2), [
        { size: 1392, ok: false },
        { size: 1392, ok: false },
      ]);
    });

    it('a black hole behind a late peer still fails', async () => {
      const { ping, mtu } = await probeSlowPeer({ delay: 1.5, dropOver: 1300 }, branch);
      assert.equal(ping.received, 3, JSON.stringify(ping));
      assert.equal(mtu.ok, false, JSON.stringify(mtu));
    });
  });
}
