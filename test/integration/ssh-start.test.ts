/**
 * Connection.start (issue 10) against a real OpenSSH sshd on 127.0.0.1: it resolves once sshd has started the
 * script, not when the script ends, and the script runs to its end after the connection is closed right after (the
 * run lock's release: ../../src/engine/lock.ts). And RunOptions.sendWhen: a command started ahead whose script is
 * sent later, or never (the other nodes' facts probes behind the first node's lock: FirstLockGate). Order is asserted, never durations: the script waits for a file
 * this test writes only after start() resolved and the connection was closed.
 * Needs root and openssh-server/openssh-client; skipped with the reason otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';
import { newLockHolder, releaseScript } from '../../src/engine/lock.js';
import { shellQuote } from '../../src/remote/shell.js';
import { connectNode } from '../../src/transport/ssh.js';
import type { Connection } from '../../src/transport/types.js';
import { eventually, keygen, killAll, loopbackNode, sshdSkipReason, startSshd, type Sshd } from './sshd-harness.js';

const skip = sshdSkipReason();

describe('Connection.start against a real sshd', { skip: skip ?? false }, () => {
  let root: string;
  let sshd: Sshd;
  let node: Node;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'meshctl-start-it-'));
    const client = keygen(join(root, 'id_client'));
    sshd = await startSshd({ dir: join(root, 'sshd'), authorizedKeys: [client.publicLine] });
    ({ node, env } = loopbackNode(root, sshd, client.privateFile));
  });

  after(async () => {
    await sshd?.stop();
    killAll();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('resolves while the script still runs; the script ends its work after the connection closed', async () => {
    const conn: Connection = await connectNode(node, { env });
    assert.ok(conn.start, 'the ssh transport can start a command');
    const go = join(root, 'go');
    const done = join(root, 'done');
    // quotes and $ in the script: it travels in the command line, quoted twice
    const script = `while [ ! -e ${shellQuote(go)} ]; do sleep 0.05; done; printf '%s' "it's $((6 * 7))" > ${shellQuote(done)}`;
    const channels = conn.stats.channels ?? 0;
    await conn.start!(script);
    assert.equal(existsSync(done), false, 'start() must not wait for the script');
    assert.equal(conn.stats.channels, channels + 1, 'one channel');
    await conn.close();
    writeFileSync(go, '');
    assert.ok(
      await eventually(() => existsSync(done) && readFileSync(done, 'utf8') === "it's 42"),
      'the script did not finish after the close',
    );
  });

  test("the run lock's release, started and the connection closed at once, removes the lock", async () => {
    const lockDir = join(root, 'run-meshctl');
    mkdirSync(lockDir);
    const path = join(lockDir, 'lock');
    const holder = newLockHolder();
    writeFileSync(path, `holder=${holder.holder} pid=${holder.pid} started=${holder.started} run=${holder.run}\n`);
    const conn = await connectNode(node, { env });
    await conn.start!(releaseScript(holder, path));
    await conn.close();
    assert.ok(await eventually(() => !existsSync(path)), 'the lock is still there');
  });

  test('RunOptions.sendWhen: the channel opens at once; the script runs only once it says so, and not at all on false', async () => {
    const conn = await connectNode(node, { env });
    const ran = join(root, 'ran');
    const script = `: > ${shellQuote(ran)}; echo ran`;
    let go: (send: boolean) => void = () => undefined;
    const channels = conn.stats.channels ?? 0;
    const held = conn.run(script, { sendWhen: new Promise<boolean>((resolve) => (go = resolve)) });
    assert.ok(await eventually(() => (conn.stats.channels ?? 0) === channels + 1), 'the channel was not opened ahead');
    assert.equal(existsSync(ran), false, 'the script must wait for sendWhen');
    go(true);
    assert.deepEqual(await held.then((r) => [r.code, r.stdout]), [0, 'ran\n']);
    rmSync(ran);
    const refused = await conn.run(script, { sendWhen: Promise.resolve(false) });
    assert.deepEqual([refused.code, refused.stdout, existsSync(ran)], [0, '', false]);
    await conn.close();
  });

  test('start on a closed connection rejects (nothing started)', async () => {
    const conn = await connectNode(node, { env });
    await conn.close();
    await assert.rejects(conn.start!('true'), /closed/);
  });
});
