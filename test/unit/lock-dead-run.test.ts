/**
 * Finding 11: the lock of a dead run of this same machine (a SIGKILLed `up`) is taken over without --break-lock when
 * provably dead (src/engine/lock.ts DeadRunProof); a live process, a reused pid, another boot or machine, or a holder
 * that started after us: refused as before. The scripts run through a real sh on a temporary path, against this
 * machine's real /proc.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  acquireScript,
  deadRunProof,
  machineBoot,
  newLockHolder,
  parseLockHolder,
  processStart,
  RunLocks,
  type LockHolder,
} from '../../src/engine/lock.js';
import { FakeConnection } from '../support/fake-connection.js';
import { tempDir } from '../support/temp-dir.js';

const sh = (script: string) => execFileSync('sh', ['-c', script], { encoding: 'utf8' }).trim();
const line = (h: LockHolder) => `holder=${h.holder} pid=${h.pid} started=${h.started} run=${h.run} boot=${h.boot} pstart=${h.pstart}\n`;

/** A pid that was a process of this machine and is gone now (a child that has exited and been reaped). */
function deadPid(): number {
  const child = spawnSync('true');
  assert.ok(child.pid && !existsSync(`/proc/${child.pid}`));
  return child.pid;
}

describe('run lock: a dead run of this machine (finding 11)', { skip: machineBoot() === undefined && 'no /proc' }, () => {
  const me = newLockHolder();
  const boot = machineBoot()!;
  const ours = processStart('self')!;
  /** a lock left by a run of this boot that started before this process */
  const left = (over: Partial<LockHolder>): LockHolder => ({
    holder: me.holder,
    pid: deadPid(),
    started: Math.floor(Date.now() / 1000) - 60,
    run: 'deadbeefdeadbeef',
    boot,
    pstart: Math.max(0, ours - 1),
    ...over,
  });
  const attempt = (old: LockHolder) => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    writeFileSync(path, line(old));
    const out = sh(acquireScript(me, 3600, path, deadRunProof()));
    return { out, now: parseLockHolder(readFileSync(path, 'utf8')) };
  };

  it('records this boot and its start time in the lock, and reads them back', () => {
    assert.equal(me.boot, boot);
    assert.match(boot, /^[0-9a-f]{16}$/);
    assert.equal(me.pstart, ours);
    assert.deepEqual(parseLockHolder(line(me)), me);
  });

  it('takes over the lock of a process of this boot that is gone, whatever its age', () => {
    const old = left({});
    const { out, now } = attempt(old);
    assert.ok(out.startsWith(`took-over-dead holder=${me.holder} `), out);
    assert.equal(parseLockHolder(out)?.pid, old.pid);
    assert.equal(now?.run, me.run);
  });

  it("takes it over without first waiting for a release (Q5 4d: RELEASE_WAIT_S per node, twice per run); a live run's is waited for", () => {
    // `sleep` a stub that logs its calls: the release wait is the script's only sleep
    const dir = tempDir('meshctl-lock-');
    const log = join(dir, 'sleeps');
    mkdirSync(join(dir, 'bin'));
    writeFileSync(join(dir, 'bin', 'sleep'), `#!/bin/sh\necho "sleep $*" >> ${log}\n`, { mode: 0o755 });
    const slept = (old: LockHolder) => {
      const path = join(dir, `lock-${old.pid}`);
      writeFileSync(path, line(old));
      writeFileSync(log, '');
      const out = execFileSync('sh', ['-c', acquireScript(me, 3600, path, deadRunProof())], {
        encoding: 'utf8',
        env: { ...process.env, PATH: `${join(dir, 'bin')}:${process.env.PATH}` },
      });
      return { out, sleeps: readFileSync(log, 'utf8').split('\n').filter(Boolean).length };
    };
    const dead = slept(left({}));
    assert.match(dead.out, /^took-over-dead /);
    assert.equal(dead.sleeps, 0, 'a dead run releases nothing: no wait');
    const live = slept(left({ pid: process.pid }));
    assert.match(live.out, /^held /);
    assert.ok(live.sleeps > 0, 'a live run may be releasing its lock: waited for');
  });

  it('refuses a live process, a pid reused by another process, another boot, and a holder started after us', () => {
    const cases: [string, LockHolder][] = [
      ['a live process', left({ pid: process.pid })],
      ['a live pid with another start time (reused)', left({ pid: process.ppid, pstart: 0 })],
      ['another boot or machine', left({ boot: '0123456789abcdef' })],
      ['a holder that started at or after this process', left({ pstart: ours })],
      // a review's findings (stop 25): another operator's run is not ours to take over (hidepid may hide it)
      ['another operator of this machine', left({ holder: `someone-else@${me.holder.split('@')[1]}` })],
    ];
    for (const [what, old] of cases) {
      const { out, now } = attempt(old);
      assert.match(out, /^held /, what);
      assert.equal(now?.run, old.run, `${what}: the lock stays the holder's`);
    }
  });

  it('one taker at a time: while another run takes the same dead lock over (its lock.takeover directory), refused', () => {
    const dir = tempDir('meshctl-lock-');
    const path = join(dir, 'lock');
    const old = left({});
    writeFileSync(path, line(old));
    mkdirSync(`${path}.takeover`);
    assert.match(sh(acquireScript(me, 3600, path, deadRunProof())), /^held /);
    assert.equal(parseLockHolder(readFileSync(path, 'utf8'))?.run, old.run);
    rmdirSync(`${path}.takeover`);
    assert.match(sh(acquireScript(me, 3600, path, deadRunProof())), /^took-over-dead /);
    assert.ok(!existsSync(`${path}.takeover`), 'the taker removes its directory');
  });

  it('refuses without the proof, and a lock without boot= (an older meshctl, another machine)', () => {
    const path = join(tempDir('meshctl-lock-'), 'lock');
    writeFileSync(path, line(left({})));
    assert.match(sh(acquireScript(me, 3600, path)), /^held /, 'no proof sent: as before');
    writeFileSync(path, `holder=root@vm pid=${deadPid()} started=${Math.floor(Date.now() / 1000)} run=abcd\n`);
    assert.match(sh(acquireScript(me, 3600, path, deadRunProof())), /^held /);
  });

  it('says it: "took over the lock of a dead run: pid N, started ..."', async () => {
    const old = left({ pid: 5642, started: 1796140202 });
    const connections = new Map([
      ['ms-1', new FakeConnection('ms-1', [{ match: /take_lock/, reply: () => ({ stdout: `took-over-dead ${line(old)}` }) }])],
    ]);
    const locks = new RunLocks(connections, { breakLock: false, signal: new AbortController().signal });
    assert.equal(await locks.takeFirst(), undefined);
    assert.ok(locks.holds('ms-1'));
    assert.deepEqual(locks.warnings, ['ms-1: took over the lock of a dead run: pid 5642, started 2026-12-01 15:50:02 UTC (root@vm)']);
  });
});
