/**
 * Issue 10: a login looks its host up in known_hosts once, not once per line twice. Each login asked for the host's
 * key types (the host-key algorithms to offer) and then checked the key offered, each time testing every line: on a
 * hashed file (HashKnownHosts yes) an HMAC-SHA1 per line, N x N x 2 for a mesh of N. Counted (hostNameTests, one
 * per host field tested), never timed; the answers are checked against testing every line.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { tempDir } from '../support/temp-dir.js';
import { join } from 'node:path';
import {
  entryMatchesHost,
  hashHostName,
  hostEntries,
  hostNameTests,
  knownKeyTypes,
  loadKnownHosts,
  parseKnownHosts,
  verifyHostKey,
} from '../../src/transport/known-hosts.js';

const K1 = 'AAAAC3NzaC1lZDI1NTE5AAAAIPRe/3j+whn/AfHooyrxH0TlNBPtz7mTkoWhkw08tacf';
const K2 = 'AAAAC3NzaC1lZDI1NTE5AAAAIH2h7Jh3tNVmjwCdBGOg4QDlkJn8Q0ZsaM1w5lYzmwfS';
const raw = (b64: string) => Buffer.from(b64, 'base64');
const N = 32;

/** What one login asks of known_hosts (src/transport/ssh.ts openClient): load, the key types, then the key's verdict. */
async function login(file: string, host: string, port: number) {
  const known = await loadKnownHosts([file]);
  knownKeyTypes(known.entries, host, port);
  return verifyHostKey(known.entries, host, port, raw(K1)).status;
}

test(`${N} logins against a hashed known_hosts of ${N} lines: each line's HMAC once per host, not twice`, async () => {
  const dir = tempDir('meshctl-kh-lookup-');
  const file = join(dir, 'known_hosts');
  const hosts = Array.from({ length: N }, (_, i) => `10.0.0.${i + 1}`);
  writeFileSync(file, hosts.map((h) => `${hashHostName(`[${h}]:2222`)} ssh-ed25519 ${K1}\n`).join(''));
  const before = hostNameTests.count;
  const verdicts = await Promise.all(hosts.map((h) => login(file, h, 2222)));
  assert.deepEqual(new Set(verdicts), new Set(['match']));
  // one pass over the N hashed lines per host (the old code: one for the key types, one for the verdict)
  assert.equal(hostNameTests.count - before, N * N);
  // the same host again (a jump host shared by nodes, a retry): answered from the index, no HMAC
  assert.equal(await login(file, hosts[0]!, 2222), 'match');
  assert.equal(hostNameTests.count - before, N * N);
  assert.equal(await login(file, hosts[0]!, 22), 'unknown', 'another port is another name');
});

test(`${N} logins against a plain known_hosts of ${N} lines: found by name, no line tested`, async () => {
  const dir = tempDir('meshctl-kh-lookup-');
  const file = join(dir, 'known_hosts');
  const hosts = Array.from({ length: N }, (_, i) => `n${i + 1}.example`);
  writeFileSync(file, hosts.map((h) => `${h},10.0.1.${hosts.indexOf(h) + 1} ssh-ed25519 ${K1}\n`).join(''));
  const before = hostNameTests.count;
  for (const h of hosts) assert.equal(await login(file, h, 22), 'match');
  assert.equal(await login(file, '10.0.1.7', 22), 'match');
  assert.equal(await login(file, 'N3.Example', 22), 'match', 'names compare in lower case, as OpenSSH does');
  assert.equal(await login(file, 'other.example', 22), 'unknown');
  assert.equal(hostNameTests.count - before, 0);
});

test('the lines found are those that testing every line finds, in file order (wildcards, negation, hashed, markers)', () => {
  const lines = [
    `web1,web2 ssh-ed25519 ${K1}`,
    `*.lan,!bad.lan ssh-ed25519 ${K2}`,
    `@revoked web1 ssh-ed25519 ${K2}`,
    `${hashHostName('web2')} ssh-ed25519 ${K2}`,
    `[10.0.0.1]:2222 ssh-ed25519 ${K1}`,
    `@cert-authority *.lan ssh-ed25519 ${K1}`,
    `WEB1 ssh-ed25519 ${K2}`,
    `10.0.0.? ssh-ed25519 ${K2}`,
    `web2 ssh-ed25519 ${K1}`,
  ];
  const { entries, problems } = parseKnownHosts(lines.join('\n'), 'kh');
  assert.equal(problems.length, 0);
  for (const [host, port] of [
    ['web1', 22],
    ['Web2', 22],
    ['a.lan', 22],
    ['bad.lan', 22],
    ['10.0.0.1', 2222],
    ['10.0.0.1', 22],
    ['10.0.0.12', 22],
    ['nobody', 22],
  ] as const) {
    const everyLine = entries.filter((e) => entryMatchesHost(e, host, port));
    assert.deepEqual(hostEntries(entries, host, port), everyLine, `${host}:${port}`);
    assert.deepEqual(hostEntries(entries, host, port), everyLine, `${host}:${port} (answered again)`);
  }
  assert.equal(verifyHostKey(entries, 'web1', 22, raw(K2)).status, 'revoked');
  assert.deepEqual(knownKeyTypes(entries, 'web2', 22), ['ssh-ed25519']);
});
