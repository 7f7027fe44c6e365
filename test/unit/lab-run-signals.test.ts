/**
 * `meshctl lab run` / `lab exec` (src/lab/sys.ts runInherit): a SIGTERM or SIGHUP to the wrapper's process group
 * reaches the child too; the wrapper waits for the child and exits with its code instead of dying at once (a new
 * user saw `lab run -- up` under timeout(1) return 143 while the meshctl inside was still cleaning up).
 * The signal is sent to this very process: on the old code the test process dies of it, which fails the file.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runInherit } from '../../src/lab/sys.js';

test('SIGTERM and SIGHUP while the child runs: the wrapper lives on and returns the child code', async () => {
  for (const signal of ['TERM', 'HUP']) {
    // the child signals its parent (this process), then finishes its own work and exits 7
    const code = await runInherit(['sh', '-c', `kill -${signal} $PPID; sleep 0.3; exit 7`]);
    assert.equal(code, 7, signal);
  }
  // the handlers are gone with the child: nothing of ours is left listening
  assert.equal(process.listenerCount('SIGTERM'), 0);
  assert.equal(process.listenerCount('SIGHUP'), 0);
});
