import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:net';
import type { Node } from '../../src/inventory/types.js';
import { connectAll } from '../../src/transport/pool.js';
import { reportKnownHostsProblems, type TransportWarning } from '../../src/transport/ssh.js';
import {
  appendKnownHost,
  entryMatchesHost,
  fingerprintSha256,
  formatKnownHostsProblem,
  hashHostName,
  keyBlobType,
  knownHostLine,
  knownHostName,
  knownKeyTypes,
  loadKnownHosts,
  matchPatternList,
  parseKnownHosts,
  verifyHostKey,
  wildcardMatch,
} from '../../src/transport/known-hosts.js';
import { tempDir } from '../support/temp-dir.js';

// Fixture keys made with ssh-keygen (public halves only); fingerprint of K1 as `ssh-keygen -lf` printed it.
const K1 = 'AAAAC3NzaC1lZDI1NTE5AAAAIPRe/3j+whn/AfHooyrxH0TlNBPtz7mTkoWhkw08tacf';
const K1_FP = 'SHA256:qxid7nmspyJl7RQIyzmYWvC2HTO0HJoGDOSKJIoYJjw';
const K2 = 'AAAAC3NzaC1lZDI1NTE5AAAAIPe+gyIMuPrOyOJxvGacNgK1CGx7lMyCqQam9exp6HTw';
const K3 =
  'AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBL1Y+zmq2votgkNKGAhHnMM1al5bGwk10lYqmCOkeDlLrFXZSLMcZBfqbDgIOOsRY/ph3g/Qfb7QEu+uvsKhE1Q=';
const raw = (b64: string) => Buffer.from(b64, 'base64');
// `ssh-keygen -H` output for node1.example and [10.0.0.5]:2222, both with K1
const HASHED = [
  `|1|3ryeEAR2LXgDDZvDDTQ5Mv8yoMw=|hOwWCIAIWa/cPeQB0Vcy4SfJTjI= ssh-ed25519 ${K1}`,
  `|1|UnncJt1FT5zfdlbEE/ZFz5NS9dk=|lV9cVkLyLCEo22IUadkscb+cDnY= ssh-ed25519 ${K1}`,
].join('\n');

const verify = (text: string, host: string, port: number, key: string) =>
  verifyHostKey(parseKnownHosts(text, 'kh').entries, host, port, raw(key));

test('fingerprint is base64 sha256 without padding, as ssh-keygen -lf prints it', () => {
  assert.equal(fingerprintSha256(raw(K1)), K1_FP);
});

test('key blob type is read from the blob', () => {
  assert.equal(keyBlobType(raw(K1)), 'ssh-ed25519');
  assert.equal(keyBlobType(raw(K3)), 'ecdsa-sha2-nistp256');
  assert.equal(keyBlobType(Buffer.from([0, 0, 0])), undefined);
  assert.equal(keyBlobType(Buffer.from([0, 0, 1, 0, 65])), undefined);
});

test('host name form: port 22 bare, others bracketed, lower-cased', () => {
  assert.equal(knownHostName('Node1.Example', 22), 'node1.example');
  assert.equal(knownHostName('10.0.0.5', 2222), '[10.0.0.5]:2222');
});

test('plain host list matches every listed name', () => {
  const text = `node1,10.0.0.1 ssh-ed25519 ${K1} comment here`;
  assert.equal(verify(text, 'node1', 22, K1).status, 'match');
  assert.equal(verify(text, '10.0.0.1', 22, K1).status, 'match');
  assert.equal(verify(text, 'NODE1', 22, K1).status, 'match');
  assert.equal(verify(text, 'node2', 22, K1).status, 'unknown');
});

test('[host]:port entries match only that port; port 22 entries only port 22', () => {
  const text = `[node1]:2222 ssh-ed25519 ${K1}\nnode2 ssh-ed25519 ${K1}`;
  assert.equal(verify(text, 'node1', 2222, K1).status, 'match');
  assert.equal(verify(text, 'node1', 22, K1).status, 'unknown');
  assert.equal(verify(text, 'node2', 22, K1).status, 'match');
  assert.equal(verify(text, 'node2', 2200, K1).status, 'unknown');
  // a [host]:22 entry is not how OpenSSH writes port 22: it does not match
  assert.equal(verify(`[node3]:22 ssh-ed25519 ${K1}`, 'node3', 22, K1).status, 'unknown');
});

test('hashed entries written by ssh-keygen -H match (port 22 and [host]:port forms)', () => {
  assert.equal(verify(HASHED, 'node1.example', 22, K1).status, 'match');
  assert.equal(verify(HASHED, '10.0.0.5', 2222, K1).status, 'match');
  assert.equal(verify(HASHED, '10.0.0.5', 22, K1).status, 'unknown');
  assert.equal(verify(HASHED, 'node1.example', 22, K2).status, 'changed');
});

test('hashHostName round-trips through entry matching', () => {
  const line = `${hashHostName('[h]:2022')} ssh-ed25519 ${K1}`;
  assert.equal(verify(line, 'h', 2022, K1).status, 'match');
  assert.equal(verify(line, 'h', 22, K1).status, 'unknown');
});

test('wildcards * and ? and negation !', () => {
  assert.ok(wildcardMatch('node1.lab', '*.lab'));
  assert.ok(wildcardMatch('node1', 'node?'));
  assert.ok(!wildcardMatch('node12', 'node?'));
  assert.ok(wildcardMatch('abc', '*'));
  assert.ok(wildcardMatch('a.b.c', 'a*c'));
  assert.ok(!wildcardMatch('a.b.d', 'a*c'));
  assert.ok(matchPatternList('web1.lab', ['*.lab', '!db*.lab']));
  assert.ok(!matchPatternList('db1.lab', ['*.lab', '!db*.lab']));
  assert.ok(!matchPatternList('db1.lab', ['!db*.lab'])); // negation alone never matches
  const text = `*.lab,!db*.lab ssh-ed25519 ${K1}\n[10.0.0.?]:2222 ssh-ed25519 ${K1}`;
  assert.equal(verify(text, 'web1.lab', 22, K1).status, 'match');
  assert.equal(verify(text, 'db1.lab', 22, K1).status, 'unknown');
  assert.equal(verify(text, '10.0.0.7', 2222, K1).status, 'match');
  assert.equal(verify(text, '10.0.0.17', 2222, K1).status, 'unknown');
  // `*` also matches the bracketed form, as in OpenSSH
  assert.equal(verify(`* ssh-ed25519 ${K1}`, 'x', 2222, K1).status, 'match');
});

test('changed for a different key of the same type, and for a key of another type (as OpenSSH)', () => {
  const text = `node1 ssh-ed25519 ${K1}`;
  const changed = verify(text, 'node1', 22, K2);
  assert.equal(changed.status, 'changed');
  assert.equal(changed.entry?.line, 1);
  assert.equal(changed.keyType, 'ssh-ed25519');
  assert.deepEqual(changed.knownTypes, ['ssh-ed25519']);
  // the host offers an ECDSA key while we only know its ED25519 one: changed, never trusted on first use
  const otherType = verify(text, 'node1', 22, K3);
  assert.equal(otherType.status, 'changed');
  assert.equal(otherType.keyType, 'ecdsa-sha2-nistp256');
  assert.deepEqual(otherType.knownTypes, ['ssh-ed25519']);
  assert.equal(otherType.entry?.line, 1);
  // the same through a hashed entry, and with several known types the entry of the offered type is named
  assert.equal(verify(HASHED, 'node1.example', 22, K3).status, 'changed');
  const two = verify(`node1 ssh-ed25519 ${K1}\nnode1 ecdsa-sha2-nistp256 ${K3}`, 'node1', 22, K2);
  assert.deepEqual([two.status, two.entry?.line, two.knownTypes], ['changed', 1, ['ssh-ed25519', 'ecdsa-sha2-nistp256']]);
  // unknown stays unknown only when the host has no plain entry at all (@revoked / @cert-authority do not count)
  assert.equal(verify(`@revoked node1 ssh-ed25519 ${K2}\n@cert-authority node1 ssh-ed25519 ${K1}`, 'node1', 22, K3).status, 'unknown');
  assert.equal(verify(text, 'node2', 22, K3).status, 'unknown');
  // any matching entry wins over a differing one of the same type (OpenSSH: HOST_OK if one matches)
  assert.equal(verify(`node1 ssh-ed25519 ${K2}\nnode1 ssh-ed25519 ${K1}`, 'node1', 22, K1).status, 'match');
});

test('@revoked refuses the key; @cert-authority entries are ignored', () => {
  const text = `@revoked * ssh-ed25519 ${K2}\nnode1 ssh-ed25519 ${K2}\n@cert-authority *.lab ssh-ed25519 ${K1}`;
  const v = verify(text, 'node1', 22, K2);
  assert.equal(v.status, 'revoked');
  assert.equal(v.entry?.line, 1);
  assert.equal(verify(text, 'web.lab', 22, K1).status, 'unknown'); // only a CA line: not trusted
  assert.equal(verify(`@revoked other ssh-ed25519 ${K2}\nnode1 ssh-ed25519 ${K2}`, 'node1', 22, K2).status, 'match');
});

test('comments, blank lines, CRLF and broken lines', () => {
  const text = [
    '# a comment',
    '',
    '   ',
    `node1 ssh-ed25519 ${K1}\r`,
    'onlyhost',
    `node2 ssh-ed25519 not*base64`,
    `|1|bad|hash ssh-ed25519 ${K1}`,
    `@weird node3 ssh-ed25519 ${K1}`,
    `node4 ssh-ed25519 AAAA`,
  ].join('\n');
  const parsed = parseKnownHosts(text, 'kh');
  assert.equal(parsed.entries.length, 1);
  assert.equal(parsed.problems.length, 5);
  assert.deepEqual(parsed.problems[0], { file: 'kh', line: 5, reason: 'expected host patterns, key type and key' });
  assert.deepEqual(
    parsed.problems.map((p) => p.line),
    [5, 6, 7, 8, 9],
  );
  assert.equal(formatKnownHostsProblem(parsed.problems[1]), 'kh:6: key is not base64');
  assert.equal(verifyHostKey(parsed.entries, 'node1', 22, raw(K1)).status, 'match');
});

test('entryMatchesHost and knownKeyTypes', () => {
  const { entries } = parseKnownHosts(`node1 ssh-ed25519 ${K1}\nnode1 ecdsa-sha2-nistp256 ${K3}\n@revoked node1 ssh-rsa ${K2}`);
  assert.ok(entryMatchesHost(entries[0], 'node1', 22));
  assert.deepEqual(knownKeyTypes(entries, 'node1', 22), ['ssh-ed25519', 'ecdsa-sha2-nistp256']);
  assert.deepEqual(knownKeyTypes(entries, 'node2', 22), []);
});

test('appendKnownHost creates dir and 0600 file, appends, adds a missing newline, can hash', async () => {
  const dir = tempDir('meshctl-kh-');
  const file = join(dir, 'sub', 'known_hosts');
  await appendKnownHost(file, '10.0.0.5', 2222, 'ssh-ed25519', raw(K1));
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
  assert.equal(readFileSync(file, 'utf8'), `[10.0.0.5]:2222 ssh-ed25519 ${K1}\n`);

  writeFileSync(file, `node9 ssh-ed25519 ${K2}`); // no trailing newline
  await Promise.all([
    appendKnownHost(file, 'a', 22, 'ssh-ed25519', raw(K1)),
    appendKnownHost(file, 'b', 22, 'ssh-ed25519', raw(K1), { hash: true }),
  ]);
  const lines = readFileSync(file, 'utf8').split('\n');
  assert.equal(lines.length, 4);
  assert.equal(lines[1], `a ssh-ed25519 ${K1}`);
  assert.match(lines[2], /^\|1\|[^|]+\|[^ ]+ ssh-ed25519 /);
  assert.equal(lines[3], '');
  const loaded = await loadKnownHosts([file, join(dir, 'missing')]);
  assert.equal(verifyHostKey(loaded.entries, 'b', 22, raw(K1)).status, 'match');
  assert.equal(verifyHostKey(loaded.entries, 'node9', 22, raw(K2)).status, 'match');
});

test('lines meshctl writes are found by OpenSSH (ssh-keygen -F), hashed or not', {
  skip: spawnSync('sh', ['-c', 'command -v ssh-keygen']).status !== 0 ? 'no ssh-keygen' : false,
}, () => {
  const dir = tempDir('meshctl-kh-');
  const file = join(dir, 'known_hosts');
  writeFileSync(
    file,
    [knownHostLine('10.0.0.5', 2222, 'ssh-ed25519', raw(K1), { hash: true }), knownHostLine('node1', 22, 'ssh-ed25519', raw(K1))].join(
      '\n',
    ) + '\n',
  );
  for (const name of ['[10.0.0.5]:2222', 'node1']) {
    const r = spawnSync('ssh-keygen', ['-F', name, '-f', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${name}: ${r.stdout}${r.stderr}`);
  }
});

test('known_hosts problems become one warning per file per run, naming the file and the line', () => {
  const events: TransportWarning[] = [];
  const onWarning = (e: TransportWarning) => events.push(e);
  const a = parseKnownHosts(`node1 ssh-ed25519 ${K1}\nnode2 ssh-ed25519 not*base64\nonlyhost`, '/home/u/.ssh/known_hosts').problems;
  const b = parseKnownHosts(`@weird node3 ssh-ed25519 ${K1}`, '/etc/ssh/ssh_known_hosts').problems;
  reportKnownHostsProblems([...a, ...b], 'n1', onWarning);
  reportKnownHostsProblems([...a, ...b], 'n2', onWarning); // the next node of the same run reads the same files
  assert.deepEqual(
    events.map((e) => [e.node, e.file, e.message]),
    [
      [
        'n1',
        '/home/u/.ssh/known_hosts',
        '/home/u/.ssh/known_hosts:2: key is not base64 (line ignored); /home/u/.ssh/known_hosts:3: expected host patterns, key type and key (line ignored)',
      ],
      ['n1', '/etc/ssh/ssh_known_hosts', '/etc/ssh/ssh_known_hosts:1: unknown marker @weird (line ignored)'],
    ],
  );
  // another run (another callback) is told again
  const again: TransportWarning[] = [];
  reportKnownHostsProblems(a, 'n1', (e) => again.push(e));
  assert.equal(again.length, 1);
});

test('connectAll reports a malformed known_hosts line once through onWarning, before any connection', {
  skip: spawnSync('sh', ['-c', 'command -v ssh && command -v ssh-keygen']).status !== 0 ? 'needs ssh and ssh-keygen' : false,
}, async () => {
  const dir = tempDir('meshctl-kh-warn-');
  const knownHosts = join(dir, 'known_hosts');
  writeFileSync(knownHosts, `node1 ssh-ed25519 ${K1}\n[127.0.0.1]:1 ssh-ed25519 AAAA\n`);
  const key = join(dir, 'id');
  assert.equal(spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]).status, 0);
  writeFileSync(join(dir, 'ssh_config'), '');
  const port = await closedPort();
  const node = (name: string): Node => ({
    name,
    site: 's',
    address: '127.0.0.1',
    overlayIp: '10.99.0.1',
    listenPort: 51820,
    ssh: { host: '127.0.0.1', port, user: 'root', become: 'none', identityFile: key },
  });
  const warnings: TransportWarning[] = [];
  const env = { PATH: process.env.PATH, HOME: dir, MESHCTL_KNOWN_HOSTS: knownHosts, MESHCTL_SSH_CONFIG: join(dir, 'ssh_config') };
  const { failures } = await connectAll([node('a'), node('b')], { env, onWarning: (w) => warnings.push(w) });
  assert.equal(failures.size, 2); // nothing listens there: the warning does not depend on a connection
  assert.deepEqual(
    warnings.map((w) => w.message),
    [`${knownHosts}:2: key blob is malformed (line ignored)`],
  );
});

async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 1));
    });
  });
}
