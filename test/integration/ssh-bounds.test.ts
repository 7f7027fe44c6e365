/**
 * Bounds and lock-out facts over a real OpenSSH sshd on 127.0.0.1. The per-command output cap (RunOptions.maxStdoutBytes / maxStderrBytes) against a real OpenSSH sshd on 127.0.0.1:
 * a command that prints more than the cap is stopped quickly, with bounded memory, and returns OUTPUT_CAP_EXIT with
 * a message naming the cap; its remote processes do not keep running. The operator-address fact reports the
 * address sshd saw, also when the environment was reset (as sudo does). Needs root and openssh-server.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';
import { FACTS, factsScript } from '../../src/facts/definitions.js';
import { parseFactsProbe } from '../../src/facts/node-facts.js';
import { shellQuote } from '../../src/remote/shell.js';
import { connectNode } from '../../src/transport/ssh.js';
import { DEFAULT_MAX_STDOUT_BYTES, ENDED_EXIT, OUTPUT_CAP_EXIT, type Connection } from '../../src/transport/types.js';
import { keygen, killAll, sshdSkipReason, startSshd, type Sshd } from './sshd-harness.js';

const skip = sshdSkipReason();
const MiB = 1024 * 1024;
/** a command's deadline where the test is about something else (a cap): only against a hang, never a speed bound */
const HANG_GUARD_MS = 10 * 60_000;

describe('output cap per remote command (real sshd)', { skip: skip ?? false }, () => {
  let root: string;
  let sshd: Sshd;
  let conn: Connection;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'meshctl-cap-'));
    const home = join(root, 'home');
    mkdirSync(home);
    const client = keygen(join(root, 'id_client'));
    sshd = await startSshd({ dir: join(root, 'sshd'), authorizedKeys: [client.publicLine] });
    const knownHosts = join(root, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${sshd.port} ${sshd.hostKeys.ed25519!.split(' ').slice(0, 2).join(' ')}\n`);
    const node: Node = {
      name: 'cap',
      site: 'loop',
      address: '127.0.0.1',
      overlayIp: '10.99.0.1',
      listenPort: 51820,
      ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', become: 'none', identityFile: client.privateFile },
    };
    const sshConfig = join(root, 'ssh_config');
    writeFileSync(sshConfig, '');
    conn = await connectNode(node, {
      env: { PATH: process.env.PATH, HOME: home, MESHCTL_KNOWN_HOSTS: knownHosts, MESHCTL_SSH_CONFIG: sshConfig },
    });
  });

  after(async () => {
    await conn?.close();
    await sshd?.stop();
    killAll();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  test('a command printing 10 MB returns the cap failure (not its deadline), with the first 4 MiB and a message naming the cap', async () => {
    const started = performance.now();
    // capped, not timed out (OUTPUT_CAP_EXIT, not 124): the cap stopped it, however long the copy took on a loaded machine
    const result = await conn.run("head -c 10485760 /dev/zero | tr '\\0' x", { timeoutMs: HANG_GUARD_MS });
    const ms = performance.now() - started;
    assert.equal(result.code, OUTPUT_CAP_EXIT, result.stderr);
    assert.equal(result.outputCapped, 'stdout');
    assert.equal(result.stdout.length, DEFAULT_MAX_STDOUT_BYTES);
    assert.match(result.stdout, /^x+$/);
    assert.match(result.stderr, /its stdout passed the cap of 4 MiB per command/);
    console.log(`# 10 MB of stdout: capped after ${Math.round(ms)} ms`);
  });

  test('endless output: memory stays bounded and the remote process is stopped', async () => {
    const marker = `meshctl-cap-marker-${process.pid}`;
    const rss0 = process.memoryUsage().rss;
    let peak = rss0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    const started = performance.now();
    // `yes` never stops on its own; a small cap so the test is about the stop, not the copy
    const result = await conn.run(`exec yes ${marker}`, { timeoutMs: HANG_GUARD_MS, maxStdoutBytes: 2 * MiB });
    clearInterval(sampler);
    const ms = performance.now() - started;
    assert.equal(result.code, OUTPUT_CAP_EXIT, result.stderr);
    assert.equal(Buffer.byteLength(result.stdout), 2 * MiB);
    assert.match(result.stderr, /cap of 2 MiB per command/);
    const grown = (peak - rss0) / MiB;
    assert.ok(grown < 100, `RSS grew by ${grown.toFixed(0)} MiB`);
    console.log(`# endless stdout, 2 MiB cap: stopped after ${Math.round(ms)} ms, RSS peak +${grown.toFixed(1)} MiB`);
    // nothing of it keeps running on the node (the stop script ran before run() resolved)
    const left = await conn.run(`pgrep -f -x 'yes ${marker}' || true`);
    assert.equal(left.stdout.trim(), '', `still running: ${left.stdout}`);
  });

  test('stderr has its own cap, and the connection stays usable', async () => {
    const result = await conn.run("head -c 3145728 /dev/zero | tr '\\0' e >&2; echo done", { timeoutMs: 30_000 });
    assert.equal(result.code, OUTPUT_CAP_EXIT);
    assert.equal(result.outputCapped, 'stderr');
    assert.match(result.stderr, /its stderr passed the cap of 1 MiB per command/);
    const after = await conn.run('echo still here');
    assert.equal(after.code, 0);
    assert.equal(after.stdout, 'still here\n');
  });

  test('output under the cap is returned whole', async () => {
    const result = await conn.run("head -c 3145728 /dev/zero | tr '\\0' y");
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.length, 3 * MiB);
    assert.equal(result.outputCapped, undefined);
  });

  test('discardStdout: every piece goes to onStdout and none is kept (the result has no stdout); the cap still counts', async () => {
    let seen = 0;
    let lines = 0;
    const result = await conn.run("head -c 3145728 /dev/zero | tr '\\0' y; echo; echo end", {
      timeoutMs: HANG_GUARD_MS,
      onStdout: (chunk) => {
        seen += chunk.length;
        lines += chunk.split('\n').length - 1;
      },
      discardStdout: true,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '');
    assert.equal(seen, 3 * MiB + 5);
    assert.equal(lines, 2);
    let capped = 0;
    const over = await conn.run("head -c 3145728 /dev/zero | tr '\\0' z", {
      timeoutMs: HANG_GUARD_MS,
      maxStdoutBytes: MiB,
      onStdout: (chunk) => {
        capped += chunk.length;
      },
      discardStdout: true,
    });
    assert.equal(over.code, OUTPUT_CAP_EXIT, over.stderr);
    assert.equal(over.stdout, '');
    assert.equal(capped, MiB);
  });

  test('onStdout streams output as it arrives; end() returns at once with it, and the command is gone at its next write', async () => {
    const marker = `meshctl-end-marker-${process.pid}`;
    const running = async () => (await conn.run(`pgrep -f 'sh -c i=0.* ${marker}' || true`)).stdout.trim();
    const chunks: string[] = [];
    let end: () => void = () => undefined;
    let ready: () => void = () => undefined;
    const listening = new Promise<void>((resolve) => (ready = resolve));
    // a root login: sshd refuses signals, so the loop ends only when a write to its closed stdout fails (SIGPIPE)
    const run = conn.run(`echo ready; exec sh -c 'i=0; while [ $i -lt 200 ]; do echo .; sleep 0.1; i=$((i+1)); done' ${marker}`, {
      timeoutMs: 60_000,
      onStdout: (chunk, endRun) => {
        chunks.push(chunk);
        end = endRun;
        if (chunks.join('').includes('ready\n')) ready();
      },
    });
    await listening;
    assert.notEqual(await running(), '', 'the loop runs (the pattern finds it)');
    const endedAt = performance.now();
    end();
    const result = await run;
    const ms = performance.now() - endedAt;
    assert.equal(result.code, ENDED_EXIT, result.stderr);
    assert.match(result.stdout, /^ready\n\.\n/);
    assert.equal(chunks.join(''), result.stdout);
    // no clock: the loop prints 200 dots in its 20 s; run() resolved at end(), long before the last one
    const dots = result.stdout.split('\n').filter((line) => line === '.').length;
    assert.ok(dots < 200, `run() waited for the loop to end (${dots} dots; it resolved ${Math.round(ms)} ms after end())`);
    let left = await running();
    for (let i = 0; i < 40 && left; i++) {
      await new Promise((r) => setTimeout(r, 50));
      left = await running();
    }
    assert.equal(left, '', `still running: ${left}`);
    console.log(
      `# run() resolved ${Math.round(ms)} ms after end(); the remote loop gone within ${Math.round(performance.now() - endedAt)} ms`,
    );
  });

  test('the operator-address fact names the address sshd saw, also through a reset environment', async () => {
    const script = factsScript([FACTS.operatorAddress], { interface: 'wg0', listenPort: 51820 });
    for (const command of [script, `env -i /bin/sh -c ${shellQuote(script)}`]) {
      const result = await conn.run(command);
      assert.equal(result.code, 0, result.stderr);
      const facts = parseFactsProbe(result.stdout, { interface: 'wg0', listenPort: 51820 });
      assert.equal(facts.operatorAddress?.address, '127.0.0.1', result.stdout);
      assert.equal(facts.operatorAddress?.nodeAddress, '127.0.0.1');
    }
  });
});
