import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredMesh, type DesiredNodeConfig } from '../../src/topology/desired.js';
import { parseWgQuickConfig, renderWgQuickConfig } from '../../src/render/wgquick.js';
import type { LivePeer } from '../../src/render/wgdump.js';
import { compareConfigToDesired, compareLiveToDesired, normaliseAllowedIp, splitEndpoint } from '../../src/render/drift.js';

const repo = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const keys = new Map(
  Object.entries(JSON.parse(readFileSync(repo('test/fixtures/golden/homelab/public-keys.json'), 'utf8')) as Record<string, string>),
);
const configs = desiredMesh(loadInventory(repo('inventories/homelab.yaml')), keys);
const desiredOf = (name: string) => configs.find((c) => c.node === name)!;
const OTHER_KEY = 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=';

/** The live peers a converged node would show: its design, with a recent handshake. */
function livePeersOf(config: DesiredNodeConfig): LivePeer[] {
  return config.peers.map((p) => ({
    publicKey: p.publicKey,
    hasPresharedKey: false,
    ...(p.endpoint ? { endpoint: p.endpoint } : {}),
    allowedIps: [...p.allowedIps],
    latestHandshake: 1700000000,
    rxBytes: 100,
    txBytes: 100,
    ...(p.persistentKeepalive ? { persistentKeepalive: p.persistentKeepalive } : {}),
  }));
}
const byName = (config: DesiredNodeConfig, peers: LivePeer[], name: string) =>
  peers.find((p) => p.publicKey === config.peers.find((d) => d.name === name)!.publicKey)!;
const summary = (items: ReturnType<typeof compareLiveToDesired>) =>
  items.map((i) => `${i.severity} ${i.peer ?? '-'} ${i.field} ${i.actual ?? ''} -> ${i.expected ?? ''}`);

describe('compareLiveToDesired', () => {
  it('finds nothing on a converged node', () => {
    const ms1 = desiredOf('ms-1');
    assert.deepEqual(compareLiveToDesired(ms1, livePeersOf(ms1), { publicKey: keys.get('ms-1'), listenPort: 51820 }), []);
  });

  it('takes a NATed peer on another source port as info, not drift', () => {
    const edge = desiredOf('ctb-edge-1');
    const live = livePeersOf(edge);
    byName(edge, live, 'ms-1').endpoint = '203.0.113.10:27339';
    const items = compareLiveToDesired(edge, live);
    assert.deepEqual(summary(items), ['info ms-1 endpoint 203.0.113.10:27339 -> 203.0.113.10:51821']);
    assert.match(items[0]!.message, /NAT/);
  });

  it('warns when a NATed peer talks from the forward designed for another node (outbound mapping on a forwarded port)', () => {
    // what the lab showed with plain MASQUERADE: wk-2 dialled out first and kept source port 51820, wk-1's forward
    const edge = desiredOf('ctb-edge-1');
    const live = livePeersOf(edge);
    byName(edge, live, 'wk-2').endpoint = '203.0.113.10:51820';
    const items = compareLiveToDesired(edge, live);
    assert.deepEqual(summary(items), ['warn wk-2 endpoint 203.0.113.10:51820 -> 203.0.113.10:51822']);
    assert.match(items[0]!.message, /the forward designed for wk-1/);
  });

  it('warns when a peer shows up from another host, fails when it has no endpoint at all', () => {
    const ms1 = desiredOf('ms-1');
    const live = livePeersOf(ms1);
    byName(ms1, live, 'ctb-edge-1').endpoint = '198.51.100.99:51820'; // public peer: no NAT to explain it
    delete byName(ms1, live, 'wk-1').endpoint;
    byName(ms1, live, 'wk-2').endpoint = '192.168.15.4:40000'; // same site: no NAT in between either
    assert.deepEqual(summary(compareLiveToDesired(ms1, live)), [
      'warn ctb-edge-1 endpoint 198.51.100.99:51820 -> 198.51.100.25:51820',
      'fail wk-1 endpoint (none) -> 192.168.15.3:51820',
      'warn wk-2 endpoint 192.168.15.4:40000 -> 192.168.15.4:51820',
    ]);
  });

  it('takes a live endpoint for a peer that has none designed as info (it dialled in)', () => {
    const ms1 = desiredOf('ms-1');
    const design = { ...ms1, peers: ms1.peers.map((p) => (p.name === 'wk-1' ? { ...p, endpoint: undefined } : p)) };
    const items = compareLiveToDesired(design, livePeersOf(ms1));
    assert.deepEqual(summary(items), ['info wk-1 endpoint 192.168.15.3:51820 -> (none)']);
  });

  it('reports missing and stale peers', () => {
    const ms1 = desiredOf('ms-1');
    const live = livePeersOf(ms1).filter((p) => p.publicKey !== keys.get('wk-2'));
    live.push({ publicKey: OTHER_KEY, hasPresharedKey: false, allowedIps: ['10.99.0.1/32'], rxBytes: 0, txBytes: 0 });
    assert.deepEqual(summary(compareLiveToDesired(ms1, live)), [
      'fail wk-2 peer absent -> present',
      `fail ${OTHER_KEY} peer present -> absent`,
    ]);
  });

  it('names a wrong key when a live peer carries the expected AllowedIPs', () => {
    const ms1 = desiredOf('ms-1');
    const live = livePeersOf(ms1);
    byName(ms1, live, 'wk-2').publicKey = OTHER_KEY;
    const items = compareLiveToDesired(ms1, live);
    assert.deepEqual(summary(items), [`fail wk-2 publicKey ${OTHER_KEY} -> ${keys.get('wk-2')}`]);
  });

  it("reports one [Peer] block holding another node's key (WireGuard merged them into one peer)", () => {
    const ms1 = desiredOf('ms-1');
    const live = livePeersOf(ms1).filter((p) => p.publicKey !== keys.get('wk-2'));
    byName(ms1, live, 'wk-1').allowedIps.push('172.27.15.13/32');
    assert.deepEqual(summary(compareLiveToDesired(ms1, live)), [
      'fail wk-1 allowedIps 172.27.15.11/32, 172.27.15.13/32 -> 172.27.15.11/32',
      'fail wk-2 peer absent -> present',
    ]);
  });

  it('reports keepalive, preshared keys and the interface', () => {
    const ms1 = desiredOf('ms-1');
    const live = livePeersOf(ms1);
    delete byName(ms1, live, 'ctb-edge-1').persistentKeepalive;
    byName(ms1, live, 'wk-1').hasPresharedKey = true;
    assert.deepEqual(summary(compareLiveToDesired(ms1, live, { publicKey: OTHER_KEY, listenPort: 51821 })), [
      `fail - publicKey ${OTHER_KEY} -> ${keys.get('ms-1')}`,
      'fail - listenPort 51821 -> 51820',
      'fail ctb-edge-1 persistentKeepalive (none) -> 25',
      'warn wk-1 presharedKey set -> (none)',
    ]);
    assert.match(compareLiveToDesired(ms1, live, {})[0]!.message, /no private key loaded/);
  });

  it('accepts AllowedIPs written without a prefix or in another order', () => {
    const ms1 = desiredOf('ms-1');
    const live = livePeersOf(ms1);
    byName(ms1, live, 'wk-1').allowedIps = ['172.27.15.11'];
    assert.deepEqual(compareLiveToDesired(ms1, live), []);
  });
});

describe('compareConfigToDesired', () => {
  it('finds nothing in the file meshctl renders', () => {
    for (const config of configs) assert.deepEqual(compareConfigToDesired(parseWgQuickConfig(renderWgQuickConfig(config)), config), []);
  });

  it('points at the line of a wrong LAN endpoint', () => {
    const wk1 = desiredOf('wk-1');
    const text = renderWgQuickConfig(wk1).replace('Endpoint = 192.168.15.4:51820', 'Endpoint = 192.168.15.9:51820');
    const items = compareConfigToDesired(parseWgQuickConfig(text), wk1);
    assert.equal(items.length, 1);
    assert.deepEqual(
      { ...items[0], message: undefined },
      {
        peer: 'wk-2',
        field: 'endpoint',
        expected: '192.168.15.4:51820',
        actual: '192.168.15.9:51820',
        severity: 'fail',
        message: undefined,
        line: text.split('\n').indexOf('Endpoint = 192.168.15.9:51820') + 1,
      },
    );
  });

  it("says whose key a [Peer] block holds when it holds another node's", () => {
    const ms1 = desiredOf('ms-1');
    const text = renderWgQuickConfig(ms1).replace(`PublicKey = ${keys.get('wk-2')}`, `PublicKey = ${keys.get('wk-1')}`);
    const items = compareConfigToDesired(parseWgQuickConfig(text), ms1);
    assert.deepEqual(summary(items), [`fail wk-2 publicKey ${keys.get('wk-1')} -> ${keys.get('wk-2')}`]);
    assert.equal(items[0]!.message, 'peer wk-2 holds the public key of wk-1');
  });

  it('matches blocks by key even when the file orders and names them differently', () => {
    const ms1 = desiredOf('ms-1');
    const reordered = { ...ms1, peers: [...ms1.peers].reverse().map((p) => ({ ...p, name: `node ${p.name}` })) };
    const items = compareConfigToDesired(parseWgQuickConfig(renderWgQuickConfig(reordered)), ms1);
    assert.deepEqual(
      items.map((i) => `${i.severity} ${i.field} ${i.actual}`),
      ['info name node ctb-edge-1', 'info name node wk-1', 'info name node wk-2'],
    );
  });

  it('reports a file without [Interface], and syntax problems with the peer they belong to', () => {
    const ms1 = desiredOf('ms-1');
    const peersOnly = renderWgQuickConfig(ms1)
      .slice(renderWgQuickConfig(ms1).indexOf('[Peer]'))
      .replace('AllowedIPs = 172.27.15.31/32', 'AllowedIPs = 172.27.15.31/32\nFoo = bar');
    const items = compareConfigToDesired(parseWgQuickConfig(peersOnly), ms1);
    assert.deepEqual(
      items.map((i) => `${i.severity} ${i.peer ?? '-'} ${i.field}`),
      ['fail - interface', 'warn ctb-edge-1 syntax'],
    );
  });

  it('reports a PrivateKey line without its value', () => {
    const ms1 = desiredOf('ms-1');
    const secret = 'aGVsbG8gdGhpcyBpcyBhIHNlY3JldCBrZXkgZm9yIHQ=';
    const items = compareConfigToDesired(
      parseWgQuickConfig(renderWgQuickConfig(ms1).replace('[Interface]\n', `[Interface]\nPrivateKey = ${secret}\n`)),
      ms1,
    );
    assert.deepEqual(
      items.map((i) => `${i.severity} ${i.field} ${i.line}`),
      ['warn privateKey 5'],
    );
    assert.ok(!JSON.stringify(items).includes(secret));
  });
});

describe('helpers', () => {
  it('normaliseAllowedIp', () => {
    assert.equal(normaliseAllowedIp('10.0.0.1'), '10.0.0.1/32');
    assert.equal(normaliseAllowedIp(' 10.0.0.1/24 '), '10.0.0.0/24');
    assert.equal(normaliseAllowedIp('FD00::1'), 'fd00::1/128');
  });
  it('splitEndpoint', () => {
    assert.deepEqual(splitEndpoint('203.0.113.10:51821'), { host: '203.0.113.10', port: 51821 });
    assert.deepEqual(splitEndpoint('[2001:DB8::1]:51820'), { host: '2001:db8::1', port: 51820 });
    assert.equal(splitEndpoint('nonsense'), undefined);
  });
});
