/**
 * Issue 10: one `ssh -G` for all nodes when the ssh config cannot tell them apart (src/transport/ssh-config.ts
 * configIsUniform, askUniformOrTogether). An `ssh -G` per node cost ~7 ms of CPU each (perf, 16-node lab), children
 * of the control process. Counted (ssh runs, through a logging `ssh` on PATH), never timed; every answer is checked
 * against what `ssh -G` itself prints for that node alone.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  configIsUniform,
  resolveSshConfigs,
  settingsFromSshG,
  sshGArgs,
  wrapperConfigText,
  type SshTargetInput,
} from '../../src/transport/ssh-config.js';
import { tempDir } from '../support/temp-dir.js';

const real = spawnSync('sh', ['-c', 'command -v ssh'], { encoding: 'utf8' }).stdout.trim();
const hasSsh = real !== '';

/** A directory with `config` holding `text` (and the files of `more`, by name); the path of `config`. */
function configDir(text: string, more: Record<string, string> = {}): { dir: string; config: string } {
  const dir = tempDir('meshctl-sshg-uniform-');
  for (const [name, body] of Object.entries(more)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), body);
  }
  writeFileSync(join(dir, 'config'), text);
  return { dir, config: join(dir, 'config') };
}

/** An `ssh` on PATH that logs each run and execs the real one; the environment with it and `config`, and the count. */
function loggingSsh(dir: string, config: string): { env: NodeJS.ProcessEnv; calls: () => number } {
  const log = join(dir, 'calls');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'ssh'), `#!/bin/sh\necho "$*" >> ${log}\nexec ${real} "$@"\n`, { mode: 0o755 });
  const calls = () => (existsSync(log) ? readFileSync(log, 'utf8').split('\n').filter(Boolean).length : 0);
  return { env: { PATH: `${bin}:${process.env.PATH}`, HOME: dir, MESHCTL_SSH_CONFIG: config }, calls };
}

test('configIsUniform: only configs that cannot tell hosts apart', () => {
  const uniform = (text: string, more?: Record<string, string>) => {
    const { dir, config } = configDir(text, more);
    return configIsUniform(config, dir);
  };
  // Debian's stock /etc/ssh/ssh_config (comments dropped) and an empty file
  assert.equal(
    uniform(
      'Include /nonexistent-meshctl/ssh_config.d/*.conf\nHost *\n    SendEnv LANG LC_*\n    HashKnownHosts yes\n    GSSAPIAuthentication yes\n',
    ),
    true,
  );
  assert.equal(uniform(''), true);
  assert.equal(uniform('# a comment\nHost *\n  User ops\n  Port=2200\n  IdentityFile ~/.ssh/id_mesh\n  ServerAliveInterval 10\n'), true);
  // anything that may differ per host
  assert.equal(uniform('Host web*\n  User admin\n'), false);
  assert.equal(uniform('Host * !bastion\n  User admin\n'), false);
  assert.equal(uniform('Match host 10.*\n  Port 2222\n'), false);
  assert.equal(uniform('Host *\n  HostName jump.example\n'), false);
  assert.equal(uniform('Host *\n  IdentityFile ~/.ssh/%h.key\n'), false);
  assert.equal(uniform('CanonicalizeHostname yes\n'), false);
  // Includes are followed: relative to ~/.ssh, globs in the last component
  assert.equal(uniform('Include conf.d/*.conf\n', { '.ssh/conf.d/a.conf': 'User ops\n', '.ssh/conf.d/b.conf': 'Port 2200\n' }), true);
  assert.equal(
    uniform('Include conf.d/*.conf\n', { '.ssh/conf.d/a.conf': 'User ops\n', '.ssh/conf.d/b.conf': 'Host db1\n Port 2200\n' }),
    false,
  );
  assert.equal(uniform('Include extra\n', { '.ssh/extra': 'Match all\n' }), false);
});

test('a uniform config: ONE `ssh -G` answers every node, each answer what `ssh -G` prints for it alone', {
  skip: hasSsh ? false : 'no ssh client',
}, async () => {
  const { dir, config } = configDir('Host *\n  User ops\n  Port 2200\n  IdentityFile ~/.ssh/id_mesh\n  ServerAliveInterval 9\n');
  const { env, calls } = loggingSsh(dir, config);
  const targets: SshTargetInput[] = [
    ...Array.from({ length: 14 }, (_, i) => ({ host: `192.0.2.${10 + i}`, port: 22, user: 'root' })),
    { host: 'Node-A.Example', port: 41400, user: 'admin', explicit: { port: true, user: true } },
    { host: '192.0.2.40', port: 22, user: 'root', explicit: { port: false, user: true } },
  ];
  const answers = await Promise.all(resolveSshConfigs(targets, { env, timeoutMs: 10 * 60_000 }));
  assert.equal(calls(), 1, `one ssh -G for ${targets.length} nodes`);
  // each as ssh -G itself gives it for that node alone (the same wrapper config: meshctl's default user last)
  const wrapper = join(dir, 'wrapper');
  writeFileSync(wrapper, wrapperConfigText(config, dir));
  targets.forEach((target, i) => {
    const own = execFileSync(real, sshGArgs(target, wrapper), { env: { ...env, PATH: process.env.PATH }, encoding: 'utf8' });
    assert.deepEqual(answers[i], settingsFromSshG(target.host, own, dir), target.host);
  });
  assert.deepEqual([answers[0]!.port, answers[0]!.user], [2200, 'ops']);
  assert.deepEqual([answers[14]!.hostname, answers[14]!.port, answers[14]!.user], ['node-a.example', 41400, 'admin']);
  assert.deepEqual([answers[15]!.port, answers[15]!.user], [2200, 'root']);
});

test('a config that tells hosts apart: `ssh -G` per node, as before', { skip: hasSsh ? false : 'no ssh client' }, async () => {
  const { dir, config } = configDir('Host 192.0.2.11\n  Port 2222\n');
  const { env, calls } = loggingSsh(dir, config);
  const targets = Array.from({ length: 4 }, (_, i) => ({ host: `192.0.2.${10 + i}` }));
  const answers = await Promise.all(resolveSshConfigs(targets, { env, timeoutMs: 10 * 60_000 }));
  assert.equal(calls(), 4);
  assert.deepEqual(
    answers.map((a) => a.port),
    [22, 2222, 22, 22],
  );
});
