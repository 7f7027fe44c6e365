/**
 * The ssh2 transport against real OpenSSH sshd instances on 127.0.0.1 (random ports, temp keys).
 * Needs root and openssh-server/openssh-client; skipped with the reason otherwise.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';
import { closeAll, connectAll } from '../../src/transport/pool.js';
import { connectNode, type ConnectOptions } from '../../src/transport/ssh.js';
import { TransportError, type Connection } from '../../src/transport/types.js';
import { keygen, killAll, sshdSkipReason, startAgent, startSshd, type Sshd } from './sshd-harness.js';

const skip = sshdSkipReason();

describe('ssh transport against a real sshd', { skip: skip ?? false }, () => {
  let root: string;
  let sshd: Sshd;
  let jump: Sshd;
  let client: { privateFile: string; publicLine: string };
  let agentKey: { privateFile: string; publicLine: string };
  let markerKey: { privateFile: string; publicLine: string };
  let encryptedKey: { privateFile: string; publicLine: string };
  let home: string;
  let sshConfig: string;
  let fakeBin: string;
  let marker: string;
  let counter = 0;

  const knownHostsWith = (...lines: string[]) => {
    const file = join(root, `known_hosts.${++counter}`);
    writeFileSync(file, lines.join('\n') + (lines.length ? '\n' : ''));
    return file;
  };
  const hostKeyLine = (server: Sshd, type: 'ed25519' | 'rsa' = 'ed25519') =>
    `[127.0.0.1]:${server.port} ${server.hostKeys[type].split(' ').slice(0, 2).join(' ')}`;
  const env = (knownHosts: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
    PATH: process.env.PATH,
    HOME: home,
    MESHCTL_KNOWN_HOSTS: knownHosts,
    MESHCTL_SSH_CONFIG: sshConfig,
    ...extra,
  });
  const node = (name: string, ssh: Partial<Node['ssh']> = {}): Node => ({
    name,
    site: 'loop',
    address: '127.0.0.1',
    overlayIp: '10.99.0.1',
    listenPort: 51820,
    ssh: { host: '127.0.0.1', port: sshd.port, user: 'root', become: 'none', identityFile: client.privateFile, ...ssh },
  });
  const refused = async (promise: Promise<unknown>, reason: string, pattern: RegExp) => {
    await assert.rejects(promise, (err: unknown) => {
      assert.ok(err instanceof TransportError, String(err));
      assert.equal(err.reason, reason, err.message);
      assert.match(err.message, pattern);
      assert.doesNotMatch(err.message, /\n/); // one line
      return true;
    });
  };
  /** pids of the processes whose command line is exactly `tag` (sshd is local: its sessions are our processes) */
  const running = (tag: string) => spawnSync('sh', ['-c', `pgrep -x -f '${tag}' || true`], { encoding: 'utf8' }).stdout.trim();
  /** aborts once `count` processes `tag` run, so the abort cannot come before the remote command started */
  const abortWhenRunning = async (tag: string, count: number, controller: AbortController) => {
    // up to 120 s: a channel takes seconds to open on a cold or loaded machine (slow is not wrong here)
    for (let i = 0; i < 2400 && running(tag).split('\n').filter(Boolean).length < count; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(running(tag).split('\n').filter(Boolean).length, count, `${tag} did not start`);
    controller.abort(new Error('interrupted'));
  };
  const fingerprintOf = (pubLine: string) => {
    const file = join(root, `fp.${++counter}.pub`);
    writeFileSync(file, pubLine + '\n');
    return spawnSync('ssh-keygen', ['-lf', file], { encoding: 'utf8' }).stdout.split(' ')[1];
  };

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'meshctl-ssh-it-'));
    home = join(root, 'home'); // no ~/.ssh: only the keys a test names are used
    mkdirSync(home);
    sshConfig = join(root, 'ssh_config');
    client = keygen(join(root, 'id_client'));
    agentKey = keygen(join(root, 'id_agent'));
    markerKey = keygen(join(root, 'id_marker'));
    encryptedKey = keygen(join(root, 'id_encrypted'), 'ed25519', 'fixture-passphrase-not-a-secret');
    marker = join(root, 'marker');
    fakeBin = join(root, 'bin');
    mkdirSync(fakeBin);
    // a stand-in sudo (the test machine has none): checks -n, then behaves as configured by a file
    writeFileSync(
      join(fakeBin, 'sudo'),
      `#!/bin/sh\n[ "$1" = "-n" ] || { echo "sudo: -n missing" >&2; exit 98; }\nshift\n` +
        `if [ "$(cat ${join(root, 'sudo-mode')} 2>/dev/null)" = password ]; then echo "sudo: a password is required" >&2; exit 1; fi\n` +
        `echo sudo-used >> ${join(root, 'sudo-log')}\nexec "$@"\n`,
    );
    chmodSync(join(fakeBin, 'sudo'), 0o755);
    sshd = await startSshd({
      dir: join(root, 'sshd'),
      hostKeyTypes: ['ed25519', 'rsa'],
      authorizedKeys: [
        client.publicLine,
        agentKey.publicLine,
        encryptedKey.publicLine,
        // any command run with this key leaves a marker file first
        `command="touch ${marker}; eval \\"$SSH_ORIGINAL_COMMAND\\"" ${markerKey.publicLine}`,
      ],
      extraConfig: [`SetEnv PATH=${fakeBin}:/usr/local/bin:/usr/bin:/bin`, 'MaxSessions 10'],
    });
    jump = await startSshd({
      dir: join(root, 'jump'),
      authorizedKeys: [client.publicLine],
      extraConfig: ['LogLevel DEBUG1'], // to see the forwarded connections in its log
    });
    writeFileSync(
      sshConfig,
      [
        'Host behind behind2',
        '  HostName 127.0.0.1',
        `  Port ${sshd.port}`,
        '  ProxyJump bastion',
        `  IdentityFile ${client.privateFile}`,
        'Host bastion', // hops are resolved through the ssh config too
        '  HostName 127.0.0.1',
        `  Port ${jump.port}`,
        '  User root',
        `  IdentityFile ${client.privateFile}`,
        '',
      ].join('\n'),
    );
  });

  after(async () => {
    await Promise.allSettled([sshd?.stop(), jump?.stop()]);
    killAll();
    if (root) rmSync(root, { recursive: true, force: true });
  });

  describe('with a trusted host key', () => {
    let conn: Connection;
    let opts: ConnectOptions;
    before(async () => {
      opts = { env: env(knownHostsWith(hostKeyLine(sshd))) };
      const started = performance.now();
      conn = await connectNode(node('n1'), opts);
      const connectMs = performance.now() - started;
      const t0 = performance.now();
      for (let i = 0; i < 10; i++) await conn.run('true');
      const rtt = (performance.now() - t0) / 10;
      // the numbers for the report (they include the remote login shell start-up, e.g. ~/.bashrc)
      process.stdout.write(
        `# loopback: connect ${connectMs.toFixed(0)} ms (incl. ssh -G and the root probe), round trip ${rtt.toFixed(1)} ms\n`,
      );
    });
    after(async () => conn && (await conn.close()));

    test('target and stats', () => {
      assert.equal(conn.node, 'n1');
      assert.equal(conn.target, `root@127.0.0.1:${sshd.port}`);
      assert.ok(conn.stats.connectMs > 0);
      assert.ok(conn.stats.commands >= 11); // probe + 10
    });

    test('stdout, stderr and exit codes; never throws for a non-zero exit', async () => {
      const r = await conn.run(`echo out; echo err >&2; printf '%s' "it's"; exit 3`);
      assert.equal(r.code, 3);
      assert.equal(r.stdout, "out\nit's");
      assert.equal(r.stderr, 'err\n');
      assert.ok(r.durationMs >= 0);
      assert.equal((await conn.run('id -u')).stdout, '0\n');
      assert.equal((await conn.run('kill -KILL $$')).code, 137);
    });

    test('the script travels on stdin: a >131,072-byte script runs whole, its commands read /dev/null', async () => {
      // one argument of that size is refused by execve (E2BIG) on Linux; 40,000 lines of 5-6 bytes
      const lines = Array.from({ length: 40_000 }, (_, i) => `n=${i}`);
      const script = `cat\nread -r x && echo swallowed\n${lines.join('\n')}\ncat <<'EOF'\n}\nEOF\necho "last=$n"`;
      assert.ok(Buffer.byteLength(script) > 131_072);
      const r = await conn.run(script);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, '}\nlast=39999\n');
    });

    test('abort of a root login: the remote process is gone before run() rejects', async () => {
      const controller = new AbortController();
      const tag = `sleep 4${++counter}.25`;
      const run = conn.run(`${tag} & ${tag}; wait`, { signal: controller.signal });
      await abortWhenRunning(tag, 2, controller);
      await assert.rejects(run, /interrupted/);
      assert.equal(running(tag), '', 'left behind');
    });

    test('large output', async () => {
      const r = await conn.run(`head -c 5000000 /dev/zero | tr '\\0' a; echo tail >&2`, { maxStdoutBytes: 8 * 1024 * 1024 }); // over the 4 MiB default cap
      assert.equal(r.code, 0);
      assert.equal(r.stdout.length, 5_000_000);
      assert.equal(r.stderr, 'tail\n');
    });

    test('per-command timeout: 124 at the deadline, and the remote process is gone', async () => {
      // no clock: the local deadline's own message says run() returned at it (not when the 31.7 s sleep ended)
      const r = await conn.run('sleep 31.7', { timeoutMs: 500 });
      assert.equal(r.code, 124);
      assert.match(r.stderr, /timed out/);
      // root sessions cannot be signalled by sshd, so the remote `timeout` (whole seconds) is what kills it; asked
      // until it is gone, for as long as the sleep itself would have run (on a loaded machine the kill comes late)
      let alive = 'x';
      for (const until = Date.now() + 31_700; alive && Date.now() < until; ) {
        alive = (await conn.run(`pgrep -f 'sleep 3[1].7' || true`)).stdout.trim();
        if (alive) await new Promise((res) => setTimeout(res, 100));
      }
      assert.equal(alive, '', 'the remote sleep survived');
    });

    test('an abort signal rejects with its reason', async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(new Error('interrupted')), 200);
      await assert.rejects(conn.run('sleep 5', { signal: controller.signal }), /interrupted/);
      await assert.rejects(conn.run('true', { signal: controller.signal }), /interrupted/);
    });

    test('25 parallel commands on one connection: never more than 8 channels at once, all complete (no timing assumed)', async () => {
      // A fresh connection, so its peak is this test's. Each command counts itself in and out of a shared counter
      // under flock(1), logs the count it saw, and waits for a gate file. With the gate shut nothing finishes, so the
      // cap is reached however slowly sshd opens channels (about 1 s each on a cold page cache) and a 9th command
      // can only start if the transport asked for more than 8 sessions. The gate opens once 8 run; then all finish.
      const c = await connectNode(node('cap'), opts);
      const dir = join(root, `cap.${++counter}`);
      mkdirSync(dir);
      const q = (f: string) => `'${join(dir, f)}'`;
      const bump = (delta: string) =>
        `exec 9>>${q('lock')}; flock 9; n=$(( $(cat ${q('now')} 2>/dev/null || echo 0) ${delta} )); echo $n >${q('now')}; echo $n >>${q('seen')}; flock -u 9`;
      const script = (i: number) => `${bump('+ 1')}\nwhile [ ! -e ${q('gate')} ]; do sleep 0.05; done\n${bump('- 1')}\necho ${i}`;
      const runs = Array.from({ length: 25 }, (_, i) => c.run(script(i), { timeoutMs: 600_000 }));
      const now = () => Number(readFileSync(join(dir, 'now'), 'utf8').trim() || 0);
      try {
        // a command that ends before the gate opens has failed; the deadline only keeps a broken cap from hanging
        // the suite (a cold machine needs ~10 s here, a warm one well under 1 s)
        let early: string | undefined;
        for (const run of runs)
          void run.then(
            (r) => (early ??= `a command ended before the gate: ${r.code} ${r.stderr}`),
            (e) => (early ??= String(e)),
          );
        const deadline = Date.now() + 300_000;
        while (!existsSync(join(dir, 'now')) || now() < 8) {
          assert.equal(early, undefined);
          assert.ok(Date.now() < deadline, `only ${existsSync(join(dir, 'now')) ? now() : 0} commands ran at once after 300 s`);
          await new Promise((r) => setTimeout(r, 50));
        }
        // 8 commands run and block: the transport holds the other 17 back rather than asking sshd for them
        assert.equal(now(), 8);
        assert.equal(c.stats.peakChannels, 8, 'channel requests in flight while 8 commands block');
      } finally {
        writeFileSync(join(dir, 'gate'), '');
      }
      const results = await Promise.all(runs);
      results.forEach((r, i) => {
        assert.equal(r.code, 0, r.stderr);
        assert.equal(r.stdout, `${i}\n`);
      });
      const seen = readFileSync(join(dir, 'seen'), 'utf8').trim().split('\n').map(Number);
      assert.equal(seen.length, 50, 'every command counted in and out');
      assert.equal(Math.max(...seen), 8, `counts seen by the node: ${seen.join(' ')}`);
      assert.equal(c.stats.peakChannels, 8);
      assert.equal(c.stats.channels, 26, 'the root probe and 25 commands: one channel each');
      await c.close();
    });
  });

  test('a hashed known_hosts entry (ssh-keygen -H) is accepted', async () => {
    const file = knownHostsWith(hostKeyLine(sshd));
    assert.equal(spawnSync('ssh-keygen', ['-H', '-f', file]).status, 0);
    assert.match(readFileSync(file, 'utf8'), /^\|1\|/);
    const c = await connectNode(node('hashed'), { env: env(file) });
    assert.equal((await c.run('echo ok')).stdout, 'ok\n');
    await c.close();
  });

  test('a host known only by its RSA key matches (known key types are preferred)', async () => {
    const c = await connectNode(node('rsa'), { env: env(knownHostsWith(hostKeyLine(sshd, 'rsa'))) });
    await c.close();
  });

  test('unknown key: refused with its fingerprint before authentication, no command run', async () => {
    rmSync(marker, { force: true });
    const logBefore = sshd.log().length;
    const fp = fingerprintOf(sshd.hostKeys.ed25519);
    const file = knownHostsWith();
    await refused(
      connectNode(node('unknown', { identityFile: markerKey.privateFile }), { env: env(file) }),
      'host-key-unknown',
      new RegExp(
        `^unknown \\(root@127\\.0\\.0\\.1:${sshd.port}\\): host key not known: ED25519 key ${fp.replace(/[+/]/g, '\\$&')} .*ssh-keyscan.*--accept-new`,
      ),
    );
    assert.ok(!existsSync(marker), 'a command ran on a node with an unknown key');
    assert.doesNotMatch(sshd.log().slice(logBefore), /Accepted publickey|Failed publickey|Starting session/);
    assert.equal(readFileSync(file, 'utf8'), '');

    // positive control: the same key does run commands (and leaves the marker) once the host is trusted
    const recorded: string[] = [];
    const c = await connectNode(node('unknown', { identityFile: markerKey.privateFile }), {
      env: env(file),
      acceptNew: true,
      onHostKeyRecorded: (e) => recorded.push(e.fingerprint),
    });
    assert.deepEqual(recorded, [fp]);
    assert.ok(existsSync(marker));
    await c.close();
  });

  test('--accept-new records the key (OpenSSH finds it), then the next connect matches', async () => {
    const file = join(root, 'fresh', 'dir', 'known_hosts');
    const c1 = await connectNode(node('tofu'), { env: env(file), acceptNew: true });
    await c1.close();
    assert.equal(spawnSync('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', file]).status, 0);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, 1);
    const c2 = await connectNode(node('tofu'), { env: env(file) });
    await c2.close();
    assert.equal(readFileSync(file, 'utf8').trim().split('\n').length, 1);
  });

  test('changed key: always refused, even with --accept-new, with the man-in-the-middle warning', async () => {
    const other = keygen(join(root, `other_host_key.${++counter}`));
    const file = knownHostsWith(`[127.0.0.1]:${sshd.port} ${other.publicLine.split(' ').slice(0, 2).join(' ')}`);
    rmSync(marker, { force: true });
    const logBefore = sshd.log().length;
    for (const acceptNew of [false, true]) {
      await refused(
        connectNode(node('changed', { identityFile: markerKey.privateFile }), { env: env(file), acceptNew }),
        'host-key-changed',
        /HOST KEY CHANGED.*man-in-the-middle.*ssh-keygen -R '\[127\.0\.0\.1\]:\d+'/,
      );
    }
    assert.ok(!existsSync(marker));
    assert.doesNotMatch(sshd.log().slice(logBefore), /Accepted publickey|Starting session/);
  });

  test('abort through sudo (become sudo): the remote process is gone before run() rejects', async () => {
    writeFileSync(join(root, 'sudo-mode'), 'ok');
    const c = await connectNode(node('sudo-abort', { become: 'sudo' }), { env: env(knownHostsWith(hostKeyLine(sshd))) });
    try {
      const tag = `sleep 5${++counter}.25`;
      const controller = new AbortController();
      const run = c.run(tag, { signal: controller.signal });
      await abortWhenRunning(tag, 1, controller);
      await assert.rejects(run, /interrupted/);
      assert.equal(running(tag), '', 'left behind');
      assert.equal((await c.run('echo still usable')).stdout, 'still usable\n');
    } finally {
      await c.close();
    }
  });

  test('a host known only by its ED25519 key that offers only RSA: changed, refused even with --accept-new', async () => {
    const rsaOnly = await startSshd({ dir: join(root, 'rsa-only'), hostKeyTypes: ['rsa'], authorizedKeys: [markerKey.publicLine] });
    try {
      // the ED25519 key known for it is the one the other sshd has: a real key, just not offered here
      const file = knownHostsWith(`[127.0.0.1]:${rsaOnly.port} ${sshd.hostKeys.ed25519.split(' ').slice(0, 2).join(' ')}`);
      const before = readFileSync(file, 'utf8');
      for (const acceptNew of [false, true]) {
        await refused(
          connectNode(node('rsa-only', { port: rsaOnly.port, identityFile: markerKey.privateFile }), { env: env(file), acceptNew }),
          'host-key-changed',
          /HOST KEY CHANGED: the host offers RSA key SHA256:\S+, but .*known_hosts\.\d+:1 knows \[127\.0\.0\.1\]:\d+ only by its ED25519 key/,
        );
      }
      assert.equal(readFileSync(file, 'utf8'), before, 'nothing recorded');
      assert.doesNotMatch(rsaOnly.log(), /Accepted publickey|Starting session/);
    } finally {
      await rsaOnly.stop();
    }
  });

  test('@revoked key: refused', async () => {
    const key = sshd.hostKeys.ed25519.split(' ').slice(0, 2).join(' ');
    const file = knownHostsWith(`@revoked * ${key}`, hostKeyLine(sshd));
    await refused(connectNode(node('revoked'), { env: env(file) }), 'host-key-revoked', /@revoked/);
  });

  test('ProxyJump through a second sshd (ssh config alias); nodes behind it share one bastion connection', async () => {
    const file = knownHostsWith(hostKeyLine(sshd), hostKeyLine(jump));
    const jumpLogBefore = jump.log().length;
    // port 22 / user root are the inventory defaults: the alias's Port and ProxyJump apply
    const nodes = [
      node('j1', { host: 'behind', port: 22, identityFile: undefined }),
      node('j2', { host: 'behind2', port: 22, identityFile: undefined }),
    ];
    const { connections, failures, jumpHosts } = await connectAll(nodes, { env: env(file) });
    assert.deepEqual(
      [...failures.values()].map((f) => f.message),
      [],
    );
    for (const c of connections.values()) {
      assert.equal(c.target, `root@127.0.0.1:${sshd.port}`);
      assert.equal((await c.run('echo via-jump')).stdout, 'via-jump\n');
    }
    const jumpLog = jump.log().slice(jumpLogBefore);
    assert.match(jumpLog, new RegExp(`direct_tcpip: .*target 127\\.0\\.0\\.1 port ${sshd.port}`));
    assert.equal(jumpLog.match(/Accepted publickey/g)?.length, 1, 'one bastion connection for both nodes');
    await closeAll(connections, jumpHosts);
  });

  test('ProxyJump with an unknown bastion key is refused at the bastion', async () => {
    const file = knownHostsWith(hostKeyLine(sshd));
    await refused(
      connectNode(node('jb', { host: 'behind', port: 22 }), { env: env(file) }),
      'host-key-unknown',
      new RegExp(`^jb \\(jump host root@127\\.0\\.0\\.1:${jump.port}\\): host key not known`),
    );
  });

  test('a key held only by ssh-agent (SSH_AUTH_SOCK)', async () => {
    const agent = await startAgent(join(root, 'agent.sock'), [agentKey.privateFile]);
    try {
      const c = await connectNode(node('agent', { identityFile: undefined }), {
        env: env(knownHostsWith(hostKeyLine(sshd)), { SSH_AUTH_SOCK: agent.sock }),
      });
      assert.equal((await c.run('echo agent')).stdout, 'agent\n');
      await c.close();
      assert.match(sshd.log(), new RegExp(`Accepted publickey for root .* ${fingerprintOf(agentKey.publicLine).replace(/[+/]/g, '\\$&')}`));
    } finally {
      await agent.stop();
    }
  });

  test('an encrypted key without an agent: a clear error', async () => {
    await refused(
      connectNode(node('enc', { identityFile: encryptedKey.privateFile }), { env: env(knownHostsWith(hostKeyLine(sshd))) }),
      'auth',
      /no usable identity.*encrypted key skipped: .*id_encrypted.*start ssh-agent/,
    );
  });

  test('a key the server does not accept: authentication failed, naming what was tried', async () => {
    const stranger = keygen(join(root, `stranger.${++counter}`));
    await refused(
      connectNode(node('auth', { identityFile: stranger.privateFile }), { env: env(knownHostsWith(hostKeyLine(sshd))) }),
      'auth',
      /authentication failed \(tried: .*stranger/,
    );
  });

  test('become sudo runs through sudo -n; a sudo asking for a password fails clearly', async () => {
    const file = knownHostsWith(hostKeyLine(sshd));
    rmSync(join(root, 'sudo-log'), { force: true });
    writeFileSync(join(root, 'sudo-mode'), 'ok');
    const c = await connectNode(node('sudo', { become: 'sudo' }), { env: env(file) });
    assert.equal((await c.run(`printf '%s' "it's root: $(id -u)"`)).stdout, "it's root: 0");
    assert.ok(readFileSync(join(root, 'sudo-log'), 'utf8').includes('sudo-used'));
    writeFileSync(join(root, 'sudo-mode'), 'password');
    await refused(c.run('true'), 'sudo', /sudo asks for a password/);
    await c.close();
    await refused(connectNode(node('sudo', { become: 'sudo' }), { env: env(file) }), 'sudo', /sudo asks for a password.*NOPASSWD/);
    writeFileSync(join(root, 'sudo-mode'), 'ok');
  });

  test('connection refused and closed connections are TransportErrors naming node and target', async () => {
    const closedPort = (await import('./sshd-harness.js')).freePort;
    const port = await closedPort();
    await refused(
      connectNode(node('down', { port }), { env: env(knownHostsWith()) }),
      'connect',
      new RegExp(`^down \\(root@127\\.0\\.0\\.1:${port}\\): connection refused`),
    );
    const c = await connectNode(node('closing'), { env: env(knownHostsWith(hostKeyLine(sshd))) });
    await c.close();
    await refused(c.run('true'), 'closed', /already closed/);
  });

  test('connectAll: every node reported, failures do not drop the others', async () => {
    const file = knownHostsWith(hostKeyLine(sshd));
    const nodes = [node('ok1'), node('bad', { port: 1 }), node('ok2'), node('nokey', { identityFile: join(root, 'missing') })];
    const { connections, failures, jumpHosts } = await connectAll(nodes, { env: env(file) });
    assert.deepEqual([...connections.keys()], ['ok1', 'ok2']);
    assert.deepEqual([...failures.keys()], ['bad', 'nokey']);
    assert.match(failures.get('nokey')!.message, /missing \(ENOENT\)/);
    await closeAll(connections, jumpHosts);
  });
});

if (skip) test(`ssh integration skipped: ${skip}`, { skip }, () => {});
