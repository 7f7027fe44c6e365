/**
 * Issue 10: the ping round's echo interval. DEFAULT_PING sends its 3 echo requests 0.05 s apart (0.2 s before), so a
 * converged pair answers in ~0.1 s instead of ~0.4 s, with the same count and the same deadline; the path-MTU probe's
 * DF requests (DF_PROBE) follow. The scripts are run for real (as root, in an empty network namespace of our own:
 * loopback only) through both branches, ping per peer and fping, to show that the tools take these intervals.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { DEFAULT_PING, pingParamsFor } from '../../src/checks/ping-matrix.js';
import { DF_PROBE, pingProbe } from '../../src/checks/probes.js';
import { REKEY_TIMEOUT_S } from '../../src/remote/wireguard.js';

const targets = [
  { node: 'self', ip: '127.0.0.9' },
  { node: 'a', ip: '127.0.0.1' },
  { node: 'b', ip: '127.0.0.2' },
];

test('DEFAULT_PING: the same 3 echoes and deadline, 0.05 s apart (a converged pair: 0.1 s of intervals, was 0.4 s)', () => {
  assert.equal(DEFAULT_PING.count, 3);
  assert.equal(DEFAULT_PING.deadlineSeconds, REKEY_TIMEOUT_S + 2);
  assert.equal(DEFAULT_PING.intervalSeconds, 0.05);
  assert.ok((DEFAULT_PING.count - 1) * DEFAULT_PING.intervalSeconds <= 0.1 + 1e-9);
  assert.deepEqual(DF_PROBE, { count: 2, intervalSeconds: 0.05, waitSeconds: 1 });
});

test('the ping script asks both tools for that interval, the DF probes too', () => {
  const { script } = pingProbe(pingParamsFor('self', targets, { mtu: 1420 }));
  // per peer (the peers are the positional parameters): ping, and its DF probe beside it (the one dfok below)
  assert.match(script, /^set -- (.* )?'?127\.0\.0\.1'?( |$)/m);
  assert.match(script, /ping -n -q -c 3 -i 0\.05 -w 7 "\$ip" /);
  assert.match(script, /ping -n -q -M do -s 1392 -c 2 -i 0\.05 -W 1 "\$ip" >\/dev\/null 2>&1 & df=\$!/);
  // fping: -p is the interval per target in ms, the DF fping and the fallback dfok the same
  assert.match(script, /fping -q -c 3 -p 50 -i 1 -t 7000 /);
  assert.match(script, /fping -q -M -b 1392 -c 2 -p 50 -i 1 -t 1000 /);
  assert.match(script, /dfok\(\) \{ ping -n -q -M do -s "\$2" -c 2 -i 0\.05 -W 1 "\$1" /);
  assert.doesNotMatch(script, /-i 0\.2\b|-p 200\b/);
});

const root = process.getuid?.() === 0;
const netnsWorks = root && spawnSync('unshare', ['--net', '--mount', 'true']).status === 0;
const hasFping = spawnSync('sh', ['-c', 'command -v fping']).status === 0;

/**
 * Runs `script` in a new, empty network namespace (loopback up, nothing else) and, with `hideFping`, a mount namespace
 * where fping is /dev/null (not executable: `command -v fping` finds nothing and the per-peer branch runs).
 */
function inEmptyNetns(script: string, hideFping: boolean) {
  const hide = hideFping ? 'f=$(command -v fping) && mount --bind /dev/null "$f"; ' : '';
  return spawnSync('unshare', ['--net', '--mount', 'sh', '-c', `${hide}ip link set lo up && exec sh`], {
    input: script,
    encoding: 'utf8',
    timeout: 60_000,
  });
}

for (const branch of ['ping', 'fping'] as const) {
  const skip = !netnsWorks ? 'needs root and unshare --net --mount' : branch === 'fping' && !hasFping ? 'fping not installed' : false;
  test(`${branch} branch, run as root: every pair answers all 3 echoes at the 0.05 s interval, path MTU found`, { skip }, () => {
    const probe = pingProbe(pingParamsFor('self', targets, { mtu: 1420 }));
    const r = inEmptyNetns(probe.script, branch === 'ping');
    assert.equal(r.status, 0, r.stderr);
    // iputils' summary has the time it took; the fping branch's (converted from fping's) has not
    const iputilsSummary = /3 received, 0% packet loss, time \d+ms/;
    if (branch === 'ping') assert.match(r.stdout, iputilsSummary);
    else assert.doesNotMatch(r.stdout, iputilsSummary);
    const parsed = probe.parse(r.stdout);
    assert.ok(parsed.complete);
    for (const ip of ['127.0.0.1', '127.0.0.2']) {
      const ping = parsed.ping.get(ip)!;
      assert.deepEqual([ping.transmitted, ping.received, ping.rc], [3, 3, 0], `${ip}: ${JSON.stringify(ping)}`);
      assert.equal(ping.error, undefined);
      const mtu = parsed.mtu.get(ip)!;
      assert.deepEqual([mtu.ok, mtu.largest], [true, 1392], `${ip}: ${JSON.stringify(mtu)}`);
    }
  });
}
