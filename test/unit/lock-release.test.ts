/**
 * Issue 10: the run lock's release is started on every node and not waited for to its end (Connection.start), and a
 * run that finds a lock waits RELEASE_WAIT_S for it to go (the run before may have ended a moment ago). The scripts
 * run through a real sh; the waiting is shown by order (a `sleep` shim marks that the script waits), not by time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { acquireScript, newLockHolder, releaseScript, RELEASE_WAIT_S, RunLocks } from '../../src/engine/lock.js';
import type { Connection } from '../../src/transport/types.js';
import { FakeConnection } from '../support/fake-connection.js';
import { tempDir } from '../support/temp-dir.js';

const signal = new AbortController().signal;

/** A fake whose lock is taken, with `start` recording what it starts (or refusing to start anything). */
function startable(name: string, started: string[], refuse = false): Connection & { scripts: string[] } {
  const fake = new FakeConnection(name, [
    { match: /take_lock/, reply: { stdout: 'acquired\n' } },
    { match: /rm -f/, reply: {} },
  ]);
  return Object.assign(fake, {
    async start(script: string): Promise<void> {
      if (refuse) throw new Error('open failed');
      started.push(`${name}: ${script}`);
    },
  });
}

describe('RunLocks.release, issue 10', () => {
  it('starts the release on every node it asked, through start, and runs nothing more there', async () => {
    const started: string[] = [];
    const connections = new Map([
      ['a', startable('a', started)],
      ['b', startable('b', started)],
    ]);
    const locks = new RunLocks(connections, { breakLock: false, signal });
    assert.equal(await locks.takeFirst(), undefined);
    assert.equal(await locks.takeRest(), undefined);
    await locks.release();
    const script = releaseScript(locks.holder);
    assert.deepEqual(started.sort(), [`a: ${script}`, `b: ${script}`]);
    for (const c of connections.values())
      assert.deepEqual(
        c.scripts.filter((s) => s === script),
        [],
        'no release round trip',
      );
  });

  it('a release that cannot be started runs as before; a connection without start runs it', async () => {
    const started: string[] = [];
    const refusing = startable('a', started, true);
    const plain = new FakeConnection('b', [
      { match: /take_lock/, reply: { stdout: 'acquired\n' } },
      { match: /rm -f/, reply: {} },
    ]);
    const locks = new RunLocks(
      new Map<string, Connection>([
        ['a', refusing],
        ['b', plain],
      ]),
      { breakLock: false, signal },
    );
    await locks.takeFirst();
    await locks.takeRest();
    await locks.release();
    assert.deepEqual(started, []);
    const script = releaseScript(locks.holder);
    assert.equal(refusing.scripts.filter((s) => s === script).length, 1);
    assert.equal(plain.scripts.filter((s) => s === script).length, 1);
  });
});

/** Runs `script` with a `sleep` that first touches `mark` (so the test sees the script waiting); its stdout. */
function runWithSleepShim(script: string, dir: string): { mark: string; done: Promise<string> } {
  const bin = join(dir, 'bin');
  const mark = join(dir, 'sleeping');
  rmSync(bin, { recursive: true, force: true });
  mkdirSync(bin, { recursive: true });
  writeFileSync(join(bin, 'sleep'), `#!/bin/sh\n: > ${mark}\nexec /bin/sleep "$@"\n`);
  chmodSync(join(bin, 'sleep'), 0o755);
  const child = spawn('sh', ['-c', script], { env: { ...process.env, PATH: `${bin}:${process.env.PATH}` } });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return { mark, done: new Promise((resolve) => child.on('close', () => resolve(out.trim()))) };
}

describe('acquireScript waits for a lock being released (real sh), issue 10', () => {
  it('a lock removed while the script waits is taken: acquired, not held', async () => {
    assert.equal(RELEASE_WAIT_S, 1);
    const dir = tempDir('meshctl-lock-wait-');
    const path = join(dir, 'lock');
    const ending = newLockHolder();
    writeFileSync(path, `holder=${ending.holder} pid=${ending.pid} started=${ending.started} run=${ending.run}\n`);
    const me = newLockHolder();
    const { mark, done } = runWithSleepShim(acquireScript(me, 3600, path), dir);
    // the script found the lock held and waits (its first sleep): now the ending run's release lands
    for (let i = 0; i < 1200 && !existsSync(mark); i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(existsSync(mark), 'the script did not wait');
    rmSync(path);
    assert.equal(await done, 'acquired');
  });

  it('a lock still there after the wait is held; --break-lock (break-after 0) takes it at once, without waiting', async () => {
    const dir = tempDir('meshctl-lock-wait-');
    const path = join(dir, 'lock');
    const other = { ...newLockHolder(), holder: 'ops@laptop', pid: 4242 };
    writeFileSync(path, `holder=${other.holder} pid=${other.pid} started=${other.started} run=${other.run}\n`);
    const held = runWithSleepShim(acquireScript(newLockHolder(), 3600, path), dir);
    assert.match(await held.done, /^held holder=ops@laptop /);
    assert.ok(existsSync(held.mark));
    rmSync(held.mark);
    const broke = runWithSleepShim(acquireScript(newLockHolder(), 0, path), dir);
    assert.match(await broke.done, /^took-over holder=ops@laptop /);
    assert.equal(existsSync(broke.mark), false, 'no wait with --break-lock');
  });
});
