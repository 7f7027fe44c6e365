import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { spawnsDuring } from '../support/spawns.js';
import {
  explicitOverrides,
  expandTilde,
  parseProxyJump,
  parseSshG,
  resolveSshConfig,
  resolveSshConfigs,
  settingsFromSshG,
  sshGArgs,
  wrapperConfigText,
} from '../../src/transport/ssh-config.js';
import { tempDir } from '../support/temp-dir.js';

// trimmed real `ssh -G` output (OpenSSH 9.2)
const SSH_G = `host web1
user admin
hostname 10.0.0.5
port 2222
hashknownhosts yes
identitiesonly no
serveralivecountmax 3
serveraliveinterval 15
identityfile ~/.ssh/id_web
identityfile /keys/other
globalknownhostsfile /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2
userknownhostsfile /home/me/.ssh/known_hosts /home/me/.ssh/known_hosts2
connecttimeout 7
proxyjump jump@bastion:2200,ssh://other
sendenv LANG
sendenv LC_*
`;

test('parseSshG keeps every value of repeated keys, keys lower-cased', () => {
  const g = parseSshG(SSH_G + 'CaseKey Value With Spaces\nempty\n');
  assert.deepEqual(g.get('identityfile'), ['~/.ssh/id_web', '/keys/other']);
  assert.deepEqual(g.get('sendenv'), ['LANG', 'LC_*']);
  assert.deepEqual(g.get('casekey'), ['Value With Spaces']);
  assert.deepEqual(g.get('empty'), ['']);
});

test('settingsFromSshG turns ssh -G output into settings', () => {
  const s = settingsFromSshG('web1', SSH_G, '/home/me');
  assert.equal(s.hostname, '10.0.0.5');
  assert.equal(s.port, 2222);
  assert.equal(s.user, 'admin');
  assert.deepEqual(s.identityFiles, ['/home/me/.ssh/id_web', '/keys/other']);
  assert.deepEqual(s.userKnownHostsFiles, ['/home/me/.ssh/known_hosts', '/home/me/.ssh/known_hosts2']);
  assert.deepEqual(s.globalKnownHostsFiles, ['/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts2']);
  assert.equal(s.hashKnownHosts, true);
  assert.equal(s.connectTimeoutMs, 7000);
  assert.equal(s.serverAliveIntervalMs, 15000);
  assert.equal(s.serverAliveCountMax, 3);
  assert.deepEqual(s.proxyJump, [
    { user: 'jump', host: 'bastion', port: 2200 },
    { user: undefined, host: 'other', port: undefined },
  ]);
  assert.equal(s.proxyCommand, undefined);
  assert.equal(s.source, 'ssh -G');
});

test('settingsFromSshG: none values and defaults', () => {
  const s = settingsFromSshG(
    'h',
    'hostname h\nport 22\nuser root\nconnecttimeout none\nserveraliveinterval 0\nproxyjump none\nproxycommand nc %h %p\nuserknownhostsfile /dev/null\n',
  );
  assert.equal(s.connectTimeoutMs, undefined);
  assert.equal(s.serverAliveIntervalMs, undefined);
  assert.deepEqual(s.proxyJump, []);
  assert.equal(s.proxyCommand, 'nc %h %p');
  assert.deepEqual(s.userKnownHostsFiles, ['/dev/null']);
});

test('parseProxyJump: user, port, ssh:// and IPv6 brackets', () => {
  assert.deepEqual(parseProxyJump('none'), []);
  assert.deepEqual(parseProxyJump(undefined), []);
  assert.deepEqual(parseProxyJump('a'), [{ user: undefined, host: 'a', port: undefined }]);
  assert.deepEqual(parseProxyJump('u@a:2,ssh://v@b:3'), [
    { user: 'u', host: 'a', port: 2 },
    { user: 'v', host: 'b', port: 3 },
  ]);
  assert.deepEqual(parseProxyJump('[fd00::1]:2222'), [{ user: undefined, host: 'fd00::1', port: 2222 }]);
});

test('precedence: explicit inventory user/port go on the command line, defaults do not', () => {
  assert.deepEqual(explicitOverrides({ host: 'h', port: 22, user: 'root' }), {});
  assert.deepEqual(explicitOverrides({ host: 'h', port: 2222, user: 'admin' }), { port: 2222, user: 'admin' });
  // a loader that marks explicit values: an explicit port 22 wins, an implicit admin does not
  assert.deepEqual(explicitOverrides({ host: 'h', port: 22, user: 'admin', explicit: { port: true, user: false } }), { port: 22 });
  assert.deepEqual(sshGArgs({ host: 'web1', port: 2222, user: 'root' }, '/cfg'), ['-G', '-F', '/cfg', '-p', '2222', 'web1']);
  assert.deepEqual(sshGArgs({ host: 'web1', port: 22, user: 'admin' }), ['-G', '-l', 'admin', 'web1']);
});

test('expandTilde', () => {
  assert.equal(expandTilde('~/.ssh/x', '/h'), '/h/.ssh/x');
  assert.equal(expandTilde('~', '/h'), '/h');
  assert.equal(expandTilde('/abs', '/h'), '/abs');
});

test('wrapper config puts the user config first and meshctl defaults last', () => {
  const text = wrapperConfigText(undefined, '/h');
  assert.match(text, /Include "\/h\/.ssh\/config"\nInclude "\/etc\/ssh\/ssh_config"\nHost \*\n {2}User root/);
  assert.match(wrapperConfigText('/my cfg', '/h', 'me'), /Include "\/my cfg"\nHost \*\n {2}User me/);
});

const hasSsh = spawnSync('sh', ['-c', 'command -v ssh']).status === 0;

test('resolveSshConfig through the real ssh -G: alias, precedence, MESHCTL_SSH_CONFIG', {
  skip: hasSsh ? false : 'no ssh client',
}, async () => {
  const dir = tempDir('meshctl-cfg-');
  const cfg = join(dir, 'config');
  writeFileSync(
    cfg,
    [
      'Host web1',
      '  HostName 10.0.0.5',
      '  User admin',
      '  Port 2200',
      '  IdentityFile ~/.ssh/web_key',
      '  ProxyJump jump@127.0.0.1:2022',
      `  UserKnownHostsFile ${join(dir, 'kh')}`,
      '  HashKnownHosts yes',
      '  ConnectTimeout 4',
      'Host *.lab',
      '  User labuser',
      '',
    ].join('\n'),
  );
  const env = { PATH: process.env.PATH, HOME: dir, MESHCTL_SSH_CONFIG: cfg };
  const alias = await resolveSshConfig({ host: 'web1', port: 22, user: 'root' }, { env });
  assert.equal(alias.hostname, '10.0.0.5');
  assert.equal(alias.user, 'admin'); // inventory default root yields to the config
  assert.equal(alias.port, 2200);
  assert.deepEqual(alias.identityFiles, [join(dir, '.ssh/web_key')]);
  assert.deepEqual(alias.proxyJump, [{ user: 'jump', host: '127.0.0.1', port: 2022 }]);
  assert.deepEqual(alias.userKnownHostsFiles, [join(dir, 'kh')]);
  assert.equal(alias.hashKnownHosts, true);
  assert.equal(alias.connectTimeoutMs, 4000);

  const explicit = await resolveSshConfig({ host: 'web1', port: 2999, user: 'ops' }, { env });
  assert.equal(explicit.user, 'ops');
  assert.equal(explicit.port, 2999);

  const pattern = await resolveSshConfig({ host: 'n1.lab', port: 22, user: 'root' }, { env });
  assert.equal(pattern.user, 'labuser');
  assert.equal(pattern.hostname, 'n1.lab');

  // nothing names a user: meshctl's default (root), not the local user name
  const plain = await resolveSshConfig({ host: '192.0.2.9', port: 22, user: 'root' }, { env });
  assert.equal(plain.user, 'root');
  assert.equal(plain.port, 22);
  const hop = await resolveSshConfig({ host: '192.0.2.9' }, { env, defaultUser: 'someone' });
  assert.equal(hop.user, 'someone');

  await assert.rejects(resolveSshConfig({ host: '-oProxyCommand=x' }, { env }), /invalid ssh host/);
  writeFileSync(cfg, 'Host x\n  NoSuchOption yes\n');
  await assert.rejects(resolveSshConfig({ host: 'x' }, { env }), /ssh config for x/);
});

test('an `ssh -G` that exits 0 with no output is asked again, and never taken for the defaults (port 22)', async () => {
  // seen with ~100 `ssh -G` at once: a third printed nothing, and those nodes were dialled at port 22
  const dir = tempDir('meshctl-sshg-');
  const real = spawnSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).stdout.trim();
  const counter = join(dir, 'calls');
  // the first call prints nothing and exits 0; the later ones are the real ssh
  writeFileSync(join(dir, 'ssh'), `#!/bin/sh\nif [ ! -e ${counter} ]; then : > ${counter}; exit 0; fi\nexec ${real} "$@"\n`, {
    mode: 0o755,
  });
  const env = { PATH: `${dir}:${process.env.PATH}`, HOME: dir, MESHCTL_SSH_CONFIG: join(dir, 'none') };
  writeFileSync(join(dir, 'none'), '');
  const settings = await resolveSshConfig({ host: '192.0.2.9', port: 41113, user: 'root', explicit: { port: true, user: true } }, { env });
  assert.equal(settings.port, 41113);
  // always silent: an error naming the host, not a guess (another port: the answer above is kept for this run)
  writeFileSync(join(dir, 'ssh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  await assert.rejects(
    resolveSshConfig({ host: '192.0.2.9', port: 41114, user: 'root', explicit: { port: true, user: true } }, { env }),
    /ssh config for 192\.0\.2\.9: `ssh -G` printed no settings 3 times/,
  );
});

test('the same `ssh -G` question is asked once per process (up logs in to each node twice); another is asked anew', {
  skip: hasSsh ? false : 'no ssh client',
}, async () => {
  // issue 10: each ssh -G is a fork of the control process; at 100 nodes the second round cost ~15 s of it
  const dir = tempDir('meshctl-sshg-memo-');
  const real = spawnSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).stdout.trim();
  const log = join(dir, 'calls');
  writeFileSync(join(dir, 'ssh'), `#!/bin/sh\necho x >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
  writeFileSync(join(dir, 'none'), '');
  const env = { PATH: `${dir}:${process.env.PATH}`, HOME: dir, MESHCTL_SSH_CONFIG: join(dir, 'none') };
  const target = { host: '192.0.2.7', port: 41200, user: 'root', explicit: { port: true, user: true } };
  const calls = () => readFileSync(log, 'utf8').split('\n').filter(Boolean).length;
  const first = await resolveSshConfig(target, { env });
  first.identityFiles.push('/mutated'); // a caller changing its copy does not change the next answer
  const again = await resolveSshConfig({ ...target }, { env });
  assert.equal(calls(), 1);
  assert.equal(again.port, 41200);
  assert.ok(!again.identityFiles.includes('/mutated'));
  await resolveSshConfig({ ...target, port: 41201 }, { env });
  assert.equal(calls(), 2);
});

test('a question asked again while `ssh -G` is still answering it waits for that answer (one spawn); a failure is asked anew', {
  skip: hasSsh ? false : 'no ssh client',
}, async () => {
  // issue 10: up starts every node's `ssh -G` at once; nodes with equal settings (or one jump host shared by several
  // nodes) asked while the first was running, and each spawned its own (a fork of the control process each)
  const dir = tempDir('meshctl-sshg-inflight-');
  const real = spawnSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).stdout.trim();
  const log = join(dir, 'calls');
  // slow enough that every question below is asked before the first answer arrives
  writeFileSync(join(dir, 'ssh'), `#!/bin/sh\necho x >> ${log}\nsleep 0.3\nexec ${real} "$@"\n`, { mode: 0o755 });
  writeFileSync(join(dir, 'none'), '');
  const env = { PATH: `${dir}:${process.env.PATH}`, HOME: dir, MESHCTL_SSH_CONFIG: join(dir, 'none') };
  const target = { host: '192.0.2.8', port: 41300, user: 'root', explicit: { port: true, user: true } };
  const calls = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
  const answers = await Promise.all([1, 2, 3, 4].map(() => resolveSshConfig({ ...target }, { env })));
  assert.equal(calls(), 1, 'one `ssh -G` for four askers of the same question');
  assert.deepEqual(
    answers.map((a) => a.port),
    [41300, 41300, 41300, 41300],
  );
  answers[0]!.identityFiles.push('/mutated');
  assert.ok(!answers[1]!.identityFiles.includes('/mutated'), 'each asker gets its own copy');
  // a failing question: both askers see the failure, and it is not kept
  writeFileSync(join(dir, 'ssh'), `#!/bin/sh\necho x >> ${log}\nsleep 0.3\necho 'bad config' >&2\nexit 255\n`, { mode: 0o755 });
  const failing = { ...target, port: 41301 };
  const both = await Promise.allSettled([resolveSshConfig(failing, { env }), resolveSshConfig({ ...failing }, { env })]);
  assert.deepEqual(
    both.map((r) => r.status),
    ['rejected', 'rejected'],
  );
  assert.equal(calls(), 2);
  await assert.rejects(resolveSshConfig({ ...failing }, { env }), /bad config/);
  assert.equal(calls(), 3, 'a failure is asked again');
});

test('resolveSshConfigs asks every new question through ONE child process; each answer as resolveSshConfig gives it', {
  skip: hasSsh ? false : 'no ssh client',
}, async () => {
  // issue 10: a spawn blocks the control process until the child has exec'd (30-120 ms under load); up asked one
  // `ssh -G` per node before its first connection could start
  const dir = tempDir('meshctl-sshg-batch-');
  const real = spawnSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).stdout.trim();
  const log = join(dir, 'calls');
  writeFileSync(join(dir, 'ssh'), `#!/bin/sh\necho x >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
  const cfg = join(dir, 'config');
  writeFileSync(cfg, 'Host web*\n  User admin\n  Port 2200\n');
  const env = { PATH: `${dir}:${process.env.PATH}`, HOME: dir, MESHCTL_SSH_CONFIG: cfg };
  const calls = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
  const targets = [
    { host: '192.0.2.10', port: 41400, user: 'root', explicit: { port: true, user: true } },
    { host: 'web1', port: 22, user: 'root' },
    { host: '192.0.2.10', port: 41400, user: 'root', explicit: { port: true, user: true } }, // the same question again
    { host: '-oProxyCommand=x' },
    ...Array.from({ length: 20 }, (_, i) => ({ host: '192.0.2.11', port: 41500 + i, user: 'ops', explicit: { port: true, user: true } })),
  ];
  // the `ssh -G` deadline (5 s a wave) is not what this test is about: at load 140-200 the second wave outlasted it,
  // the group was killed and 6 questions were never asked; a deadline only against a hang here
  const options = { env, timeoutMs: 10 * 60_000 };
  const asked = () => Promise.allSettled(resolveSshConfigs(targets, options));
  const { result, spawns } = await spawnsDuring(asked);
  assert.deepEqual(spawns, ['sh'], 'one child process for 22 questions');
  assert.equal(calls(), 22, 'each distinct question asked once');
  const value = (i: number) => (result[i]!.status === 'fulfilled' ? result[i]!.value : assert.fail(`answer ${i} failed`));
  assert.deepEqual([value(0).port, value(0).user, value(0).hostname], [41400, 'root', '192.0.2.10']);
  assert.deepEqual([value(1).port, value(1).user, value(1).hostname], [2200, 'admin', 'web1']);
  assert.equal(value(2).port, 41400);
  assert.match(result[3]!.status === 'rejected' ? String(result[3]!.reason) : '', /invalid ssh host/);
  assert.deepEqual(
    targets.slice(4).map((_, i) => value(4 + i).port),
    targets.slice(4).map((t) => t.port),
  );
  // the same answers as one question at a time (memoized now: no spawn)
  const again = await spawnsDuring(() => resolveSshConfig(targets[1]!, options));
  assert.deepEqual(again.spawns, []);
  assert.deepEqual(again.result, value(1));

  // an `ssh -G` that printed nothing (exit 0) is asked again alone, never taken for the defaults
  // mkdir is the atomic test-and-set: with `[ ! -e F ]; : > F` both parallel questions could see no F and both print
  // nothing (CI saw `sh, ssh, ssh` once)
  writeFileSync(join(dir, 'ssh'), `#!/bin/sh\nif mkdir ${dir}/first 2>/dev/null; then exit 0; fi\nexec ${real} "$@"\n`, {
    mode: 0o755,
  });
  const quiet = await spawnsDuring(() =>
    Promise.all(
      resolveSshConfigs(
        [41600, 41601].map((port) => ({ host: '192.0.2.12', port, user: 'root', explicit: { port: true, user: true } })),
        { env },
      ),
    ),
  );
  assert.deepEqual(
    quiet.result.map((s) => s.port),
    [41600, 41601],
  );
  assert.deepEqual(quiet.spawns, ['sh', 'ssh'], 'the one that printed nothing was asked again alone');
  // a config ssh rejects: every question's error names its host and ssh's own words, as resolveSshConfig's does
  writeFileSync(cfg, 'Host x\n  NoSuchOption yes\n');
  const bad = await Promise.allSettled(resolveSshConfigs([{ host: 'x' }, { host: 'y' }], { env }));
  assert.deepEqual(
    bad.map((r) => (r.status === 'rejected' ? String(r.reason).replaceAll(cfg, 'CFG') : 'fulfilled')),
    ['x', 'y'].map((host) => `SshConfigError: ssh config for ${host} (CFG): CFG: terminating, 1 bad configuration options`),
  );
});

test("the generated config's directory goes at exit without node's recursive remover (issue 10: the way out of a run)", {
  skip: hasSsh ? false : 'no ssh client',
}, () => {
  // rmSync(dir, { recursive: true }) loaded node's rimraf module in the 'exit' handler: 2-5 ms of CPU after the
  // report of every run (perf, 2026-12-01). A child with a temp dir of its own: the config is made, then removed.
  const tmp = tempDir('meshctl-exit-rm-');
  const script = [
    `import { resolveSshConfig } from ${JSON.stringify(new URL('../../src/transport/ssh-config.ts', import.meta.url).href)};`,
    "await resolveSshConfig({ host: '192.0.2.9', port: 41113, user: 'root', explicit: { port: true, user: true } }, { env: { PATH: process.env.PATH, HOME: process.env.TMPDIR } });",
    "process.stdout.write(require('node:fs').readdirSync(process.env.TMPDIR).filter((f) => f.startsWith('meshctl-ssh-')).length + ' made\\n');",
    // registered after ssh-config's own 'exit' listener, so it runs after it
    "process.on('exit', () => process.stdout.write(JSON.stringify(process.moduleLoadList.filter((m) => /rimraf/.test(m))) + '\\n'));",
  ].join('\n');
  const run = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      `import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);\n${script}`,
    ],
    {
      encoding: 'utf8',
      env: { ...process.env, TMPDIR: tmp },
    },
  );
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout, '1 made\n[]\n');
  assert.deepEqual(
    readdirSync(tmp).filter((f) => f.startsWith('meshctl-ssh-')),
    [],
    'the config and its directory are gone',
  );
});
