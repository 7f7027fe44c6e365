/**
 * Table-driven: every broken inventory under test/fixtures/inventories/bad/ states its exact expected problems in
 * `# expect: LINE:COL: FIELD.PATH: message` comments at the top; loading it must produce exactly those lines,
 * in that order, prefixed by the path as given. Good inventories load to known normalised values.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ExitCode, MeshctlError } from '../../src/errors.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';

const BAD = 'test/fixtures/inventories/bad';
const GOOD = 'test/fixtures/inventories/good';

function expectedLines(path: string): string[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((line) => line.startsWith('# expect: '))
    .map((line) => `${path}:${line.slice('# expect: '.length)}`);
}

function problemsOf(path: string): MeshctlError {
  try {
    loadInventory(path);
  } catch (error) {
    assert.ok(error instanceof MeshctlError, `expected a MeshctlError, got ${String(error)}`);
    return error;
  }
  assert.fail(`${path} loaded without problems`);
}

describe('broken inventories report their exact problems', () => {
  const files = readdirSync(BAD)
    .filter((f) => f.endsWith('.yaml'))
    .sort();
  it('there are at least 35 of them', () => assert.ok(files.length >= 35, `only ${files.length} bad fixtures`));
  for (const file of files) {
    const path = `${BAD}/${file}`;
    it(file, () => {
      const expected = expectedLines(path);
      assert.ok(expected.length > 0, `${path} has no "# expect:" line`);
      const error = problemsOf(path);
      assert.equal(error.exitCode, ExitCode.badInput);
      assert.equal(error.message, `inventory ${path} has ${expected.length === 1 ? '1 problem' : `${expected.length} problems`}`);
      assert.deepEqual(error.details, expected);
    });
  }
});

const homelabNodes = (): Inventory['nodes'] => [
  {
    name: 'ms-1',
    site: 'home',
    address: '192.168.15.2',
    overlayIp: '172.27.15.12',
    listenPort: 51820,
    forwardedPort: 51821,
    ssh: { host: '192.168.15.2', port: 22, user: 'root', become: 'none' },
  },
  {
    name: 'wk-1',
    site: 'home',
    address: '192.168.15.3',
    overlayIp: '172.27.15.11',
    listenPort: 51820,
    forwardedPort: 51820,
    ssh: { host: '192.168.15.3', port: 22, user: 'admin', become: 'sudo' },
  },
  {
    name: 'wk-2',
    site: 'home',
    address: '192.168.15.4',
    overlayIp: '172.27.15.13',
    listenPort: 51820,
    forwardedPort: 51822,
    ssh: { host: '192.168.15.4', port: 22, user: 'admin', become: 'sudo' },
  },
  {
    name: 'ctb-edge-1',
    site: 'edge',
    address: '198.51.100.25',
    overlayIp: '172.27.15.31',
    listenPort: 51820,
    ssh: { host: '198.51.100.25', port: 22, user: 'root', become: 'none' },
  },
];

describe('good inventories load to their normalised form', () => {
  it('inventories/homelab.yaml (the reference design)', () => {
    assert.deepEqual(loadInventory('inventories/homelab.yaml'), {
      source: 'inventories/homelab.yaml',
      mesh: {
        interface: 'wg0',
        network: '172.27.15.0/24',
        listenPort: 51820,
        mtu: 1420,
        persistentKeepalive: 25,
        rpFilter: 2,
        reservedCidrs: [],
      },
      sites: [
        { name: 'home', kind: 'nat', lan: '192.168.15.0/24', router: '192.168.15.1', publicIp: '203.0.113.10' },
        { name: 'edge', kind: 'public' },
      ],
      nodes: homelabNodes(),
    } satisfies Inventory);
  });

  it('two nat sites and two public nodes, with defaults.ssh and per-node overrides', () => {
    const path = `${GOOD}/two-nat-sites.yaml`;
    assert.deepEqual(loadInventory(path), {
      source: path,
      mesh: {
        interface: 'wg-mesh',
        network: '10.99.0.0/24',
        listenPort: 51000,
        mtu: 1380,
        persistentKeepalive: 15,
        rpFilter: 2,
        reservedCidrs: ['10.42.0.0/16', '10.43.0.0/16'],
      },
      sites: [
        { name: 'home', kind: 'nat', lan: '192.168.1.0/24', router: '192.168.1.1', publicIp: '203.0.113.10' },
        { name: 'office', kind: 'nat', lan: '10.20.0.0/16', router: '10.20.0.1', publicIp: '198.51.100.7' },
        { name: 'cloud-a', kind: 'public' },
        { name: 'cloud-b', kind: 'public' },
      ],
      nodes: [
        {
          name: 'home-1',
          site: 'home',
          address: '192.168.1.10',
          overlayIp: '10.99.0.11',
          listenPort: 51000,
          forwardedPort: 51000,
          ssh: { host: '192.168.1.10', port: 2222, user: 'ops', identityFile: '~/.ssh/mesh_ed25519', become: 'sudo' },
        },
        {
          name: 'home-2',
          site: 'home',
          address: '192.168.1.11',
          overlayIp: '10.99.0.12',
          listenPort: 51001,
          forwardedPort: 51001,
          ssh: { host: '192.168.1.11', port: 2222, user: 'root', identityFile: '~/.ssh/mesh_ed25519', become: 'none' },
        },
        {
          name: 'office-1',
          site: 'office',
          address: '10.20.3.4',
          overlayIp: '10.99.0.21',
          listenPort: 51000,
          forwardedPort: 40000,
          ssh: { host: 'office-1.vpn.example', port: 2222, user: 'ops', identityFile: '~/.ssh/mesh_ed25519', become: 'sudo' },
        },
        {
          name: 'cloud-a-1',
          site: 'cloud-a',
          address: '192.0.2.50',
          overlayIp: '10.99.0.31',
          listenPort: 51000,
          ssh: { host: '192.0.2.50', port: 22, user: 'root', identityFile: '~/.ssh/mesh_ed25519', become: 'none' },
        },
        {
          name: 'cloud-b-1',
          site: 'cloud-b',
          address: '192.0.2.80',
          overlayIp: '10.99.0.32',
          listenPort: 51000,
          ssh: { host: '192.0.2.80', port: 2222, user: 'ops', identityFile: '~/.ssh/mesh_ed25519', become: 'sudo' },
        },
      ],
    } satisfies Inventory);
  });

  it('a plain lan site, mesh defaults, and YAML anchors with << merge', () => {
    const path = `${GOOD}/plain-lan-site.yaml`;
    assert.deepEqual(loadInventory(path), {
      source: path,
      mesh: {
        interface: 'wg0',
        network: '172.27.15.0/24',
        listenPort: 51820,
        mtu: 1420,
        persistentKeepalive: 25,
        rpFilter: 2,
        reservedCidrs: [],
      },
      sites: [
        { name: 'home', kind: 'nat', lan: '192.168.15.0/24', router: '192.168.15.1', publicIp: '203.0.113.10' },
        { name: 'lab', kind: 'lan', lan: '10.1.0.0/24' },
        { name: 'edge', kind: 'public' },
      ],
      nodes: [
        {
          name: 'ms-1',
          site: 'home',
          address: '192.168.15.2',
          overlayIp: '172.27.15.12',
          listenPort: 51820,
          forwardedPort: 51821,
          ssh: { host: '192.168.15.2', port: 22, user: 'admin', become: 'sudo' },
        },
        {
          name: 'lab-1',
          site: 'lab',
          address: '10.1.0.5',
          overlayIp: '172.27.15.21',
          listenPort: 51820,
          ssh: { host: '10.1.0.5', port: 2200, user: 'admin', become: 'sudo' },
        },
        {
          name: 'ctb-edge-1',
          site: 'edge',
          address: '198.51.100.25',
          overlayIp: '172.27.15.31',
          listenPort: 51820,
          ssh: { host: '198.51.100.25', port: 22, user: 'root', become: 'none' },
        },
      ],
    } satisfies Inventory);
  });

  it('every good fixture loads', () => {
    for (const file of readdirSync(GOOD).filter((f) => f.endsWith('.yaml'))) loadInventory(`${GOOD}/${file}`);
  });
});
