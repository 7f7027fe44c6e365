/** Loader behaviour beyond the fixtures: path resolution, reading errors, in-memory text, helpers. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ExitCode, MeshctlError } from '../../src/errors.js';
import { checkInventoryText, loadInventory, resolveInventoryPath } from '../../src/inventory/load.js';
import { didYouMean, formatPath, sortProblems } from '../../src/inventory/problems.js';
import { parseCidrDetailed, reservedAddressOf, parseCidr } from '../../src/net/ipv4.js';
import { MAX_INPUT_BYTES } from '../../src/schema/input.js';

const MINIMAL = `mesh:
  network: 172.27.15.0/24
sites:
  edge: { public: true }
nodes:
  a: { site: edge, address: 198.51.100.1, overlayIp: 172.27.15.1 }
  b: { site: edge, address: 198.51.100.2, overlayIp: 172.27.15.2 }
`;

const thrown = (fn: () => unknown): MeshctlError => {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof MeshctlError);
    return error;
  }
  assert.fail('did not throw');
};

describe('resolveInventoryPath', () => {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-inv-'));
  it('prefers the argument', () => assert.equal(resolveInventoryPath('x.yaml', { MESHCTL_INVENTORY: 'y.yaml' }, dir), 'x.yaml'));
  it('then $MESHCTL_INVENTORY', () => assert.equal(resolveInventoryPath(undefined, { MESHCTL_INVENTORY: 'y.yaml' }, dir), 'y.yaml'));
  it('says what to do when there is none', () => {
    const error = thrown(() => resolveInventoryPath(undefined, {}, dir));
    assert.equal(error.exitCode, ExitCode.badInput);
    assert.match(
      error.message,
      /no inventory given: pass its path, set MESHCTL_INVENTORY, or put a meshctl\.yaml in the current directory/,
    );
  });
  it('then ./meshctl.yaml', () => {
    writeFileSync(join(dir, 'meshctl.yaml'), MINIMAL);
    assert.equal(resolveInventoryPath(undefined, {}, dir), 'meshctl.yaml');
    rmSync(dir, { recursive: true });
  });
});

describe('loadInventory', () => {
  it('a missing file is one clear line, exit 2', () => {
    const error = thrown(() => loadInventory('test/fixtures/inventories/nope.yaml'));
    assert.equal(error.exitCode, ExitCode.badInput);
    assert.equal(error.message, 'cannot read inventory test/fixtures/inventories/nope.yaml: no such file');
  });
  it('a directory is refused', () => {
    assert.equal(thrown(() => loadInventory('test')).message, 'cannot read inventory test: it is a directory');
  });
  it('validates text given in options, naming the path in messages', () => {
    const inventory = loadInventory('inline.yaml', { text: MINIMAL });
    assert.equal(inventory.source, 'inline.yaml');
    assert.deepEqual(inventory.mesh, {
      interface: 'wg0',
      network: '172.27.15.0/24',
      listenPort: 51820,
      mtu: 1420,
      persistentKeepalive: 25,
      rpFilter: 2,
      reservedCidrs: [],
    });
    const error = thrown(() => loadInventory('inline.yaml', { text: MINIMAL.replace('172.27.15.2 ', '172.27.15.1 ') }));
    assert.deepEqual(error.details, ['inline.yaml:7:54: nodes.b.overlayIp: 172.27.15.1 is already the overlay IP of a']);
  });
  it('maps rpFilter names and numbers to 0, 1, 2', () => {
    for (const [written, mode] of [
      ['off', 0],
      ['strict', 1],
      ['loose', 2],
      ['0', 0],
      ['1', 1],
      ['2', 2],
    ] as const) {
      const text = MINIMAL.replace('  network: 172.27.15.0/24\n', `  network: 172.27.15.0/24\n  rpFilter: ${written}\n`);
      assert.equal(loadInventory('x.yaml', { text }).mesh.rpFilter, mode);
    }
  });
  it('a lan site keeps its router when given', () => {
    const text = MINIMAL.replace(
      '  edge: { public: true }\n',
      '  edge: { public: true }\n  lab: { lan: 10.1.0.0/24, router: 10.1.0.1 }\n',
    ).replace('  b: {', '  c: { site: lab, address: 10.1.0.9, overlayIp: 172.27.15.3 }\n  b: {');
    assert.deepEqual(loadInventory('x.yaml', { text }).sites[1], { name: 'lab', kind: 'lan', lan: '10.1.0.0/24', router: '10.1.0.1' });
  });
  it('checkInventoryText returns the problems as values', () => {
    const result = checkInventoryText('mesh: {}\n', 'x.yaml');
    assert.equal(result.ok, false);
    assert.deepEqual(
      result.problems.map((p) => `${p.line}:${p.col}: ${p.path}`),
      ['1:1: mesh.network', '1:1: nodes', '1:1: sites'],
    );
  });
  it('finding 32: an empty file (blank, comments only, a null document) is one problem, not three at 1:1', () => {
    for (const text of ['', '\n\n', '# to be written\n', '~\n', '---\n']) {
      const error = thrown(() => loadInventory('empty.yaml', { text }));
      assert.equal(error.exitCode, ExitCode.badInput);
      assert.equal(error.message, 'inventory empty.yaml has 1 problem', JSON.stringify(text));
      assert.deepEqual(error.details, [
        "empty.yaml:1:1: (root): the file is empty: an inventory needs mesh, sites and nodes (meshctl's inventories/homelab.yaml is a complete one)",
      ]);
    }
  });

  it('does not report follow-on problems of a field that is already wrong', () => {
    // the network has host bits set: overlay IPs are not also reported as outside a network we cannot know
    const result = checkInventoryText(MINIMAL.replace('172.27.15.0/24', '172.27.15.1/16'), 'x.yaml');
    assert.deepEqual(
      result.problems.map((p) => p.message),
      ['172.27.15.1/16 has host bits set: the network is 172.27.0.0/16'],
    );
  });
});

describe('bounded input (hostile or mistaken files fail fast, one line, exit 2)', () => {
  // fast in CPU time (user + system), which a loaded machine does not stretch as it does wall time
  const fast = (fn: () => unknown): MeshctlError => {
    const cpu = process.cpuUsage();
    const error = thrown(fn);
    const { user, system } = process.cpuUsage(cpu);
    const ms = (user + system) / 1000;
    assert.ok(ms < 1000, `took ${ms.toFixed(0)} ms of CPU`);
    assert.equal(error.exitCode, ExitCode.badInput);
    return error;
  };
  it('/dev/zero is refused before reading', () => {
    assert.equal(fast(() => loadInventory('/dev/zero')).message, 'cannot read inventory /dev/zero: not a regular file');
  });
  it('a FIFO is refused without opening it (opening would wait for a writer)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-fifo-'));
    try {
      const fifo = join(dir, 'inventory.yaml');
      assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
      assert.equal(fast(() => loadInventory(fifo)).message, `cannot read inventory ${fifo}: not a regular file`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it(`a file over ${MAX_INPUT_BYTES} bytes (1 MiB) is refused before reading`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'meshctl-big-'));
    try {
      const big = join(dir, 'inventory.yaml');
      writeFileSync(big, `${MINIMAL}${'#'.repeat(MAX_INPUT_BYTES)}\n`);
      assert.equal(
        fast(() => loadInventory(big)).message,
        `cannot read inventory ${big}: larger than 1 MiB (${MAX_INPUT_BYTES} bytes), the limit for an input file`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  it('an alias bomb fails within the alias budget (its fixture states the lines)', () => {
    fast(() => loadInventory('test/fixtures/inventories/bad/alias-bomb.yaml'));
  });
  it('a key that holds a newline still gives one line per problem', () => {
    const error = thrown(() => loadInventory('x.yaml', { text: `${MINIMAL}"bad\\nkey": 1\n` }));
    assert.deepEqual(error.details, ['x.yaml:8:1: bad\\nkey: unknown field (allowed here: mesh, defaults, sites, nodes)']);
  });
});

describe('helpers', () => {
  it('didYouMean finds typos, swaps and case slips, and nothing far away', () => {
    assert.equal(didYouMean('lsitenPort', ['listenPort', 'mtu']), 'listenPort');
    assert.equal(didYouMean('hmoe', ['home', 'edge']), 'home');
    assert.equal(didYouMean('MTU', ['mtu']), 'mtu');
    assert.equal(didYouMean('colour', ['site', 'address', 'ssh']), undefined);
    // a one-letter site replaced whole is no typo (Q4-7: a duplicate key `b` meant as `c` gave "did you mean a?")
    assert.equal(didYouMean('c', ['a', 'b']), undefined);
    assert.equal(didYouMean('ab', ['cd']), undefined);
    assert.equal(didYouMean('bb', ['a', 'b']), 'b');
    assert.equal(didYouMean('B', ['a', 'b']), 'b');
  });
  it('formatPath', () => {
    assert.equal(formatPath(['mesh', 'reservedCidrs', 1]), 'mesh.reservedCidrs[1]');
    assert.equal(formatPath([]), '(root)');
  });
  it('sortProblems orders by position and drops exact repeats', () => {
    const p = (line: number, col: number, message = 'm') => ({ line, col, path: 'x', message });
    assert.deepEqual(sortProblems([p(3, 1), p(1, 5), p(1, 2), p(1, 5)]), [p(1, 2), p(1, 5), p(3, 1)]);
  });
  it('parseCidrDetailed says what is wrong', () => {
    assert.deepEqual(parseCidrDetailed('192.168.15.1/24'), { ok: false, reason: 'host-bits', network: '192.168.15.0/24' });
    assert.deepEqual(parseCidrDetailed('192.168.15.0'), { ok: false, reason: 'no-prefix', address: '192.168.15.0' });
    assert.deepEqual(parseCidrDetailed('10.0.0.0/33'), { ok: false, reason: 'prefix', prefix: 33 });
    assert.deepEqual(parseCidrDetailed('10.0.0/8'), { ok: false, reason: 'syntax' });
    assert.equal(parseCidrDetailed('10.0.0.0/8').ok, true);
  });
  it('reservedAddressOf', () => {
    const cidr = parseCidr('10.0.0.0/24')!;
    assert.equal(reservedAddressOf(cidr, '10.0.0.0'), 'network');
    assert.equal(reservedAddressOf(cidr, '10.0.0.255'), 'broadcast');
    assert.equal(reservedAddressOf(cidr, '10.0.0.1'), undefined);
    assert.equal(reservedAddressOf(parseCidr('10.0.0.0/31')!, '10.0.0.0'), undefined);
  });
});
