import { test } from 'node:test';
import keyParser from 'ssh2/lib/protocol/keyParser.js';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs, { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { join } from 'node:path';
import type { Node } from '../../src/inventory/types.js';
import { FACTS } from '../../src/facts/definitions.js';
import { closeAll, connectAll } from '../../src/transport/pool.js';
import { settingsFromSshG } from '../../src/transport/ssh-config.js';
import {
  hostKeyAlgorithms,
  knownHostsFiles,
  planAuth,
  type RemoteCommand,
  signalExitCode,
  stopScript,
  sudoNeedsPassword,
  wrapCommand,
} from '../../src/transport/ssh.js';
import { shellQuote, TransportError, type Connection } from '../../src/transport/types.js';
import { tempDir } from '../support/temp-dir.js';

const sh = (command: string, env: NodeJS.ProcessEnv = {}) =>
  spawnSync('sh', ['-c', command], { encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });

const nasty = `echo "a b" 'c'"'"'d' \\$HOME \`x\` $(printf '%s' "$0") ; printf '%s\\n' "it's" "\\"q\\""`;

test('shellQuote survives every character', () => {
  for (const value of ["it's", '', 'a b', '$(id)', '`x`', '"', "'", '\n', 'a\\b', "''''"]) {
    assert.equal(sh(`printf %s ${shellQuote(value)}`).stdout, value);
  }
});

/** Runs a wrapped command as the remote login shell would: `sh -c COMMAND`, the framed script on stdin. */
const shRemote = (w: RemoteCommand, env: NodeJS.ProcessEnv = {}) =>
  spawnSync('sh', ['-c', w.command], { input: w.input, encoding: 'utf8', env: { PATH: process.env.PATH, ...env } });

test('wrapCommand runs the script exactly, read from stdin, with or without a timeout', () => {
  const script = "printf '%s|' \"it's\" \"$HOME\" '$(id)' '`no`'; echo; exit 7";
  for (const timeoutMs of [undefined, 1500]) {
    const w = wrapCommand(script, { sudo: false, timeoutMs });
    assert.ok(!w.command.includes('printf'), 'the script is not on the command line');
    const r = shRemote(w, { HOME: '/h' });
    assert.equal(r.status, 7);
    assert.equal(r.stdout, "it's|/h|$(id)|`no`|\n");
  }
  assert.ok(shRemote(wrapCommand(nasty, { sudo: false })).status === 0);
});

test('wrapCommand: a small fixed command line; sudo -n prefix, remote timeout rounded up to whole seconds', () => {
  const w = wrapCommand('id -u', { sudo: true, timeoutMs: 1500, token: '0123456789abcdef' });
  assert.equal(
    w.command,
    'sudo -n sh -c \'[ -n "${1:-}" ] && SSH_CONNECTION=$1 && export SSH_CONNECTION; MESHCTL_RUN=0123456789abcdef; export MESHCTL_RUN; if command -v timeout >/dev/null 2>&1; then exec timeout -k 5 2 sh; fi; exec sh\' meshctl "$SSH_CONNECTION"',
  );
  assert.equal(w.input, '{\nid -u\n} </dev/null\n');
  assert.equal(
    wrapCommand('x'.repeat(500_000), { sudo: false, timeoutMs: 1000 }).command.length,
    wrapCommand('', { sudo: false, timeoutMs: 1000 }).command.length,
  );
  assert.doesNotMatch(wrapCommand('true', { sudo: false }).command, /sudo|timeout|MESHCTL_RUN/);
  assert.match(wrapCommand('true', { sudo: false, timeoutMs: 200 }).command, /timeout -k 5 1 /);
  assert.throws(() => wrapCommand('true', { sudo: false, token: "x'; reboot" }), /bad run token/);
});

test('wrapCommand: a fake sudo sees -n and the same argument vector', () => {
  const dir = tempDir('meshctl-sudo-');
  writeFileSync(join(dir, 'sudo'), '#!/bin/sh\n[ "$1" = "-n" ] || exit 99\nshift\nexec "$@"\n');
  chmodSync(join(dir, 'sudo'), 0o755);
  const r = shRemote(wrapCommand(`printf '%s' "it's ok"`, { sudo: true, timeoutMs: 5000 }), { PATH: `${dir}:${process.env.PATH}` });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "it's ok");
});

test('wrapCommand: the remote timeout kills the command (exit 124)', {
  skip: sh('command -v timeout').status !== 0 ? 'no timeout(1)' : false,
}, () => {
  // no clock: `sleep 60` ends with 0 on its own; 124 is timeout(1)'s status for a command it killed, here after 1 s
  // (the guard's `timeout -k 5 1`, checked above); a guard that lost its timeout would wait the minute out and fail
  const r = shRemote(wrapCommand('sleep 60', { sudo: false, timeoutMs: 300 }));
  assert.equal(r.status, 124);
});

// The script shares stdin with the shell that reads it: these are the ways a command could eat the rest of it.
const SWALLOWERS: Array<[string, string]> = [
  ['cat', 'cat'],
  ['read', 'read -r line; echo "read=[$line]"'],
  ['head', 'head -c 1000000'],
  ['a subshell reading', '(while read -r l; do echo "got $l"; done)'],
  ['a background job reading', 'cat & wait'],
  ['sh reading stdin', 'sh'],
];

for (const [label, command] of SWALLOWERS) {
  test(`framing: ${label} inside the script reads /dev/null, never the rest of the script`, () => {
    for (const timeoutMs of [undefined, 5000]) {
      const r = shRemote(wrapCommand(`echo before\n${command}\necho after`, { sudo: false, timeoutMs }));
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout.replace('read=[]\n', ''), 'before\nafter\n');
    }
  });
}

test('framing: here-documents, exit, set -e, background jobs and wait behave as with sh -c', () => {
  const scripts = [
    // a here-document whose body has a lone } and the terminator-like text
    "cat <<'EOF'\n}\n} </dev/null\n$HOME\nEOF\necho done",
    'cat <<EOF\nhome=$HOME\nEOF',
    'echo a; exit 3; echo b',
    'set -e; echo a; false; echo b',
    'set -e; if false; then :; fi; echo ok',
    '(sleep 0.2; echo late) & (echo early) & wait; echo all',
    'sleep 0.1 & p=$!; wait $p; echo "waited $?"',
    'f() { return 4; }; f; echo "f=$?"',
    "trap 'echo trapped' EXIT; echo body",
    'echo "$0 $#"',
    'echo no newline at the end # a comment',
    'x=1\n# last line a comment',
  ];
  for (const script of scripts) {
    const old = spawnSync('sh', ['-c', script], { encoding: 'utf8', env: { PATH: process.env.PATH, HOME: '/h' }, input: '' });
    for (const timeoutMs of [undefined, 5000]) {
      const r = shRemote(wrapCommand(script, { sudo: false, timeoutMs }), { HOME: '/h' });
      assert.deepEqual([r.status, r.stdout, r.stderr], [old.status, old.stdout, old.stderr], script);
    }
  }
});

test('framing: a syntax error anywhere runs nothing, as with sh -c; so does a script cut short in transit', () => {
  const r = shRemote(wrapCommand('echo ran\nif then fi', { sudo: false }));
  assert.notEqual(r.status, 0);
  assert.equal(r.stdout, '');
  const w = wrapCommand('echo ran\necho more', { sudo: false });
  const cut = spawnSync('sh', ['-c', w.command], { input: w.input.slice(0, w.input.indexOf('} <')), encoding: 'utf8' });
  assert.notEqual(cut.status, 0);
  assert.equal(cut.stdout, '');
});

test('stopScript: TERMs every process of the run (found by its token), KILLs what ignores TERM, spares others', {
  skip: process.platform !== 'linux' ? 'needs /proc' : false,
}, async () => {
  const token = 'feedfacecafe0001';
  const other = 'feedfacecafe0002';
  const start = (t: string, script: string) => {
    const w = wrapCommand(script, { sudo: false, timeoutMs: 60_000, token: t });
    const child = spawn('sh', ['-c', w.command], { stdio: ['pipe', 'ignore', 'ignore'] });
    child.stdin.end(w.input);
    return child;
  };
  const pidsOf = (t: string) =>
    spawnSync('sh', ['-c', `grep -lzx 'MESHCTL_RUN=${t}' /proc/[0-9]*/environ 2>/dev/null | wc -l`], { encoding: 'utf8' }).stdout.trim();
  // a foreground sleep, a background job in its own session (setsid), and a shell that ignores TERM
  const victim = start(token, 'sleep 300 & setsid sleep 301 & sh -c \'trap "" TERM; sleep 302\' & wait');
  const bystander = start(other, 'sleep 303');
  try {
    // until every process has started, however loaded the machine (the test runner's timeout ends a hang)
    while (Number(pidsOf(token)) < 5 || pidsOf(other) === '0') await new Promise((r) => setTimeout(r, 50));
    // the other run's processes all started too: its count the same across half a second (the full suite once sampled
    // it while its `sleep` was still being started: 2 before, 3 after, and "the other run was left alone" failed)
    let others = pidsOf(other);
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      const again = pidsOf(other);
      if (again === others) break;
      others = again;
    }
    // no clock either: the script's steps, traced (sh -x), are counted. It TERMs first, KILLs after exactly
    // ceil(graceMs / 100) naps however long each nap took, and ends once nothing is left. The shell that ignores
    // TERM (its sleep inherits that) is still there at the KILL, and gone after it (exit 0: nothing survived).
    const r = spawnSync('sh', ['-x', '-c', stopScript([token], 500)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(pidsOf(token), '0');
    assert.equal(pidsOf(other), others, 'the other run was left alone');
    const steps = r.stderr.split('\n').flatMap((line) => {
      const step = /^\++ (kill -TERM|kill -KILL|sleep 0\.1)\b/.exec(line)?.[1];
      return step ? [step === 'sleep 0.1' ? 'nap' : step.slice(6)] : [];
    });
    const firstKill = steps.indexOf('KILL');
    assert.ok(firstKill > 0 && steps.indexOf('TERM') === 0, `TERM first, then KILL: ${steps.join(' ')}`);
    assert.equal(steps.slice(0, firstKill).filter((s) => s === 'nap').length, 5, `KILL after 5 naps of 0.1 s: ${steps.join(' ')}`);
  } finally {
    victim.kill('SIGKILL');
    spawnSync('sh', ['-c', stopScript([token, other], 100)]);
    bystander.kill('SIGKILL');
  }
});

test('sudoNeedsPassword recognises sudo -n refusals', () => {
  assert.ok(sudoNeedsPassword('sudo: a password is required\n'));
  assert.ok(sudoNeedsPassword('sudo: a terminal is required to read the password; either use ...'));
  assert.ok(!sudoNeedsPassword('sudo: unknown user'));
  assert.ok(!sudoNeedsPassword(''));
});

test('signalExitCode is 128 + signal number', () => {
  assert.equal(signalExitCode('KILL'), 137);
  assert.equal(signalExitCode('SIGTERM'), 143);
  assert.equal(signalExitCode(undefined), 255);
  assert.equal(signalExitCode('NOPE'), 255);
});

test('hostKeyAlgorithms puts the known key types first, in the default order (OpenSSH order_hostkeyalgs), not the file order', () => {
  assert.equal(hostKeyAlgorithms([])[0], 'ssh-ed25519');
  assert.deepEqual(hostKeyAlgorithms(['ssh-rsa']).slice(0, 3), ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']);
  assert.deepEqual(hostKeyAlgorithms(['ecdsa-sha2-nistp256', 'ssh-ed25519']).slice(0, 2), ['ssh-ed25519', 'ecdsa-sha2-nistp256']);
  assert.deepEqual(hostKeyAlgorithms(['ssh-rsa', 'ecdsa-sha2-nistp256']).slice(0, 4), [
    'ecdsa-sha2-nistp256',
    'rsa-sha2-512',
    'rsa-sha2-256',
    'ssh-rsa',
  ]);
  assert.equal(new Set(hostKeyAlgorithms(['ssh-ed25519'])).size, hostKeyAlgorithms(['ssh-ed25519']).length);
  assert.deepEqual(hostKeyAlgorithms(['ssh-dss', 'x']), hostKeyAlgorithms([]));
});

const node = (name: string, extra: Partial<Node['ssh']> = {}): Node => ({
  name,
  site: 's',
  address: '127.0.0.1',
  overlayIp: '10.1.0.1',
  listenPort: 51820,
  ssh: { host: '127.0.0.1', port: 22, user: 'root', become: 'none', ...extra },
});

test('planAuth: explicit key, then agent, then config/default files; encrypted keys reported, never parsed', () => {
  const home = tempDir('meshctl-auth-');
  mkdirSync(join(home, '.ssh'));
  const gen = (file: string, pass = '') => {
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', pass, '-C', '', '-f', file]);
    assert.equal(r.status, 0);
  };
  gen(join(home, 'explicit'));
  gen(join(home, '.ssh', 'id_ed25519'));
  gen(join(home, '.ssh', 'id_rsa'), 'test-passphrase-not-secret');
  writeFileSync(join(home, '.ssh', 'id_ecdsa'), 'garbage');
  const settings = settingsFromSshG(
    'h',
    `identityfile ~/.ssh/id_rsa\nidentityfile ~/.ssh/id_ecdsa\nidentityfile ~/.ssh/id_ed25519\n`,
    home,
  );
  const plan = planAuth(node('n', { identityFile: join(home, 'explicit') }), settings, { SSH_AUTH_SOCK: '/tmp/agent.sock' }, home);
  assert.deepEqual(
    plan.candidates.map((c) => c.label),
    [join(home, 'explicit'), 'ssh-agent', join(home, '.ssh', 'id_ed25519')],
  );
  assert.deepEqual(plan.encrypted, [join(home, '.ssh', 'id_rsa')]);
  assert.deepEqual(plan.unusable, []); // implicit files that are not keys are skipped quietly

  const missing = planAuth(
    node('n', { identityFile: join(home, 'nope') }),
    settings,
    { MESHCTL_IDENTITY: join(home, '.ssh', 'id_ecdsa') },
    home,
  );
  assert.equal(missing.unusable.length, 2);
  assert.match(missing.unusable[0], /nope \(ENOENT\)/);
  const m = missing.candidates[0].method('root');
  assert.equal(m.type, 'publickey');
  assert.equal(m.username, 'root');
});

test('planAuth: a device, a FIFO or a huge file named as the identity is unusable, not read (Q10 F6: /dev/zero filled memory, a FIFO hung the process)', () => {
  const home = tempDir('meshctl-auth-dev-');
  const fifo = join(home, 'fifo-id');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const huge = join(home, 'huge-id');
  writeFileSync(huge, Buffer.alloc(2 * 1024 * 1024, 'a'));
  const settings = settingsFromSshG('h', '', home);
  for (const [file, why] of [
    ['/dev/zero', /\/dev\/zero \(not a regular file\)/],
    [fifo, /fifo-id \(not a regular file\)/],
    [huge, /huge-id \(2097152 bytes: larger than any private key file/],
  ] as const) {
    const started = Date.now();
    const plan = planAuth(node('n', { identityFile: file }), settings, {}, home);
    assert.match(plan.unusable.join('\n'), why);
    assert.ok(Date.now() - started < 5_000, 'not read');
  }
});

test('planAuth hands ssh2 the key it parsed once, the same object for every node (ssh2 parsed the bytes again per login)', () => {
  const home = tempDir('meshctl-auth-once-');
  const file = join(home, 'id');
  assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', file]).status, 0);
  const settings = settingsFromSshG('h', '', home);
  const keyOf = (name: string) => {
    const method = planAuth(node(name, { identityFile: file }), settings, {}, home).candidates[0]!.method('root');
    assert.equal(method.type, 'publickey');
    return (method as { key: unknown }).key;
  };
  const first = keyOf('a');
  // ssh2 takes a parsed key as is (its parseKey returns it); a Buffer it would parse for each node's login
  assert.ok(!Buffer.isBuffer(first), 'a parsed key, not the file bytes');
  assert.equal((first as { isPrivateKey(): boolean }).isPrivateKey(), true);
  assert.equal(keyOf('b'), first, 'the same parsed key for the next node');
});

test('knownHostsFiles: MESHCTL_KNOWN_HOSTS overrides; otherwise ~/.ssh/known_hosts + config files, /dev/null never written', () => {
  const s = settingsFromSshG('h', 'userknownhostsfile /dev/null\nglobalknownhostsfile /etc/ssh/ssh_known_hosts\n', '/h');
  assert.deepEqual(knownHostsFiles(s, {}, '/h'), {
    read: ['/h/.ssh/known_hosts', '/etc/ssh/ssh_known_hosts'],
    write: '/h/.ssh/known_hosts',
  });
  const s2 = settingsFromSshG('h', 'userknownhostsfile /x/kh /x/kh2\n', '/h');
  assert.deepEqual(knownHostsFiles(s2, {}, '/h'), { read: ['/h/.ssh/known_hosts', '/x/kh', '/x/kh2'], write: '/x/kh' });
  assert.deepEqual(knownHostsFiles(s2, { MESHCTL_KNOWN_HOSTS: '/a:~/b' }, '/h'), { read: ['/a', '/h/b'], write: '/a' });
});

test('connectAll opens every connection at once by default (each node has its own sshd: no waves of 8)', async () => {
  const nodes = Array.from({ length: 32 }, (_, i) => node(`n${i}`));
  let inFlight = 0;
  let peak = 0;
  const result = await connectAll(nodes, {
    connect: async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, 20));
      inFlight--;
      return {
        node: n.name,
        target: 't',
        stats: { commands: 0, remoteMs: 0, connectMs: 0 },
        run: async () => ({ code: 0, stdout: '', stderr: '', durationMs: 0 }),
        close: async () => undefined,
      } satisfies Connection;
    },
  });
  assert.equal(result.connections.size, 32);
  assert.equal(peak, 32);
});

test('connectAll reports every node, in inventory order, and never stops at the first failure', async () => {
  const nodes = ['a', 'b', 'c', 'd', 'e'].map((n) => node(n));
  let inFlight = 0;
  let peak = 0;
  const closed: string[] = [];
  const result = await connectAll(nodes, {
    maxParallel: 2,
    connect: async (n) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      await new Promise((r) => setTimeout(r, n.name === 'a' ? 30 : 5));
      inFlight--;
      if (n.name === 'b') throw new TransportError('b', 'b (root@x:22): connection refused');
      if (n.name === 'd') throw new Error('boom');
      return {
        node: n.name,
        target: 't',
        stats: { commands: 0, remoteMs: 0, connectMs: 0 },
        run: async () => ({ code: 0, stdout: '', stderr: '', durationMs: 0 }),
        close: async () => void closed.push(n.name),
      } satisfies Connection;
    },
  });
  assert.deepEqual([...result.connections.keys()], ['a', 'c', 'e']);
  assert.deepEqual([...result.failures.keys()], ['b', 'd']);
  assert.ok(result.failures.get('d') instanceof TransportError);
  assert.match(result.failures.get('d')!.message, /^d: boom$/);
  assert.equal(peak, 2);
  await closeAll(result.connections, result.jumpHosts);
  assert.deepEqual(closed.sort(), ['a', 'c', 'e']);
});

test('wrapCommand through sudo (which resets the environment): the login’s SSH_CONNECTION reaches the script, so the operator fact runs no tr', () => {
  const dir = tempDir('meshctl-sudo-env-');
  // as sudo's env_reset: the command gets a fresh environment; `tr` leaves a mark when it runs
  writeFileSync(join(dir, 'sudo'), `#!/bin/sh\n[ "$1" = "-n" ] || exit 99\nshift\nexec env -i PATH="${dir}:$PATH" "$@"\n`);
  writeFileSync(join(dir, 'tr'), `#!/bin/sh\n: > ${join(dir, 'tr-ran')}\nexec /usr/bin/tr "$@"\n`);
  chmodSync(join(dir, 'sudo'), 0o755);
  chmodSync(join(dir, 'tr'), 0o755);
  const operator = FACTS.operatorAddress.command({ interface: 'wg0', listenPort: 51820 });
  const r = shRemote(wrapCommand(operator, { sudo: true, timeoutMs: 5000, token: '0123456789abcdef' }), {
    PATH: `${dir}:${process.env.PATH}`,
    SSH_CONNECTION: '203.0.113.7 50022 192.0.2.10 22',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'ssh_connection=203.0.113.7 50022 192.0.2.10 22\n');
  assert.equal(existsSync(join(dir, 'tr-ran')), false, 'no ancestor environ was read');
});

test('planAuth reads each identity file once per process however many nodes log in with it, and again once it changed', () => {
  // issue 10: every node's login read and parsed the same key files again (4 nodes: 4 reads of each)
  const home = tempDir('meshctl-auth-once-');
  mkdirSync(join(home, '.ssh'));
  const key = join(home, 'explicit');
  assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', key]).status, 0);
  assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', join(home, '.ssh', 'id_ed25519')]).status, 0);
  const reads = new Map<string, number>();
  const original = fs.readFileSync;
  fs.readFileSync = ((file: fs.PathOrFileDescriptor, ...rest: unknown[]) => {
    if (typeof file === 'string') reads.set(file, (reads.get(file) ?? 0) + 1);
    return (original as (...a: unknown[]) => unknown)(file, ...rest);
  }) as typeof fs.readFileSync;
  syncBuiltinESMExports();
  try {
    const settings = settingsFromSshG('h', '', home);
    const plans = ['a', 'b', 'c', 'd'].map((name) => planAuth(node(name, { identityFile: key }), settings, {}, home));
    for (const plan of plans)
      assert.deepEqual(
        plan.candidates.map((c) => c.label),
        [key, join(home, '.ssh', 'id_ed25519')],
      );
    assert.equal(reads.get(key), 1, 'the explicit key');
    assert.equal(reads.get(join(home, '.ssh', 'id_ed25519')), 1, 'the default key');
    // a key replaced since (a new file at the same path) is read anew: the cache never hands ssh2 a stale key
    rmSync(key);
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', key]).status, 0);
    const fresh = planAuth(node('e', { identityFile: key }), settings, {}, home);
    assert.equal(reads.get(key), 2);
    // (the key as ssh2 parsed it: its public half is the new file's)
    const handed = (fresh.candidates[0]!.method('root') as { key: { getPublicSSH(): Buffer } }).key;
    assert.ok(!Buffer.isBuffer(handed));
    const parsedNew = keyParser.parseKey(original(key) as Buffer);
    assert.ok(!(parsedNew instanceof Error));
    assert.deepEqual(handed.getPublicSSH(), (Array.isArray(parsedNew) ? parsedNew[0] : parsedNew).getPublicSSH());
  } finally {
    fs.readFileSync = original;
    syncBuiltinESMExports();
  }
});
