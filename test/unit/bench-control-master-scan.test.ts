/**
 * The one /proc scan for control masters (scripts/bench/control-master.ts), shared by the bench and the lab test of
 * --control-persist (test/lab/control-persist.test.ts, which had its own copy): it finds a process by its command
 * line (`__control-master --socket DIR/...`) under one directory only, and ends it with the signal asked for (the lab
 * test's `after` needs SIGKILL: its copy sent any signal, the bench's only SIGTERM). The "master" here is a node
 * process that ignores SIGTERM, spawned with that command line, killed at the end whatever happened. Not a shell: a
 * shell's `sleep &` forks a child with the shell's own command line until it execs, and the scan saw two masters
 * (seen in the unit suite under load).
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
// `node -e SCRIPT ARGS...`: the arguments stay on its command line; SIGTERM is ignored; it forks nothing
const fake = spawn(
  process.execPath,
  [
    '-e',
    "process.on('SIGTERM', () => undefined); setTimeout(() => undefined, 30_000); process.stdout.write('ready')",
    '__control-master',
    '--socket',
    join(dir, 'node.sock'),
  ],
  { detached: true, stdio: ['ignore', 'pipe', 'ignore'] },
);
// its SIGTERM handler is in place once it says so (a TERM before that would end it)
const ready = new Promise<void>((resolve) => fake.stdout!.once('data', () => resolve()));
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
    await ready;
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
