/**
 * The speculative TCP connection `up` and `verify` begin before `ssh -G` answers (src/commands/connect-options.ts):
 * only to an IP address, and kept only when ssh -G's settings go to the same place directly. The connection itself,
 * dropped or used against a real sshd, is proven in test/integration/early-connect.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { agrees, speculate } from '../../src/commands/connect-options.js';
import type { Node } from '../../src/inventory/types.js';
import { settingsFromSshG } from '../../src/transport/ssh-config.js';

/** `ssh -G` output as OpenSSH 9 prints it (trimmed to the keys meshctl reads). */
const sshG = (lines: string[]) => ['user root', 'hostname 192.168.15.2', 'port 22', ...lines].join('\n');
const settings = (extra: string[] = []) => settingsFromSshG('192.168.15.2', sshG(extra));

test('a speculative connection is kept only when ssh -G names the same HostName and Port, with no jump host', () => {
  const guess = { host: '192.168.15.2', port: 22 };
  assert.equal(agrees(guess, settings()), true);
  // ssh -G keeps the first value of a key: the extra lines come after the defaults above, so build each case whole
  assert.equal(agrees(guess, settingsFromSshG('x', 'user root\nhostname 192.168.15.9\nport 22\n')), false, 'HostName differs');
  assert.equal(agrees(guess, settingsFromSshG('x', 'user root\nhostname 192.168.15.2\nport 2222\n')), false, 'Port differs');
  assert.equal(agrees(guess, settings(['proxyjump bastion.example'])), false, 'ProxyJump');
  assert.equal(agrees(guess, settings(['proxycommand nc %h %p'])), false, 'ProxyCommand');
  assert.equal(agrees(guess, settings(['proxyjump none', 'proxycommand none'])), true, '"none" is no proxy');
});

test('only a host written as an IP address is connected to speculatively (a name may be an alias only ssh -G resolves)', () => {
  const node = (host: string): Node => ({
    name: 'n',
    site: 's',
    address: '192.168.15.2',
    overlayIp: '172.27.15.12',
    listenPort: 51820,
    ssh: { host, port: 9, user: 'root', become: 'none' },
  });
  assert.equal(speculate(node('localhost')), undefined);
  assert.equal(speculate(node('node1.example')), undefined);
  // 127.0.0.1:9 (discard): nothing listens there in the test environment; the socket is dropped at once either way
  const guess = speculate(node('127.0.0.1'));
  assert.ok(guess);
  assert.deepEqual([guess.host, guess.port], ['127.0.0.1', 9]);
  guess.socket.destroy();
});
