import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredMesh, type DesiredNodeConfig } from '../../src/topology/desired.js';
import { classifyConfigChange, parseWgQuickConfig, renderWgQuickConfig } from '../../src/render/wgquick.js';

const repo = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const goldenDir = 'test/fixtures/golden/homelab';
const homelabKeys = new Map(
  Object.entries(JSON.parse(readFileSync(repo(`${goldenDir}/public-keys.json`), 'utf8')) as Record<string, string>),
);
const homelab = () => desiredMesh(loadInventory(repo('inventories/homelab.yaml')), homelabKeys);
const homelabConfig = (name: string) => homelab().find((c) => c.node === name)!;

/** The peer blocks of a rendered file, by the `# name` comment that follows each [Peer] header. */
function peerBlocks(text: string): Map<string, string[]> {
  const blocks = new Map<string, string[]>();
  for (const block of text.split('[Peer]\n').slice(1)) {
    const [nameLine, ...settings] = block.trim().split('\n');
    blocks.set(nameLine!.replace(/^# /, ''), settings);
  }
  return blocks;
}

const HOME = ['ms-1', 'wk-1', 'wk-2'];
const LAN_ADDRESS: Record<string, string> = { 'ms-1': '192.168.15.2', 'wk-1': '192.168.15.3', 'wk-2': '192.168.15.4' };
const OVERLAY: Record<string, string> = {
  'ms-1': '172.27.15.12',
  'wk-1': '172.27.15.11',
  'wk-2': '172.27.15.13',
  'ctb-edge-1': '172.27.15.31',
};

describe('renderWgQuickConfig: homelab golden files (reference design)', () => {
  // MESHCTL_UPDATE_GOLDEN=1 rewrites the files; review every diff by hand before committing it.
  for (const config of homelab()) {
    it(`${config.node}.conf matches the golden file`, () => {
      const path = repo(`${goldenDir}/${config.node}.conf`);
      const rendered = renderWgQuickConfig(config);
      if (process.env.MESHCTL_UPDATE_GOLDEN === '1') writeFileSync(path, rendered);
      assert.equal(rendered, readFileSync(path, 'utf8'));
    });
  }

  it('renders the four nodes of the reference design', () => {
    assert.deepEqual(
      homelab()
        .map((c) => c.node)
        .sort(),
      ['ctb-edge-1', 'ms-1', 'wk-1', 'wk-2'],
    );
  });

  it('ctb-edge-1 dials the home nodes at the router forwards and sends no keepalive', () => {
    const text = renderWgQuickConfig(homelabConfig('ctb-edge-1'));
    const peers = peerBlocks(text);
    assert.deepEqual([...peers.keys()], ['ms-1', 'wk-1', 'wk-2']);
    assert.ok(peers.get('wk-1')!.includes('Endpoint = 203.0.113.10:51820'));
    assert.ok(peers.get('ms-1')!.includes('Endpoint = 203.0.113.10:51821'));
    assert.ok(peers.get('wk-2')!.includes('Endpoint = 203.0.113.10:51822'));
    assert.doesNotMatch(text, /PersistentKeepalive/);
  });

  for (const self of HOME) {
    it(`${self} reaches ctb-edge-1 publicly with keepalive 25 and the home nodes on the LAN without`, () => {
      const peers = peerBlocks(renderWgQuickConfig(homelabConfig(self)));
      assert.deepEqual([...peers.keys()].sort(), ['ctb-edge-1', ...HOME.filter((n) => n !== self)].sort());
      assert.ok(peers.get('ctb-edge-1')!.includes('Endpoint = 198.51.100.25:51820'));
      assert.ok(peers.get('ctb-edge-1')!.includes('PersistentKeepalive = 25'));
      for (const other of HOME.filter((n) => n !== self)) {
        assert.ok(peers.get(other)!.includes(`Endpoint = ${LAN_ADDRESS[other]}:51820`), `${self} -> ${other}`);
        assert.ok(!peers.get(other)!.some((line) => line.startsWith('PersistentKeepalive')), `${self} -> ${other}`);
      }
    });
  }

  for (const self of Object.keys(OVERLAY)) {
    it(`${self}: one /32 per peer, its own /32 address, MTU 1420, ListenPort 51820, no private key`, () => {
      const text = renderWgQuickConfig(homelabConfig(self));
      for (const [peer, settings] of peerBlocks(text)) {
        assert.deepEqual(
          settings.filter((l) => l.startsWith('AllowedIPs')),
          [`AllowedIPs = ${OVERLAY[peer]}/32`],
        );
        assert.ok(settings.includes(`PublicKey = ${homelabKeys.get(peer)}`));
      }
      assert.match(text, new RegExp(`^Address = ${OVERLAY[self]!.replaceAll('.', '\\.')}/32$`, 'm'));
      assert.match(text, /^MTU = 1420$/m);
      assert.match(text, /^ListenPort = 51820$/m);
      assert.match(text, /^SaveConfig = false$/m);
      assert.match(text, /^PostUp = wg set %i private-key \/etc\/wireguard\/%i\.key$/m);
      assert.doesNotMatch(text, /PrivateKey\s*=/i);
      assert.match(text, /^# .*[Mm]anaged by meshctl/m);
    });
  }
});

describe('renderWgQuickConfig', () => {
  it('is byte-identical for identical input (a second run changes nothing)', () => {
    assert.equal(renderWgQuickConfig(homelabConfig('ms-1')), renderWgQuickConfig(homelabConfig('ms-1')));
    assert.doesNotMatch(renderWgQuickConfig(homelabConfig('ms-1')), /\d{4}-\d\d-\d\d|\d\d:\d\d:\d\d/);
  });

  it('writes a literal key path when the key is not in the conventional place', () => {
    const config = { ...homelabConfig('ms-1'), privateKeyPath: '/srv/keys/wg0.key' };
    assert.match(renderWgQuickConfig(config), /^PostUp = wg set %i private-key \/srv\/keys\/wg0\.key$/m);
  });

  it('renders a node without peers', () => {
    const text = renderWgQuickConfig({ ...homelabConfig('ms-1'), peers: [] });
    assert.doesNotMatch(text, /\[Peer\]/);
    assert.ok(text.endsWith('\n') && !text.endsWith('\n\n'));
  });
});

describe('parseWgQuickConfig', () => {
  it('reads back what renderWgQuickConfig writes', () => {
    const config = homelabConfig('wk-1');
    const parsed = parseWgQuickConfig(renderWgQuickConfig(config));
    assert.deepEqual(parsed.diagnostics, []);
    assert.deepEqual(parsed.interface?.addresses, ['172.27.15.11/32']);
    assert.equal(parsed.interface?.listenPort, 51820);
    assert.equal(parsed.interface?.mtu, 1420);
    assert.equal(parsed.interface?.saveConfig, false);
    assert.deepEqual(parsed.interface?.postUp, ['wg set %i private-key /etc/wireguard/%i.key']);
    assert.equal(parsed.interface?.hasPrivateKey, false);
    assert.deepEqual(
      parsed.peers.map((p) => ({
        name: p.name,
        publicKey: p.publicKey,
        allowedIps: p.allowedIps,
        endpoint: p.endpoint,
        keepalive: p.persistentKeepalive,
      })),
      config.peers.map((p) => ({
        name: p.name,
        publicKey: p.publicKey,
        allowedIps: p.allowedIps,
        endpoint: p.endpoint,
        keepalive: p.persistentKeepalive,
      })),
    );
  });

  const PRIVATE = 'aGVsbG8gdGhpcyBpcyBhIHNlY3JldCBrZXkgZm9yIHQ='; // stands in for a private key
  const PSK = 'cHJlc2hhcmVkIHNlY3JldCBmb3IgdGhlIHRlc3RzIXg=';
  const handWritten = [
    '# my old hand-made config',
    '[interface]',
    `privatekey=${PRIVATE}`,
    'Address = 10.0.0.1/24, fd00::1/64',
    'address = 10.0.1.1/24 # second line',
    'ListenPort = 51820',
    'DNS = 1.1.1.1',
    `PostUp = wg set %i private-key <(echo ${PRIVATE})`,
    'PostUp = iptables -A FORWARD -i %i -j ACCEPT',
    '',
    '[Peer]',
    '   # laptop',
    'PublicKey = G6fS1qkjq9LvU9W9vsGD9oBsybqLnsT4IMiY5KgR8Nw=',
    `PresharedKey = ${PSK}`,
    'AllowedIPs = 10.0.0.2/32,10.0.0.3/32',
    'AllowedIPs = 10.0.0.4/32',
    'Endpoint = 198.51.100.7:51820',
    'PersistentKeepalive = off',
    '[PEER]',
    'publickey = yptYjWy8yXwlLdY4RB6AUOsVYlTyx0xyavHQaC+RRts=',
    'AllowedIPs = 10.0.0.5/32',
    'persistentkeepalive = 15',
    'Bogus = 1',
    'just text',
    '[Peer]',
    'AllowedIPs = 10.0.0.6/32',
  ].join('\r\n');

  it('tolerates case, CRLF, comments, repeated sections and list forms', () => {
    const parsed = parseWgQuickConfig(handWritten);
    assert.deepEqual(parsed.interface?.addresses, ['10.0.0.1/24', 'fd00::1/64', '10.0.1.1/24']);
    assert.equal(parsed.interface?.listenPort, 51820);
    assert.equal(parsed.interface?.line, 2);
    assert.equal(parsed.interface?.lines.address, 5);
    assert.deepEqual(parsed.interface?.otherEntries, [{ key: 'DNS', value: '1.1.1.1', line: 7 }]);
    assert.equal(parsed.peers.length, 3);
    const [laptop, second, third] = parsed.peers;
    assert.equal(laptop!.name, 'laptop');
    assert.deepEqual(laptop!.allowedIps, ['10.0.0.2/32', '10.0.0.3/32', '10.0.0.4/32']);
    assert.equal(laptop!.endpoint, '198.51.100.7:51820');
    assert.equal(laptop!.persistentKeepalive, undefined);
    assert.equal(laptop!.hasPresharedKey, true);
    assert.equal(second!.line, 19);
    assert.equal(second!.name, undefined);
    assert.equal(second!.publicKey, 'yptYjWy8yXwlLdY4RB6AUOsVYlTyx0xyavHQaC+RRts=');
    assert.equal(second!.persistentKeepalive, 15);
    assert.equal(third!.publicKey, undefined);
    assert.deepEqual(parsed.diagnostics, [
      { line: 23, message: 'unknown [Peer] setting Bogus', peerIndex: 1 },
      { line: 24, message: 'expected "Key = Value"', peerIndex: 1 },
      { line: 25, message: '[Peer] without PublicKey', peerIndex: 2 },
    ]);
  });

  it('never keeps a private or preshared key, not even inside a hook', () => {
    const parsed = parseWgQuickConfig(handWritten);
    assert.equal(parsed.interface?.hasPrivateKey, true);
    assert.equal(parsed.interface?.lines.privatekey, 3);
    const everything = JSON.stringify(parsed);
    assert.ok(!everything.includes(PRIVATE), 'private key leaked into the parse result');
    assert.ok(!everything.includes(PSK), 'preshared key leaked into the parse result');
    assert.deepEqual(parsed.interface?.postUp, ['wg set %i private-key <(echo <redacted>)', 'iptables -A FORWARD -i %i -j ACCEPT']);
  });

  it('reports settings outside sections, unknown sections and bad numbers with their lines', () => {
    const parsed = parseWgQuickConfig(
      ['Address = 10.0.0.1/32', '[Interface]', 'ListenPort = 99999', 'MTU = abc', 'SaveConfig = maybe', '[Wat]', 'x = 1'].join('\n'),
    );
    assert.deepEqual(
      parsed.diagnostics.map((d) => d.line),
      [1, 3, 4, 5, 6, 7],
    );
    assert.equal(parsed.interface?.listenPort, undefined);
    assert.match(parsed.diagnostics[1]!.message, /ListenPort/);
  });

  it('keeps a key-looking comment out of the peer name', () => {
    const parsed = parseWgQuickConfig(`[Peer]\n# old ${'A'.repeat(43)}=\nPublicKey = ${'B'.repeat(43)}=\n`);
    assert.equal(parsed.peers[0]!.name, undefined);
  });

  it('merges a repeated [Interface] with a diagnostic', () => {
    const parsed = parseWgQuickConfig('[Interface]\nAddress = 10.0.0.1/32\n[Interface]\nMTU = 1380\n');
    assert.equal(parsed.interface?.mtu, 1380);
    assert.deepEqual(parsed.interface?.addresses, ['10.0.0.1/32']);
    assert.match(parsed.diagnostics[0]!.message, /repeated \[Interface\]/);
  });
});

describe('classifyConfigChange', () => {
  const desired = () => homelabConfig('ms-1');
  const current = () => renderWgQuickConfig(desired());
  const withPeers = (config: DesiredNodeConfig, edit: (peers: DesiredNodeConfig['peers']) => DesiredNodeConfig['peers']) => ({
    ...config,
    peers: edit(config.peers.map((p) => ({ ...p }))),
  });

  it('create when there is no file', () => {
    const change = classifyConfigChange(undefined, desired());
    assert.equal(change.kind, 'create');
    assert.deepEqual(change.summary, [
      '+ wg0.conf: Address 172.27.15.12/32, ListenPort 51820, MTU 1420',
      '+ peer ctb-edge-1',
      '+ peer wk-1',
      '+ peer wk-2',
    ]);
  });

  it('none when byte-identical', () => {
    assert.deepEqual(classifyConfigChange(current(), desired()), { kind: 'none', summary: [] });
  });

  it('peers when a peer was added', () => {
    const old = renderWgQuickConfig(withPeers(desired(), (peers) => peers.filter((p) => p.name !== 'wk-2')));
    assert.deepEqual(classifyConfigChange(old, desired()), { kind: 'peers', summary: ['+ peer wk-2'] });
  });

  it('peers when a stale peer is removed', () => {
    const extra = {
      name: 'old-1',
      publicKey: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=',
      allowedIps: ['172.27.15.99/32'],
      throughNat: false,
    };
    const old = renderWgQuickConfig(withPeers(desired(), (peers) => [...peers, extra]));
    assert.deepEqual(classifyConfigChange(old, desired()), { kind: 'peers', summary: ['- peer old-1'] });
  });

  it('peers when an endpoint, keepalive or key changed', () => {
    const old = renderWgQuickConfig(
      withPeers(desired(), (peers) => {
        peers[0]!.endpoint = '1.2.3.4:1';
        delete peers[0]!.persistentKeepalive;
        peers[1]!.publicKey = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';
        return peers;
      }),
    );
    const change = classifyConfigChange(old, desired());
    assert.equal(change.kind, 'peers');
    assert.deepEqual(change.summary, [
      '~ peer ctb-edge-1 endpoint 1.2.3.4:1 -> 198.51.100.25:51820',
      '~ peer ctb-edge-1 keepalive (none) -> 25',
      `~ peer wk-1 public key AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= -> ${homelabKeys.get('wk-1')}`,
    ]);
  });

  it('none, a rewrite with no live effect, when only comments or layout differ', () => {
    const change = classifyConfigChange(current().replace('# edit the inventory', '#  edit the inventory'), desired());
    assert.equal(change.kind, 'none');
    assert.deepEqual(change.summary, ['~ comments or layout only (no change to the live interface)']);
  });

  it("none when only a peer's name comment differs (a renamed node: no sync on every node, Q5)", () => {
    const text = current();
    assert.match(text, /^# wk-1$/m);
    const change = classifyConfigChange(text.replace(/^# wk-1$/m, '# wk-old'), desired());
    assert.equal(change.kind, 'none');
    assert.deepEqual(change.summary, ['~ peer wk-1 name comment wk-old -> wk-1']);
    // a name comment beside a real peer change is still a peers change
    const both = classifyConfigChange(text.replace(/^# wk-1$/m, '# wk-old').replace(':51820', ':51999'), desired());
    assert.equal(both.kind, 'peers');
  });

  it('interface when MTU, ListenPort, Address or PostUp changed', () => {
    const cases: Array<[Partial<DesiredNodeConfig>, string]> = [
      [{ mtu: 1380 }, '~ interface MTU 1380 -> 1420'],
      [{ listenPort: 51999 }, '~ interface ListenPort 51999 -> 51820'],
      [{ address: '172.27.15.99/32' }, '~ interface Address 172.27.15.99/32 -> 172.27.15.12/32'],
      [
        { privateKeyPath: '/root/wg.key' },
        '~ interface PostUp wg set %i private-key /root/wg.key -> wg set %i private-key /etc/wireguard/%i.key',
      ],
    ];
    for (const [edit, line] of cases) {
      assert.deepEqual(classifyConfigChange(renderWgQuickConfig({ ...desired(), ...edit }), desired()), {
        kind: 'interface',
        summary: [line],
      });
    }
  });

  it('interface when a hand-written file holds a PrivateKey or extra settings, without printing the key', () => {
    const secret = 'aGVsbG8gdGhpcyBpcyBhIHNlY3JldCBrZXkgZm9yIHQ=';
    const old = current().replace('[Interface]\n', `[Interface]\nPrivateKey = ${secret}\nTable = off\n`);
    const change = classifyConfigChange(old, desired());
    assert.equal(change.kind, 'interface');
    assert.deepEqual(change.summary, [
      '- interface PrivateKey line (the key stays in its own file on the node)',
      '- interface Table = off',
    ]);
    assert.ok(!change.summary.join('\n').includes(secret));
  });
});
