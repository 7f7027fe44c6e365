/**
 * Issue 10 (node-side cost): the ping round's per-peer branch (no fping: Debian's default, and every lab node) forks
 * fewer shells per peer. On a 16-node lab node (strace, 2026-12-01) each peer's job forked a `( )` function body, a
 * `$(printf ...)` for its MTU section, and ran the DF ping beside the ping as a background `dfok` call (a fork before
 * the ping's own); verify's round runs it for every peer of every node. Now the job is a `{ }` body, the MTU section
 * is appended by the shell and the DF ping beside is a background simple command (src/checks/probes.ts
 * perPeerFunction).
 *
 * test/fixtures/probes/ping-forks/{verify,up}-old.sh are pingScript's text before this change (commit b1d2504) for
 * three peers: verify's round (3 pings, path MTU 1420) and up's (one reply, no MTU). Both old and new run in this
 * host's shell against a stand-in `ping` (iputils' summary; DF pings above 1000 bytes get no reply, for the third
 * peer, so its MTU search runs): the same output, and fewer processes between the script's shell and each ping.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePingOutput, pingScript, type PingParams } from '../../src/checks/probes.js';
import { PATH_PRELUDE } from '../../src/facts/sections.js';
import { tempDir } from '../support/temp-dir.js';

const FIXTURES = 'test/fixtures/probes/ping-forks';
const targets = [
  { node: 'a', ip: '10.0.0.1' },
  { node: 'b', ip: '10.0.0.2' },
  { node: 'c', ip: '10.0.0.3' },
];
const VERIFY: PingParams = { targets, count: 3, intervalSeconds: 0.05, deadlineSeconds: 7, mtu: 1420 };
const UP: PingParams = { targets, count: 1, intervalSeconds: 0.05, deadlineSeconds: 2 };

/**
 * Runs a ping script with a stand-in ping that logs, per run, its arguments and its ancestry: the number of processes
 * between it and the script's own shell (1: a child of that shell). Returns the stdout and those lines.
 */
function run(script: string) {
  const dir = tempDir('meshctl-ping-forks-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'pings');
  writeFileSync(log, '');
  writeFileSync(
    join(bin, 'ping'),
    [
      '#!/bin/sh',
      'args="$*"',
      // hops up the parent chain to the script's shell ($MC_MAIN): /proc/PID/stat's 4th field, after "(comm) STATE"
      'p=$$; n=0',
      'while [ "$p" != "$MC_MAIN" ] && [ "$p" -gt 1 ]; do read -r s < /proc/$p/stat; set -- ${s##*) }; p=$2; n=$((n + 1)); done',
      `echo "$n $args" >> ${log}`,
      'case "$args" in *"-M do "*) size=${args#*-s }; size=${size%% *}; case "$args" in *10.0.0.3) [ "$size" -le 1000 ] || exit 1;; esac; exit 0;; esac',
      'ip=${args##* }',
      'printf "\\n--- %s ping statistics ---\\n3 packets transmitted, 3 received, 0%% packet loss, time 101ms\\nrtt min/avg/max/mdev = 0.040/0.050/0.070/0.010 ms\\n" "$ip"',
    ].join('\n'),
  );
  chmodSync(join(bin, 'ping'), 0o755);
  const local = script.replace(PATH_PRELUDE, `export LC_ALL=C PATH=${bin}` /* nothing else: no fping */);
  assert.notEqual(local, script, 'the script starts with PATH_PRELUDE');
  const out = spawnSync('/bin/sh', ['-c', `MC_MAIN=$$; export MC_MAIN\n${local}`], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const pings = readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [hops, ...args] = line.split(' ');
      return { hops: Number(hops), df: args.includes('-M'), args: args.join(' ').trim() };
    });
  return { stdout: out.stdout, pings };
}

/** Sections in a fixed order: the peers' jobs end in any order. */
const sorted = (stdout: string) =>
  stdout
    .split(/(?=^@@meshctl begin )/m)
    .sort()
    .join('');

describe('the ping round without fping: fewer forks per peer, the same output (issue 10)', {
  skip: !existsSync('/proc/self/stat') && 'no /proc',
}, () => {
  for (const [name, params, old] of [
    ["verify's round (path MTU)", VERIFY, 'verify-old.sh'],
    ["up's round", UP, 'up-old.sh'],
  ] as const)
    it(`${name}: the same output as the old script`, () => {
      const now = run(pingScript(params));
      const before = run(readFileSync(join(FIXTURES, old), 'utf8'));
      // one difference by design: the expected size's second try (DF_CONFIRM) is in `tries` now, beside the first
      assert.equal(sorted(now.stdout).replace('tries=1392:fail 1392:fail ', 'tries=1392:fail '), sorted(before.stdout));
      // not vacuous: every peer answered, and the third peer's MTU search ran (DF pings above 1000 bytes fail)
      const parsed = parsePingOutput(now.stdout, params);
      assert.deepEqual(
        [...parsed.ping.values()].map((p) => p.received),
        [3, 3, 3],
      );
      if (params.mtu !== undefined) {
        assert.deepEqual(
          [...parsed.mtu.values()].map((m) => m.largest),
          [1392, 1392, 1000],
        );
        assert.ok(parsed.mtu.get('10.0.0.3')!.tries.length > 5);
      }
      assert.equal(parsed.complete, true);
    });

  it("verify's round: each peer's ping and its DF ping beside it two processes below the script's shell (were three and four)", () => {
    const { pings } = run(pingScript(VERIFY));
    const byPeer = (ip: string) => pings.filter((p) => p.args.endsWith(ip));
    for (const { ip } of targets) {
      // the ping: the peer's job, then the ping's command substitution (which execs ping)
      assert.deepEqual(
        byPeer(ip)
          .filter((p) => !p.df)
          .map((p) => p.hops),
        [2],
        ip,
      );
      // the DF ping beside it (the first DF ping): the peer's job, then the background ping
      assert.equal(byPeer(ip).find((p) => p.df)?.hops, 2, ip);
    }
    const old = run(readFileSync(join(FIXTURES, 'verify-old.sh'), 'utf8')).pings;
    assert.deepEqual(
      old.filter((p) => !p.df).map((p) => p.hops),
      [3, 3, 3],
    );
    assert.equal(old.find((p) => p.df)?.hops, 4);
  });

  it("up's round: each ping two processes below the script's shell (was three)", () => {
    assert.deepEqual(
      run(pingScript(UP)).pings.map((p) => p.hops),
      [2, 2, 2],
    );
    assert.deepEqual(
      run(readFileSync(join(FIXTURES, 'up-old.sh'), 'utf8')).pings.map((p) => p.hops),
      [3, 3, 3],
    );
  });

  it('no command substitution of printf in the per-peer job (a fork for text the shell can append)', () => {
    const perPeer = pingScript(VERIFY).split('mc_peer() {')[1]!.split('\n}\n')[0]!;
    assert.doesNotMatch(perPeer, /\$\(printf/);
    assert.match(readFileSync(join(FIXTURES, 'verify-old.sh'), 'utf8'), /\$\(printf/);
  });
});
