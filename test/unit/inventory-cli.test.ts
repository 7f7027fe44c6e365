/**
 * `meshctl validate` as a user runs it: a real process, exit codes, stdout/stderr. A guard module loaded before
 * the CLI makes any network use (TCP/UDP socket, DNS lookup) fail loudly with exit 99, so these tests also prove
 * that validation contacts nothing, even when the inventory points SSH at 127.0.0.1:1.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { NETWORK_GUARD } from '../support/network-guard.js';

function validate(args: string[], env: Record<string, string> = {}) {
  const result = spawnSync(process.execPath, ['--import', NETWORK_GUARD, '--import', 'tsx', 'src/cli.ts', 'validate', ...args], {
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0', ...env },
    timeout: 30_000,
  });
  assert.doesNotMatch(result.stderr, /NETWORK ATTEMPT/);
  return result;
}

const BAD = 'test/fixtures/inventories/bad';

const expectedLines = (path: string) =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('# expect: '))
    .map((line) => `${path}:${line.slice('# expect: '.length)}`);

describe('meshctl validate', () => {
  it('(the network guard itself trips on a TCP connect and a DNS lookup)', () => {
    for (const code of ["require('node:net').connect(1, '127.0.0.1')", "require('node:dns').lookup('example.org', () => {})"]) {
      const result = spawnSync(process.execPath, ['--import', NETWORK_GUARD, '-e', code], { encoding: 'utf8' });
      assert.equal(result.status, 99);
      assert.match(result.stderr, /NETWORK ATTEMPT/);
    }
  });

  for (const name of [
    'overlay-ip-outside-network',
    'syntax-unclosed-flow-list',
    'many-problems-at-once',
    'unreachable-nat-without-forward',
    'loopback-ssh-still-only-reports',
  ]) {
    it(`${name}: exit 2, every problem on stderr, nothing on stdout`, () => {
      const path = `${BAD}/${name}.yaml`;
      const expected = expectedLines(path);
      const result = validate([path]);
      assert.equal(result.status, 2, result.stderr);
      assert.equal(result.stdout, '');
      const count = expected.length === 1 ? '1 problem' : `${expected.length} problems`;
      assert.equal(result.stderr, [`meshctl: inventory ${path} has ${count}`, ...expected.map((line) => `  ${line}`), ''].join('\n'));
    });
  }

  it('a good inventory: exit 0 and a summary of who dials whom', () => {
    const result = validate(['inventories/homelab.yaml']);
    assert.equal(result.status, 0, result.stderr);
    assert.equal(result.stderr, '');
    assert.match(result.stdout, /^valid: inventories\/homelab\.yaml$/m);
    assert.match(result.stdout, /^sites \(2\)$/m);
    assert.match(result.stdout, /^nodes \(4\)$/m);
    assert.match(
      result.stdout,
      /ms-1 <-> ctb-edge-1 +ms-1 -> 198\.51\.100\.25:51820 \(keepalive 25\) +ctb-edge-1 -> 203\.0\.113\.10:51821$/m,
    );
    assert.match(result.stdout, /wk-1 <-> wk-2 +wk-1 -> 192\.168\.15\.4:51820 +wk-2 -> 192\.168\.15\.3:51820$/m);
  });

  it('SSH at 127.0.0.1 port 1 is only reported, never tried', () => {
    const result = validate(['test/fixtures/inventories/good/loopback-ssh.yaml']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /ssh root@127\.0\.0\.1:1/);
  });

  it('a lan site: the pair that only one side can dial says who waits', () => {
    const result = validate(['test/fixtures/inventories/good/plain-lan-site.yaml']);
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /ms-1 <-> lab-1 +ms-1 waits for lab-1 to dial in +lab-1 -> 203\.0\.113\.10:51821 \(keepalive 25\)$/m);
  });

  it('--json prints the normalised inventory and the pairs', () => {
    const result = validate(['inventories/homelab.yaml', '--json']);
    assert.equal(result.status, 0, result.stderr);
    const output = JSON.parse(result.stdout);
    assert.equal(output.ok, true);
    assert.equal(output.inventory.nodes.length, 4);
    assert.equal(output.pairs.length, 6);
    assert.deepEqual(
      output.pairs.find((p: { a: string; b: string }) => p.a === 'wk-2' && p.b === 'ctb-edge-1'),
      {
        a: 'wk-2',
        b: 'ctb-edge-1',
        aToB: { host: '198.51.100.25', port: 51820 },
        bToA: { host: '203.0.113.10', port: 51822 },
        aKeepalive: 25,
        bKeepalive: null,
        connects: true,
        path: { kind: 'direct', why: 'wk-2 dials ctb-edge-1 at 198.51.100.25:51820; ctb-edge-1 dials wk-2 at 203.0.113.10:51822' },
      },
    );
  });

  it('--json on a broken inventory: the problems as JSON on stdout, the lines on stderr, exit 2', () => {
    const path = `${BAD}/duplicate-overlay-ip.yaml`;
    const result = validate([path, '--json']);
    assert.equal(result.status, 2);
    const output = JSON.parse(result.stdout);
    assert.equal(output.ok, false);
    assert.deepEqual(
      output.problems.map((p: { text: string }) => p.text),
      expectedLines(path),
    );
    assert.deepEqual(Object.keys(output.problems[0]).sort(), ['col', 'line', 'message', 'path', 'text']);
    assert.match(result.stderr, /has 1 problem/);
  });

  it('without an argument: $MESHCTL_INVENTORY', () => {
    const result = validate([], { MESHCTL_INVENTORY: 'inventories/homelab.yaml' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /^valid: inventories\/homelab\.yaml$/m);
  });

  it('without an argument nor a default file: one line, exit 2', () => {
    const result = validate([], { MESHCTL_INVENTORY: '' });
    assert.equal(result.status, 2);
    assert.equal(
      result.stderr,
      'meshctl: no inventory given: pass its path, set MESHCTL_INVENTORY, or put a meshctl.yaml in the current directory\n',
    );
  });

  it('/dev/zero: refused before reading (it used to hang), one line, exit 2', () => {
    const result = validate(['/dev/zero']);
    assert.equal(result.status, 2);
    assert.equal(result.stderr, 'meshctl: cannot read inventory /dev/zero: not a regular file\n');
  });

  it('a missing file: one line, exit 2', () => {
    const result = validate(['nope.yaml']);
    assert.equal(result.status, 2);
    assert.equal(result.stderr, 'meshctl: cannot read inventory nope.yaml: no such file\n');
  });
});

describe('--connect-timeout on verify (as on up and plan)', () => {
  it('a bad value is bad input (exit 2) named by the flag, before any connection', () => {
    const result = spawnSync(
      process.execPath,
      ['--import', NETWORK_GUARD, '--import', 'tsx', 'src/cli.ts', 'verify', 'inventories/homelab.yaml', '--connect-timeout', 'soon'],
      { encoding: 'utf8', env: { ...process.env, FORCE_COLOR: '0' }, timeout: 30_000 },
    );
    assert.doesNotMatch(result.stderr, /NETWORK ATTEMPT/);
    assert.equal(result.status, 2, result.stderr);
    assert.match(result.stderr, /--connect-timeout must be a positive number of seconds, not "soon"/);
  });
});
