/**
 * A node whose boot goes wrong. systemd finishes "degraded" with /run/nologin still there (a unit failed before
 * systemd-user-sessions removed it): that node will not get better by waiting. `lab up` names the failed unit,
 * boots the node once more, and gives up cleanly when the second boot goes wrong too.
 * The fault is real: a drop-in in the node's own root makes systemd-user-sessions.service fail.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { labDown, labExec, labUp } from '../../src/lab/index.js';
import { MeshctlError } from '../../src/errors.js';
import { labSkipReason, leftovers, sshArgv, uniqueLabName } from './harness.js';

const scratch = mkdtempSync(join(tmpdir(), 'meshctl-boot-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

const inventory = join(scratch, 'two-public.yaml');
writeFileSync(
  inventory,
  'mesh:\n  network: 172.27.15.0/24\nsites:\n  cloud:\n    public: true\nnodes:\n' +
    '  solo-1:\n    site: cloud\n    address: 198.51.100.25\n    overlayIp: 172.27.15.31\n' +
    '  solo-2:\n    site: cloud\n    address: 198.51.100.26\n    overlayIp: 172.27.15.32\n    ssh: { user: ops, become: sudo }\n',
);

/** Makes solo-2's systemd-user-sessions.service fail: on every boot, or only on the first one. */
function breakUserSessions(mode: 'always' | 'first boot') {
  return (node: string, root: string) => {
    if (node !== 'solo-2') return;
    const dir = join(root, 'etc/systemd/system/systemd-user-sessions.service.d');
    mkdirSync(dir, { recursive: true });
    const pre =
      mode === 'always'
        ? '/bin/false'
        : "/bin/sh -c 'test -e /var/lib/meshctl-test-booted || { touch /var/lib/meshctl-test-booted; exit 1; }'";
    writeFileSync(join(dir, 'meshctl-test-fault.conf'), `[Service]\nExecStartPre=${pre}\n`);
  };
}

describe('lab up with a node whose boot goes wrong', { skip: labSkipReason() }, () => {
  it('boots it once more after a warning naming the failed unit; the node then takes logins', async () => {
    const name = uniqueLabName('b');
    const messages: string[] = [];
    try {
      const state = await labUp(inventory, { name, progress: (m) => messages.push(m), beforeBoot: breakUserSessions('first boot') });
      const log = messages.join('\n');
      // another unit may fail beside the broken one on a loaded host (seen once in CI: systemd-sysctl.service, a
      // cgroup spawn race); the list must still name ours
      assert.match(
        log,
        /warning: node solo-2 not ready after \d+ s: systemd degraded nologin, .*failed units: (?:[\w@.-]+\.service, )*systemd-user-sessions\.service/,
      );
      assert.match(log, /booting solo-2 once more/);
      assert.doesNotMatch(log, /solo-1 not ready/, 'the healthy node booted once');
      // pam_nologin refuses non-root users while /run/nologin exists: the sudo user's login proves the second boot is whole
      const ops = await labExec(name, 'operator', sshArgv(state, 'solo-2', 'ops', 'hostname; sudo -n systemctl is-system-running'));
      assert.deepEqual(ops.stdout.trim().split('\n'), ['solo-2', 'running'], ops.stderr);
    } finally {
      await labDown(name);
    }
    assert.deepEqual(await leftovers(name), []);
  });

  it('gives up when the second boot goes wrong too: the error names the unit and its journal; nothing is left', async () => {
    const name = uniqueLabName('b');
    const messages: string[] = [];
    let failure: unknown;
    try {
      await labUp(inventory, { name, progress: (m) => messages.push(m), beforeBoot: breakUserSessions('always') });
    } catch (error) {
      failure = error;
    } finally {
      await labDown(name);
    }
    assert.ok(failure instanceof MeshctlError, `lab up should fail, got ${String(failure)}`);
    assert.equal(failure.exitCode, 1);
    assert.match(
      failure.message,
      /node solo-2 not ready after \d+ s: systemd degraded nologin, .*failed units: systemd-user-sessions\.service; its journal ends:/,
    );
    // it fails as soon as the boot is known to be stuck, not after the 90 s readiness timeout
    const waited = [...failure.message.matchAll(/not ready after (\d+) s/g)].map((m) => Number(m[1]));
    assert.ok(
      waited.every((s) => s < 60),
      `waited ${waited.join(', ')} s`,
    );
    assert.equal(messages.filter((m) => /booting solo-2 once more/.test(m)).length, 1, 'exactly one more boot');
    assert.deepEqual(await leftovers(name), []);
  });
});
