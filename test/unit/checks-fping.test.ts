/**
 * The ping script's fping branch (one fping for every peer, issue 10) against the real fping, in an empty network
 * namespace of our own (`unshare --net`, loopback only, so nothing leaves it): the same sections, parsed to the
 * same results, as the per-peer ping branch, including the path-MTU fallback to the binary search.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { FPING_TO_SECTIONS_AWK, parsePingOutput, pingProbe, type PingParams } from '../../src/checks/probes.js';

const skip =
  process.getuid?.() !== 0
    ? 'needs root (unshare --net)'
    : spawnSync('sh', ['-c', 'command -v fping']).status !== 0
      ? 'fping not installed'
      : spawnSync('unshare', ['--net', 'true']).status !== 0
        ? 'unshare --net does not work here'
        : undefined;

/** runs a script in a fresh, empty network namespace whose loopback is up with MTU `mtu` */
const inEmptyNetns = (script: string, mtu = 65536) =>
  spawnSync('unshare', ['--net', 'sh', '-c', `ip link set lo up mtu ${mtu} && exec sh`], {
    input: script,
    encoding: 'utf8',
    timeout: 60_000,
  });

const params = (mtu?: number): PingParams => ({
  targets: [
    { node: 'a', ip: '127.0.0.1' },
    { node: 'b', ip: '127.0.0.2' },
    { node: 'gone', ip: '192.0.2.9' }, // no route in the empty namespace
  ],
  count: 3,
  intervalSeconds: 0.2,
  deadlineSeconds: 2,
  ...(mtu !== undefined ? { mtu } : {}),
});

test('fping branch: one fping for all peers, sections as the ping branch has them', { skip: skip ?? false }, () => {
  const probe = pingProbe(params());
  assert.match(probe.script, /command -v fping/);
  const r = inEmptyNetns(probe.script);
  assert.equal(r.status, 0, r.stderr);
  const parsed = probe.parse(r.stdout);
  assert.ok(parsed.complete);
  const a = parsed.ping.get('127.0.0.1')!;
  assert.deepEqual([a.transmitted, a.received, a.loss, a.rc], [3, 3, 0, 0]);
  assert.ok(a.rttMs && a.rttMs.avg > 0);
  assert.equal(parsed.ping.get('127.0.0.2')!.received, 3);
  const gone = parsed.ping.get('192.0.2.9')!;
  assert.deepEqual([gone.received, gone.loss, gone.rc], [0, 100, 1]);
});

test('fping branch with path MTU: one DF fping, binary search only for peers that fail it', { skip: skip ?? false }, () => {
  // loopback MTU 1300: the expected 1392-byte payload (MTU 1420) does not pass, 1272 does (1300 - 28)
  const probe = pingProbe(params(1420));
  const r = inEmptyNetns(probe.script, 1300);
  assert.equal(r.status, 0, r.stderr);
  const parsed = probe.parse(r.stdout);
  assert.ok(parsed.complete);
  const m = parsed.mtu.get('127.0.0.1')!;
  assert.equal(m.expected, 1392);
  assert.equal(m.largest, 1272);
  assert.equal(m.ok, false);
  assert.deepEqual(m.tries[0], { size: 1392, ok: false });
  assert.equal(parsed.mtu.get('192.0.2.9')!.skipped, true);
  // and at the full MTU, one DF probe per peer passes
  const healthy = probe.parse(inEmptyNetns(probe.script).stdout);
  assert.deepEqual(healthy.mtu.get('127.0.0.2'), { expected: 1392, largest: 1392, ok: true, tries: [{ size: 1392, ok: true }] });
});

test('fping summaries (fping 5.1, captured) become ping sections', () => {
  const captured = [
    '127.0.0.1 : xmt/rcv/%loss = 3/3/0%, min/avg/max = 0.047/0.057/0.073',
    '10.9.0.7  : xmt/rcv/%loss = 2/1/50%, min/avg/max = 0.052/0.067/0.082',
    '192.0.2.9 : xmt/rcv/%loss = 2/0/100%',
  ].join('\n');
  const r = spawnSync('awk', [FPING_TO_SECTIONS_AWK], { input: `${captured}\n`, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const p: PingParams = { ...params(), targets: ['127.0.0.1', '10.9.0.7', '192.0.2.9'].map((ip) => ({ node: ip, ip })) };
  const parsed = parsePingOutput(r.stdout, p);
  assert.deepEqual(parsed.ping.get('127.0.0.1'), {
    transmitted: 3,
    received: 3,
    loss: 0,
    rttMs: { min: 0.047, avg: 0.057, max: 0.073 },
    rc: 0,
  });
  assert.deepEqual(parsed.ping.get('10.9.0.7'), {
    transmitted: 2,
    received: 1,
    loss: 50,
    rttMs: { min: 0.052, avg: 0.067, max: 0.082 },
    rc: 1,
  });
  assert.deepEqual(parsed.ping.get('192.0.2.9'), { transmitted: 2, received: 0, loss: 100, rc: 1 });
});
