/**
 * The one /proc scan for control masters (scripts/bench/control-master.ts), shared by the bench and the lab test of
 * --control-persist (test/lab/control-persist.test.ts, which had its own copy): it finds a process by its command
 * line (`__control-master --socket DIR/...`) under one directory only, and ends it with the signal asked for (the lab
 * test's `after` needs SIGKILL: its copy sent any signal, the bench's only SIGTERM). The "master" here is a shell
 * that ignores SIGTERM, spawned with that command line; it and its child are killed at the end whatever happened.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { controlMasters, endControlMasters } from '../../scripts/bench/control-master.js';

const dir = mkdtempSync(join(tmpdir(), 'meshctl-cm-scan-'));
const other = mkdtempSync(join(tmpdir(), 'meshctl-cm-scan-other-'));
// `sh -c SCRIPT NAME ARGS...`: the arguments stay on the shell's command line; SIGTERM is ignored
const fake = spawn('sh', ['-c', "trap '' TERM; sleep 30 & wait; :", '__control-master', '--socket', join(dir, 'node.sock')], {
  detached: true,
  stdio: 'ignore',
});
after(() => {
  try {
    process.kill(-fake.pid!, 'SIGKILL');
  } catch {
    // gone
  }
  rmSync(dir, { recursive: true, force: true });
  rmSync(other, { recursive: true, force: true });
});

const until = async (test: () => boolean) => {
  for (let i = 0; i < 100 && !test(); i++) await new Promise((r) => setTimeout(r, 20));
};

describe('control masters found by their command line', () => {
  it('finds the master of its directory only, and ends it with the signal asked for', async () => {
    await until(() => controlMasters(dir).length > 0);
    assert.deepEqual(controlMasters(dir), [fake.pid]);
    assert.deepEqual(controlMasters(other), []);
    // SIGTERM is ignored by this one: it stays
    endControlMasters(dir);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(controlMasters(dir), [fake.pid]);
    endControlMasters(dir, 'SIGKILL');
    await until(() => controlMasters(dir).length === 0);
    assert.deepEqual(controlMasters(dir), []);
  });
});
