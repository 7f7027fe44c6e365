/**
 * Issue 10: the run lock's release costs the node one shell and its `rm`: it is started with no remote deadline
 * (nothing in it can hang), so no `timeout` process wraps it, and the login's own shell runs the script (no second
 * `sh`). Counted through logging `sh` and `timeout` shims on PATH, never timed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newLockHolder, releaseScript, RunLocks } from '../../src/engine/lock.js';
import { wrapCommand } from '../../src/transport/ssh.js';
import type { Connection } from '../../src/transport/types.js';
import { FakeConnection } from '../support/fake-connection.js';
import { tempDir } from '../support/temp-dir.js';

test('RunLocks.release starts its script with no remote deadline', async () => {
  const options: Array<{ timeoutMs?: number } | undefined> = [];
  const fake = Object.assign(new FakeConnection('a', [{ match: /take_lock/, reply: { stdout: 'acquired\n' } }]), {
    async start(_script: string, o?: { timeoutMs?: number }): Promise<void> {
      options.push(o);
    },
  }) as Connection;
  const locks = new RunLocks(new Map([['a', fake]]), { breakLock: false, signal: new AbortController().signal });
  assert.equal(await locks.takeFirst(), undefined);
  await locks.release();
  assert.deepEqual(options, [{ timeoutMs: 0 }]);
});

test('a started script without a deadline runs in the login shell itself: one sh, no timeout, and it does its work', () => {
  const dir = tempDir('meshctl-release-procs-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'execs');
  for (const tool of ['sh', 'timeout']) {
    const real = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    writeFileSync(join(bin, tool), `#!/bin/sh\necho ${tool} >> ${log}\nexec ${real} "$@"\n`, {
      mode: 0o755,
    });
  }
  const holder = newLockHolder();
  const lock = join(dir, 'lock');
  writeFileSync(lock, `holder=${holder.holder} pid=${holder.pid} started=${holder.started} run=${holder.run}\n`);
  // as SshConnection.start wraps it for RunLocks.release (inline, timeoutMs 0), run as sshd runs a command
  const w = wrapCommand(releaseScript(holder, lock), { sudo: false, timeoutMs: 0, token: '0123456789abcdef', inline: true });
  const r = spawnSync(join(bin, 'sh'), ['-c', w.command], { encoding: 'utf8', env: { PATH: `${bin}:${process.env.PATH}` } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(existsSync(lock), false, 'the lock was removed');
  assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean), ['sh', 'sh'], 'the login shell and the guard, nothing more');
  // with a deadline (the default of start): timeout and a second sh, as before
  writeFileSync(log, '');
  const timed = wrapCommand('true', { sudo: false, timeoutMs: 60_000, inline: true });
  assert.equal(spawnSync(join(bin, 'sh'), ['-c', timed.command], { env: { PATH: `${bin}:${process.env.PATH}` } }).status, 0);
  assert.deepEqual(readFileSync(log, 'utf8').split('\n').filter(Boolean), ['sh', 'sh', 'timeout', 'sh']);
});
