/**
 * Issue 10: a login's publickey signature is made with the key decoded once per process (a KeyObject), not from its
 * PEM text each time (ssh2 passes the PEM to crypto.sign, which OpenSSL 3 decodes again per signature). Counted
 * (PEM reads), never timed; the signatures are ssh2's own (Ed25519 and RSA are deterministic) or verify (ECDSA).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import keyParser from 'ssh2/lib/protocol/keyParser.js';
import { signWithKey } from '../../src/transport/ssh.js';
import { tempDir } from '../support/temp-dir.js';

const hasKeygen = spawnSync('sh', ['-c', 'command -v ssh-keygen']).status === 0;

test('three signatures, one PEM read per key; the same signatures as ssh2 makes', { skip: hasKeygen ? false : 'no ssh-keygen' }, () => {
  const dir = tempDir('meshctl-sign-');
  const data = Buffer.from('session id and the userauth request');
  for (const [type, hash] of [
    ['ed25519', undefined],
    ['rsa', 'sha512'],
    ['rsa', undefined],
    ['ecdsa', undefined],
  ] as const) {
    const file = join(dir, `id_${type}_${hash ?? 'default'}`);
    assert.equal(spawnSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', file]).status, 0);
    const parsed = keyParser.parseKey(readFileSync(file));
    const key = (Array.isArray(parsed) ? parsed[0] : parsed) as unknown as Parameters<typeof signWithKey>[0] & { getPublicPEM(): string };
    let pemReads = 0;
    const counted = Object.assign(Object.create(key), {
      getPrivatePEM: () => {
        pemReads++;
        return (key as unknown as { getPrivatePEM(): string }).getPrivatePEM();
      },
    });
    const signatures = [1, 2, 3].map(() => signWithKey(counted, data, hash));
    assert.equal(pemReads, 1, `${type}: the key decoded once for three signatures`);
    for (const signature of signatures) {
      assert.ok(Buffer.isBuffer(signature), `${type}: a signature`);
      if (type === 'ecdsa') assert.ok(verify('sha256', data, createPublicKey(key.getPublicPEM()), signature), 'ECDSA: verifies');
      else assert.deepEqual(signature, key.sign(data, hash), `${type}: what ssh2 signs`);
    }
  }
});
