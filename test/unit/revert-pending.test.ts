/**
 * The node side of an earlier run's pending rollback (src/engine/revert.ts): the facts probe's section lists it,
 * `up`'s confirmation cancels it, and `down` (src/steps/down.ts) cancels every one before it stops the interface (a
 * new user's finding, 2026-12-01: a pending revert brought wg0 back after `down`). The scripts run under a real `sh`,
 * with `systemctl` and `systemd-run` replaced by stubs that log what they were asked (`systemctl is-active` answers
 * yes), and /run/meshctl moved into a temporary directory (nothing of the host is touched).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import {
  armScript,
  CANCEL_LOCK_WAIT_S,
  cancelAllRollbacksScript,
  confirmPendingScript,
  parsePendingRollbacks,
  pendingRollbacksScript,
} from '../../src/engine/revert.js';
import { DOWN_DEADLINE_S, describeDownChange, parseDownProbe, planDown } from '../../src/steps/down.js';

const RUN = { runId: '0123456789abcdef', deadlineS: 120 };
const OTHER = { runId: 'fedcba9876543210', deadlineS: 120 };
const root = mkdtempSync(join(tmpdir(), 'meshctl-revert-pending-'));
after(() => rmSync(root, { recursive: true, force: true }));
const bin = join(root, 'bin');
mkdirSync(bin);
for (const name of ['systemctl', 'systemd-run']) {
  writeFileSync(join(bin, name), `#!/bin/sh\necho "${name} $*" >> "$STUB_LOG"\n`);
  chmodSync(join(bin, name), 0o755);
}

/** Runs `script` with the stubs first on PATH and /run/meshctl moved under `caseDir`; returns its stdout. */
function run(caseDir: string, script: string): string {
  mkdirSync(join(caseDir, 'run'), { recursive: true });
  const result = spawnSync('sh', ['-c', script.replaceAll('/run/meshctl/', `${caseDir}/run/`)], {
    env: { PATH: `${bin}:/usr/bin:/bin`, STUB_LOG: join(caseDir, 'log') },
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
  return result.stdout;
}
const stubLog = (caseDir: string) => (existsSync(join(caseDir, 'log')) ? readFileSync(join(caseDir, 'log'), 'utf8') : '');

describe('an earlier run’s pending rollback on the node', () => {
  it('the facts section lists an armed run with its deadline, and not one whose revert already ran', () => {
    const caseDir = join(root, 'list');
    run(caseDir, armScript('wg0', RUN, true, 'config'));
    const pending = parsePendingRollbacks(run(caseDir, pendingRollbacksScript()));
    assert.equal(pending.length, 1);
    assert.equal(pending[0]!.runId, RUN.runId);
    const now = Math.floor(Date.now() / 1000);
    assert.ok(Math.abs(pending[0]!.deadline! - (now + 120)) <= 5, String(pending[0]!.deadline));
    writeFileSync(join(caseDir, 'run', `revert-${RUN.runId}`, 'reverted'), `${now}\n`);
    assert.deepEqual(parsePendingRollbacks(run(caseDir, pendingRollbacksScript())), []);
  });

  it('up confirms it: its timers stopped and its snapshot removed; a revert that ran first is said, not removed', () => {
    const caseDir = join(root, 'confirm');
    run(caseDir, armScript('wg0', RUN, true, 'config'));
    assert.equal(run(caseDir, confirmPendingScript([RUN.runId])).trim(), `pending ${RUN.runId}=cancelled`);
    assert.match(stubLog(caseDir), new RegExp(`^systemctl stop meshctl-revert-${RUN.runId}-\\*\\.timer$`, 'm'));
    assert.deepEqual(readdirSync(join(caseDir, 'run')), []);
    // again: nothing left, nothing done
    assert.equal(run(caseDir, confirmPendingScript([RUN.runId])).trim(), `pending ${RUN.runId}=gone`);

    const fired = join(root, 'fired');
    run(fired, armScript('wg0', RUN, true, 'config'));
    writeFileSync(join(fired, 'run', `revert-${RUN.runId}`, 'log'), 'reverted at then\n');
    writeFileSync(join(fired, 'run', `revert-${RUN.runId}`, 'reverted'), '1\n');
    assert.equal(run(fired, confirmPendingScript([RUN.runId])).trim(), `pending ${RUN.runId}=reverted`);
  });

  it('down plans the cancel first and its script cancels every revert left on the node', () => {
    const probe = [
      'systemd=yes',
      'active=active',
      'enabled=enabled',
      'interface=present',
      'interface-kind=wireguard',
      `pending=${RUN.runId} 1796058129`,
      '',
    ].join('\n');
    const plan = planDown(parseDownProbe(probe), 'wg0', false);
    assert.deepEqual(plan.changes.map(describeDownChange), [
      `cancel the pending rollback of an interrupted up (revert-${RUN.runId}, due at 17:02:09 UTC: it would bring the interface back)`,
      'stop and disable wg-quick@wg0 (was active, enabled)',
      'delete interface wg0',
    ]);
    // the cancel runs before the stop
    assert.ok(plan.script!.indexOf('mc_cancel "$o"') < plan.script!.indexOf('systemctl disable'), plan.script);
    // its deadline outlasts mc_cancel's wait for a revert already running, and the stop after it (CI: a flat 60 s
    // deadline ended down on a loaded host while the timer's revert ran)
    assert.ok(plan.timeoutMs! >= (CANCEL_LOCK_WAIT_S + DOWN_DEADLINE_S) * 1000, String(plan.timeoutMs));
    assert.equal(planDown(parseDownProbe(probe.replace(/pending=.*\n/, '')), 'wg0', false).timeoutMs, undefined);
    // two runs' snapshots (one the probe did not see yet): both cancelled, both removed
    const caseDir = join(root, 'down');
    run(caseDir, armScript('wg0', RUN, true, 'config'));
    run(caseDir, armScript('wg0', OTHER, true, 'enable').replace(/for o in [^\n]*\n(?:[^\n]*\n)*? {2}done\n/, ''));
    assert.equal(readdirSync(join(caseDir, 'run')).length, 2);
    const out = run(caseDir, `set -e\n${cancelAllRollbacksScript()}`);
    assert.match(out, new RegExp(`rollback ${RUN.runId}: cancelled`));
    assert.match(out, new RegExp(`rollback ${OTHER.runId}: cancelled`));
    assert.deepEqual(readdirSync(join(caseDir, 'run')), []);
    for (const id of [RUN.runId, OTHER.runId])
      assert.match(stubLog(caseDir), new RegExp(`^systemctl stop meshctl-revert-${id}-\\*\\.timer$`, 'm'));
    // idempotent: nothing left, nothing done
    assert.equal(run(caseDir, `set -e\n${cancelAllRollbacksScript()}`), '');
    // a revert that failed and ended (its log, no `reverted`, its lock free): cancelled like a pending one (a
    // review's finding: read from its log alone, every down refused such a node for good)
    const busy = join(caseDir, 'run', `revert-${OTHER.runId}`);
    mkdirSync(busy, { recursive: true });
    writeFileSync(join(busy, 'log'), 'not reverted: could not restore /etc/wireguard/wg0.conf\n');
    assert.match(run(caseDir, `set -e\n${cancelAllRollbacksScript()}`), new RegExp(`rollback ${OTHER.runId}: cancelled`));
    assert.ok(!existsSync(busy));
    // a revert still running after the wait (it holds the run's lock: the stand-in flock says so at once): kept, and
    // down stops before anything else
    mkdirSync(busy, { recursive: true });
    writeFileSync(join(busy, 'log'), 'reverting\n');
    const sleepless = join(caseDir, 'sleepless');
    mkdirSync(sleepless);
    writeFileSync(join(sleepless, 'sleep'), '#!/bin/sh\n'); // mc_cancel's 60 one-second waits, at once
    writeFileSync(join(sleepless, 'flock'), '#!/bin/sh\nexit 1\n'); // the lock held by the running revert, past the wait
    for (const stub of ['sleep', 'flock']) chmodSync(join(sleepless, stub), 0o755);
    const stuck = spawnSync(
      'sh',
      ['-c', `set -e\n${cancelAllRollbacksScript()}\necho went-on`.replaceAll('/run/meshctl/', `${caseDir}/run/`)],
      {
        env: { PATH: `${sleepless}:${bin}:/usr/bin:/bin`, STUB_LOG: join(caseDir, 'log') },
        encoding: 'utf8',
      },
    );
    assert.equal(stuck.status, 1, stuck.stderr);
    assert.match(stuck.stdout, new RegExp(`rollback ${OTHER.runId}: failed`));
    assert.doesNotMatch(stuck.stdout, /went-on/);
    assert.match(stuck.stderr, /still running here/);
    assert.ok(existsSync(busy), 'its directory is kept');
    assert.deepEqual(
      planDown(parseDownProbe(probe.replace(/pending=.*\n/, '')), 'wg0', false).changes.map((c) => c.kind),
      ['stop-disable', 'delete-interface'],
    );
  });
});
