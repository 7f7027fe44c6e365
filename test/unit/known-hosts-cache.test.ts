/**
 * Issue 10: a known_hosts file is parsed once per process while it is unchanged, not once per node's login (N logins
 * parsed N lines each: N x N for a mesh of N). Counted (knownHostsParses), never timed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { appendKnownHost, knownHostsParses, loadKnownHosts, verifyHostKey } from '../../src/transport/known-hosts.js';
import { tempDir } from '../support/temp-dir.js';

const K1 = 'AAAAC3NzaC1lZDI1NTE5AAAAIPRe/3j+whn/AfHooyrxH0TlNBPtz7mTkoWhkw08tacf';
const raw = (b64: string) => Buffer.from(b64, 'base64');

test('32 logins at once and 32 after: the file is parsed once; a changed file is read again', async () => {
  const dir = tempDir('meshctl-kh-cache-');
  const file = join(dir, 'known_hosts');
  writeFileSync(file, Array.from({ length: 32 }, (_, i) => `10.0.0.${i} ssh-ed25519 ${K1}`).join('\n') + '\n');
  const before = knownHostsParses.count;
  const atOnce = await Promise.all(Array.from({ length: 32 }, () => loadKnownHosts([file, join(dir, 'missing')])));
  for (let i = 0; i < 32; i++) await loadKnownHosts([file]);
  assert.equal(knownHostsParses.count - before, 1, 'one parse for 64 loads of an unchanged file');
  assert.ok(atOnce.every((k) => verifyHostKey(k.entries, '10.0.0.31', 22, raw(K1)).status === 'match'));
  assert.equal(verifyHostKey(atOnce[0]!.entries, 'new-node', 22, raw(K1)).status, 'unknown');
  // --accept-new records a key: the next login reads the file again and finds it
  await appendKnownHost(file, 'new-node', 22, 'ssh-ed25519', raw(K1));
  const after = await loadKnownHosts([file]);
  assert.equal(verifyHostKey(after.entries, 'new-node', 22, raw(K1)).status, 'match');
  // a hand edit too (same size, new content, new mtime and ctime)
  appendFileSync(file, `bad line\n`);
  const problems = await loadKnownHosts([file]);
  assert.equal(problems.problems.length, 1);
  assert.equal(knownHostsParses.count - before, 3);
});
