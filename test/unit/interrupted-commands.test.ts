/**
 * Ctrl-C during the logins, as the operator sees it, for every command that logs in (up, plan, verify, down,
 * rotate-keys, debug) and during `up --limit`'s reads of the outside nodes' public keys: the real meshctl (src/cli.ts)
 * gets a real SIGINT while three nodes are logged in to a real OpenSSH sshd on 127.0.0.1 and the fourth (wk-2) waits
 * for the banner of a listener that accepted and never answers (as an sshd stopped with SIGSTOP: test/lab/
 * interrupt-login.test.ts does that in the lab). Each run ends with one message saying where it was, exit 130, with
 * --json a JSON report on stdout, and soon after the SIGINT (not at --connect-timeout 60). Before, each ended with
 * main's bare `meshctl: interrupted` and nothing on stdout.
 *
 * The sshd runs nothing on this machine but the transport's root probe (`id -u`) and the read of a public key: its
 * ForceCommand answers those two and refuses anything else. Needs root and openssh-server (skipped otherwise).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { freePort, keygen, killAll, sshdSkipReason, startSshd, type Sshd } from '../integration/sshd-harness.js';
import { tempDir } from '../support/temp-dir.js';

const skip = sshdSkipReason();
const KEY = 'kZ1jqc6HzSIcsmWUlTUjYtU8jCHKZyAfcAcxi4nqYTU=';
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const LOGIN_MESSAGE =
  'meshctl: interrupted while logging in: 3 of 4 nodes connected (ms-1, wk-1, ctb-edge-1), wk-2 not yet; nothing was changed on any node\n';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('Ctrl-C during the logins: one message of where it was, exit 130, JSON with --json', { skip: skip ?? false }, () => {
  let dir: string;
  let sshd: Sshd;
  let silent: Server;
  const held: Socket[] = [];
  let env: NodeJS.ProcessEnv;
  let inventory: string;
  /** what the ForceCommand ran, one word a line: probe, key or refused */
  let guardLog: string;

  before(async () => {
    dir = tempDir('meshctl-interrupted-');
    guardLog = join(dir, 'guard.log');
    const guard = join(dir, 'guard.sh');
    writeFileSync(
      guard,
      [
        '#!/bin/sh',
        '# the only commands this sshd runs: the root probe and the public-key read (their framed scripts on stdin)',
        'input=$(cat)',
        'case "$input" in',
        `  "$(printf '{\\nid -u\\n} </dev/null')") echo 0; echo probe >> ${guardLog} ;;`,
        `  *'public-key 2>/dev/null'*) echo ${KEY}; echo key >> ${guardLog} ;;`,
        `  *) echo "refused by the test's sshd" >&2; echo refused >> ${guardLog}; exit 1 ;;`,
        'esac',
        '',
      ].join('\n'),
    );
    chmodSync(guard, 0o755);
    const client = keygen(join(dir, 'id_client'));
    // one sshd, a port of its own for each node that answers (the inventory refuses two nodes on one SSH target)
    const extraPorts = [await freePort(), await freePort()];
    sshd = await startSshd({
      dir: join(dir, 'sshd'),
      authorizedKeys: [client.publicLine],
      extraConfig: [`ForceCommand ${guard}`, ...extraPorts.map((p) => `Port ${p}`)],
    });
    const ports = new Map([
      ['ms-1', sshd.port],
      ['wk-1', extraPorts[0]!],
      ['ctb-edge-1', extraPorts[1]!],
    ]);
    // wk-2: accepts and never sends a banner (the login waits for it until the interrupt, or --connect-timeout)
    silent = createServer((socket) => {
      held.push(socket);
      socket.on('error', () => undefined);
    });
    const silentPort = await new Promise<number>((resolve) =>
      silent.listen(0, '127.0.0.1', () => resolve((silent.address() as { port: number }).port)),
    );
    const home = join(dir, 'home');
    const knownHosts = join(dir, 'known_hosts');
    const hostKey = sshd.hostKeys.ed25519!.split(' ').slice(0, 2).join(' ');
    writeFileSync(knownHosts, [...ports.values()].map((p) => `[127.0.0.1]:${p} ${hostKey}\n`).join(''));
    writeFileSync(join(dir, 'ssh_config'), '');
    env = {
      PATH: process.env.PATH,
      HOME: home,
      MESHCTL_KNOWN_HOSTS: knownHosts,
      MESHCTL_SSH_CONFIG: join(dir, 'ssh_config'),
      NO_COLOR: '1',
    };
    // inventories/homelab.yaml's mesh, every node reached on 127.0.0.1 as root
    const port = (name: string) => ports.get(name) ?? silentPort;
    const ssh = (name: string) =>
      `ssh: { host: 127.0.0.1, port: ${port(name)}, user: root, become: none, identityFile: ${client.privateFile} }`;
    inventory = join(dir, 'homelab.yaml');
    writeFileSync(
      inventory,
      [
        'mesh: { interface: wg0, network: 172.27.15.0/24, listenPort: 51820, mtu: 1420, persistentKeepalive: 25, rpFilter: loose }',
        'sites:',
        '  home: { lan: 192.168.15.0/24, router: 192.168.15.1, nat: { publicIp: 203.0.113.10 } }',
        '  edge: { public: true }',
        'nodes:',
        `  ms-1: { site: home, address: 192.168.15.2, overlayIp: 172.27.15.12, forwardedPort: 51821, ${ssh('ms-1')} }`,
        `  wk-1: { site: home, address: 192.168.15.3, overlayIp: 172.27.15.11, forwardedPort: 51820, ${ssh('wk-1')} }`,
        `  wk-2: { site: home, address: 192.168.15.4, overlayIp: 172.27.15.13, forwardedPort: 51822, ${ssh('wk-2')} }`,
        `  ctb-edge-1: { site: edge, address: 198.51.100.25, overlayIp: 172.27.15.31, ${ssh('ctb-edge-1')} }`,
        '',
      ].join('\n'),
    );
  });

  after(async () => {
    for (const socket of held) socket.destroy();
    silent?.close();
    await sshd?.stop();
    killAll();
  });

  /** Lines of the ForceCommand's log with this word. */
  const guardRan = (word: string) =>
    existsSync(guardLog)
      ? readFileSync(guardLog, 'utf8')
          .split('\n')
          .filter((l) => l === word).length
      : 0;
  /** sshd's "Accepted publickey" lines so far. */
  const logins = () =>
    sshd
      .log()
      .split('\n')
      .filter((l) => l.includes('Accepted publickey')).length;

  /**
   * Commands whose process ends when node has nothing left to do, not as soon as main returned (src/main.ts
   * EXIT_WHEN_DONE). A login that never answered kept their process until ssh2's readyTimeout (--connect-timeout)
   * after their message: src/transport/ssh.ts openClient's failure path ended the socket (FIN, which a stopped sshd
   * never answers) and its destroy() was then a no-op (ssh2's Client.destroy skips a socket no longer writable). It
   * destroys first now, so none lingers: the set is empty, and every command's exit is bounded below its timeout.
   */
  const LINGERS = new Set<string>();

  /**
   * Runs `meshctl ARGS` (no terminal; --connect-timeout 60, or 10 for LINGERS) and sends SIGINT once `ready` holds
   * (given how many logins and ForceCommand runs there were since it started), polled every 50 ms, and 300 ms more
   * (the client's side of the last login). Resolves with the exit code, stdout, stderr, and the ms from the SIGINT to
   * the first `meshctl:` line on stderr and to the exit.
   */
  async function interrupted(args: string[], ready: (since: { logins: number; probes: number; keys: number }) => boolean) {
    const base = { logins: logins(), probes: guardRan('probe'), keys: guardRan('key') };
    const heldBefore = held.length;
    const timeout = LINGERS.has(args[0]!) ? '10' : '60';
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args, '--connect-timeout', timeout], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let sentAt = 0;
    let messageMs = -1;
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (sentAt && messageMs < 0 && stderr.includes('meshctl:')) messageMs = Date.now() - sentAt;
    });
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const guard = setTimeout(() => child.kill('SIGKILL'), 120_000);
    for (let i = 0; i < 1200 && child.exitCode === null; i++) {
      const since = { logins: logins() - base.logins, probes: guardRan('probe') - base.probes, keys: guardRan('key') - base.keys };
      if (ready(since) && held.length > heldBefore) {
        await sleep(300);
        sentAt = Date.now();
        child.kill('SIGINT');
        break;
      }
      await sleep(50);
    }
    const code = await exited;
    clearTimeout(guard);
    const exitMs = sentAt ? Date.now() - sentAt : -1;
    if (sentAt)
      process.stderr.write(`# ${args[0]}: message ${messageMs} ms, exit ${exitMs} ms after the SIGINT (--connect-timeout ${timeout})\n`);
    return { command: args[0]!, code, stdout, stderr, sent: sentAt > 0, messageMs, exitMs };
  }

  /**
   * The checks of every run: the message soon after the SIGINT (not at the connect timeout), exit 130, the process
   * gone at once (LINGERS: by the connect timeout), nothing refused by the sshd.
   */
  function assertInterrupted(run: Awaited<ReturnType<typeof interrupted>>) {
    const all = `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`;
    assert.ok(run.sent, `the logins never got that far:\n${all}`);
    assert.equal(run.code, 130, all);
    assert.ok(run.messageMs >= 0 && run.messageMs < 5_000, `the message came ${run.messageMs} ms after the SIGINT:\n${all}`);
    const bound = LINGERS.has(run.command) ? 15_000 : 10_000;
    assert.ok(run.exitMs < bound, `exited ${run.exitMs} ms after the SIGINT:\n${all}`);
    assert.doesNotMatch(run.stderr, /internal error|^\s+at /m, all);
    assert.equal(guardRan('refused'), 0, `the sshd was asked for something else than the probe or a key read:\n${all}`);
  }

  /** The --json report on stdout: the whole of stdout, one JSON object. */
  const jsonOf = (stdout: string) => JSON.parse(stdout) as Record<string, unknown>;

  const threeLoggedIn = (since: { logins: number }) => since.logins >= 3;
  const threeProbed = (since: { logins: number; probes: number }) => since.logins >= 3 && since.probes >= 3;

  it('up: the message, nothing on stdout', async () => {
    const run = await interrupted(['up', inventory, '--yes'], threeLoggedIn);
    assertInterrupted(run);
    assert.equal(run.stderr, LOGIN_MESSAGE);
    assert.equal(run.stdout, '');
  });

  it('up --json: the message on stderr, the report on stdout', async () => {
    const run = await interrupted(['up', inventory, '--yes', '--json'], threeLoggedIn);
    assertInterrupted(run);
    assert.equal(run.stderr, LOGIN_MESSAGE);
    const report = jsonOf(run.stdout);
    assert.deepEqual(
      { ...report, message: undefined },
      {
        command: 'up',
        result: 'interrupted',
        stage: 'login',
        nodes: NODES,
        reached: ['ms-1', 'wk-1', 'ctb-edge-1'],
        notYet: ['wk-2'],
        failed: [],
        changed: false,
        message: undefined,
      },
    );
    assert.equal(`meshctl: ${report.message}\n`, LOGIN_MESSAGE);
  });

  it("up --limit ms-1 --json: while the outside nodes' keys are read (wk-2's login not answered)", async () => {
    // the outside nodes the local state has no key for are read as one group (src/engine/limit.ts): wk-1's and
    // ctb-edge-1's reads wait for wk-2's login, so none is read yet when ms-1, wk-1 and ctb-edge-1 are logged in
    const run = await interrupted(['up', inventory, '--yes', '--json', '--limit', 'ms-1'], threeLoggedIn);
    assertInterrupted(run);
    assert.equal(
      run.stderr,
      'meshctl: interrupted while reading the public keys of the nodes outside --limit: 0 of 3 read, wk-1, wk-2, ctb-edge-1 not yet; nothing was changed on any node\n',
    );
    const report = jsonOf(run.stdout);
    assert.equal(report.command, 'up');
    assert.equal(report.result, 'interrupted');
    assert.equal(report.stage, 'outside-keys');
    assert.deepEqual(report.nodes, ['wk-1', 'wk-2', 'ctb-edge-1']);
    assert.deepEqual(report.reached, []);
    assert.equal(guardRan('key'), 0, 'no key read was sent');
  });

  for (const command of ['plan', 'verify', 'debug'])
    it(`${command} --json: the message, the report on stdout`, async () => {
      // verify logs in without the root probe (its first script proves root); plan and debug probe
      const run = await interrupted([command, inventory, '--json'], command === 'verify' ? threeLoggedIn : threeProbed);
      assertInterrupted(run);
      // plan prints the inventory's forward clashes before it connects (src/topology/forward-clash.ts), as always
      const lines = run.stderr.split(/(?<=\n)/);
      assert.equal(lines.at(-1), LOGIN_MESSAGE);
      for (const line of lines.slice(0, -1)) assert.match(line, /^warning: /);
      const report = jsonOf(run.stdout);
      assert.equal(report.command, command);
      assert.equal(report.result, 'interrupted');
      assert.deepEqual(report.notYet, ['wk-2']);
    });

  it('rotate-keys --json: the message, the report on stdout', async () => {
    const run = await interrupted(['rotate-keys', inventory, '--yes', '--json'], threeProbed);
    assertInterrupted(run);
    assert.equal(run.stderr, LOGIN_MESSAGE);
    assert.equal(jsonOf(run.stdout).stage, 'login');
  });

  it('down (no --json): the message', async () => {
    const run = await interrupted(['down', inventory, '--yes'], threeProbed);
    assertInterrupted(run);
    assert.equal(run.stderr, LOGIN_MESSAGE);
    assert.equal(run.stdout, '');
  });
});
