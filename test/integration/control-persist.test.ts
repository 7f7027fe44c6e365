/**
 * --control-persist against a real OpenSSH sshd on 127.0.0.1 and a real master process (meshctl re-executed with
 * `__control-master`, started by the first connect): two runs in a row log in once (sshd's own log counts the
 * logins), a kept connection that stopped answering is not lent again, the master exits after its ControlPersist,
 * and a control directory others can enter is refused (the run connects directly, with one warning).
 * A "run" here is a link to the master: resetControlLinks() closes it, as a run's exit does.
 * Needs root and openssh-server/openssh-client; skipped with the reason otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';
import type { Connection } from '../../src/transport/types.js';
import { linkedMasterPids, resetControlLinks } from '../../src/transport/control-master.js';
import { connectNode, type TransportWarning } from '../../src/transport/ssh.js';
import { eventually, keygen, killAll, loopbackNode, sshdSkipReason, startSshd, type Sshd } from './sshd-harness.js';

const skip = sshdSkipReason();

/** Whether a process with this id exists (signal 0 checks without sending anything). */
const running = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

describe('--control-persist against a real sshd', { skip: skip ?? false, timeout: 180_000 }, () => {
  let root: string;
  let sshd: Sshd;
  let node: Node;
  let env: NodeJS.ProcessEnv;
  const masters = new Set<number>();
  const logins = () => (sshd.log().match(/Accepted publickey for root/g) ?? []).length;
  const noteMasters = async () => {
    for (const pid of await linkedMasterPids()) masters.add(pid);
  };

  /**
   * The logins sshd logged since `before`, once at least one is there: sshd's log reaches us through a pipe, so its
   * "Accepted" line can trail the login the client already finished (seen under load in the suite)
   */
  const loginsSince = async (before: number): Promise<number> => {
    await eventually(() => logins() - before >= 1);
    return logins() - before;
  };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'meshctl-cm-it-'));
    const client = keygen(join(root, 'id_client'));
    sshd = await startSshd({ dir: join(root, 'sshd'), authorizedKeys: [client.publicLine] });
    ({ node, env } = loopbackNode(root, sshd, client.privateFile));
    env.MESHCTL_CONTROL_DIR = join(root, 'cm');
  });

  after(async () => {
    await noteMasters();
    resetControlLinks();
    for (const pid of masters) if (running(pid)) process.kill(pid, 'SIGTERM');
    await sshd?.stop();
    killAll();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('two runs in a row: one login; the master closes the connection and exits after ControlPersist', async () => {
    const before = logins();
    const first = await connectNode(node, { env, probe: false, controlPersistS: 2 });
    await noteMasters();
    assert.equal(first.stats.reused, false);
    assert.equal((await first.run('echo one')).stdout, 'one\n');
    await first.close();
    resetControlLinks(); // the first run ends
    const second = await connectNode(node, { env, probe: false, controlPersistS: 2 });
    assert.equal(second.stats.reused, true, 'the master lent the connection it kept');
    assert.equal((await second.run('echo two')).stdout, 'two\n');
    assert.equal(await loginsSince(before), 1, `one SSH login for two runs (sshd log:\n${sshd.log()})`);
    await second.close();
    resetControlLinks();
    const [pid] = masters;
    assert.ok(pid && running(pid), 'the master runs between the runs');
    assert.ok(await eventually(() => !running(pid)), 'the master exits once ControlPersist passed with no run holding the connection');
    assert.ok(await eventually(() => /Disconnected from user root|Received disconnect/.test(sshd.log())), 'it ended the login');
    assert.deepEqual(
      readdirSync(env.MESHCTL_CONTROL_DIR!).filter((f) => f.endsWith('.sock')),
      [],
      'and removed its socket',
    );
  });

  test('a kept connection that stopped answering is not lent: a new login', async () => {
    const first = await connectNode(node, { env, probe: false, controlPersistS: 60 });
    await noteMasters();
    await first.close();
    resetControlLinks();
    // the login's sshd process stops answering (a node that froze, a link that went dark)
    const children = spawnSync('pgrep', ['-P', readPid(sshd)], { encoding: 'utf8' })
      .stdout.trim()
      .split('\n')
      .filter(Boolean)
      .map(Number);
    assert.ok(children.length > 0, 'the login has its own sshd process');
    for (const c of children) process.kill(c, 'SIGSTOP');
    try {
      const before = logins();
      const second = await connectNode(node, { env, probe: false, controlPersistS: 60 });
      assert.equal(second.stats.reused, false, 'a new connection, not the frozen one');
      assert.equal((await second.run('echo fresh')).stdout, 'fresh\n');
      assert.equal(await loginsSince(before), 1);
      await second.close();
    } finally {
      for (const c of children) if (running(c)) process.kill(c, 'SIGKILL');
    }
    resetControlLinks();
    for (const pid of await linkedMasterPids()) masters.add(pid);
    for (const pid of masters) if (running(pid)) process.kill(pid, 'SIGTERM');
    for (const pid of masters) assert.ok(await eventually(() => !running(pid)), 'the master ends on SIGTERM');
  });

  /**
   * Connects with --control-persist and MESHCTL_CONTROL_DIR=dir where no master can serve: asserts a direct connection
   * (`use` runs on it), one login and one control-master warning; returns that warning's text.
   */
  const fallsBackDirectly = async (dir: string, use: (c: Connection) => Promise<void> = async () => {}): Promise<string> => {
    const warnings: TransportWarning[] = [];
    const before = logins();
    const c = await connectNode(node, {
      env: { ...env, MESHCTL_CONTROL_DIR: dir },
      probe: false,
      controlPersistS: 60,
      onWarning: (w) => warnings.push(w),
    });
    assert.equal(c.stats.reused, undefined, 'a direct connection');
    await use(c);
    await c.close();
    assert.equal(await loginsSince(before), 1);
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]!.kind, 'control-master');
    return warnings[0]!.message;
  };

  test('a control directory others can enter is refused: a direct login, one warning, no master', async () => {
    const dir = join(root, 'open-cm');
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o755);
    const message = await fallsBackDirectly(dir, async (c) => assert.equal((await c.run('echo direct')).stdout, 'direct\n'));
    assert.match(message, /--control-persist: .*open-cm has mode 755: group or others have access \(it must be 700\); connecting directly/);
    assert.deepEqual(readdirSync(dir), [], 'no socket made there');
    assert.equal(existsSync(join(dir, 'x')), false);
    resetControlLinks();
  });

  test('a master that cannot start (its socket path past the unix limit): a direct login at once, not after the 5 s wait', async () => {
    // sun_path holds 108 bytes: the master's listen fails and it exits; the run must not wait out MASTER_START_MS
    const dir = join(root, 'l'.repeat(120));
    mkdirSync(dir, { mode: 0o700 });
    const message = await fallsBackDirectly(dir);
    // the master's exit ends the wait: the warning carries the last try's error, not the deadline's
    assert.doesNotMatch(message, /did not start within/);
    assert.match(message, /connecting directly/);
    resetControlLinks();
  });
});

/** The sshd's own process id (its PidFile). */
function readPid(sshd: Sshd): string {
  return spawnSync('cat', [join(sshd.dir, 'sshd.pid')], { encoding: 'utf8' }).stdout.trim();
}
