import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { Inventory, Node, Site } from '../../src/inventory/types.js';
import { desiredMesh, desiredNodeConfig, looksLikeWireGuardKey, PublicKeyProblemError } from '../../src/topology/desired.js';
import { formatEndpoint } from '../../src/topology/endpoints.js';
import { ExitCode } from '../../src/errors.js';

const fakeKey = (name: string) => createHash('sha256').update(`test key ${name}`).digest('base64');
const keysFor = (inventory: Inventory) => new Map(inventory.nodes.map((n) => [n.name, fakeKey(n.name)]));

function node(name: string, site: string, address: string, overlayIp: string, extra: Partial<Node> = {}): Node {
  return { name, site, address, overlayIp, listenPort: 51820, ssh: { host: address, port: 22, user: 'root', become: 'none' }, ...extra };
}

function inventory(sites: Site[], nodes: Node[], mesh: Partial<Inventory['mesh']> = {}): Inventory {
  return {
    source: 'test.yaml',
    mesh: {
      interface: 'wg0',
      network: '10.9.0.0/24',
      listenPort: 51820,
      mtu: 1420,
      persistentKeepalive: 25,
      rpFilter: 2,
      reservedCidrs: [],
      ...mesh,
    },
    sites,
    nodes,
  };
}

/** Two NATed sites, one public site, one closed LAN site. */
const mixed = inventory(
  [
    { name: 'home', kind: 'nat', lan: '192.168.1.0/24', router: '192.168.1.1', publicIp: '203.0.113.1' },
    { name: 'office', kind: 'nat', lan: '192.168.2.0/24', router: '192.168.2.1', publicIp: '203.0.113.2' },
    { name: 'cloud', kind: 'public' },
    { name: 'lab', kind: 'lan', lan: '10.1.0.0/24' },
  ],
  [
    node('h1', 'home', '192.168.1.10', '10.9.0.1', { forwardedPort: 51830 }),
    node('h2', 'home', '192.168.1.11', '10.9.0.2'), // no forward: cannot be dialled from outside
    node('o1', 'office', '192.168.2.10', '10.9.0.3', { forwardedPort: 51900, listenPort: 51999 }),
    node('c1', 'cloud', '198.51.100.1', '10.9.0.4', { listenPort: 443 }),
    node('l1', 'lab', '10.1.0.5', '10.9.0.5'),
  ],
);

describe('desiredMesh', () => {
  it('gives every node every other node as a peer, one /32 each, sorted by name (relayed pairs aside)', () => {
    const configs = desiredMesh(mixed, keysFor(mixed));
    assert.deepEqual(
      configs.map((c) => c.node),
      ['h1', 'h2', 'o1', 'c1', 'l1'],
    );
    // h2 (NAT, no forward) and l1 (closed LAN) cannot dial each other: relayed via c1, the one public node
    const relayedAway: Record<string, string> = { h2: 'l1', l1: 'h2' };
    for (const config of configs) {
      assert.deepEqual(
        config.peers.map((p) => p.name),
        mixed.nodes
          .map((n) => n.name)
          .filter((n) => n !== config.node && n !== relayedAway[config.node])
          .sort(),
      );
      for (const peer of config.peers) {
        const peerNode = mixed.nodes.find((n) => n.name === peer.name)!;
        const carried =
          peer.name === 'c1' && relayedAway[config.node]
            ? [`${mixed.nodes.find((n) => n.name === relayedAway[config.node])!.overlayIp}/32`]
            : [];
        assert.deepEqual(peer.allowedIps, [`${peerNode.overlayIp}/32`, ...carried]);
        assert.equal(peer.publicKey, fakeKey(peer.name));
      }
    }
  });

  it('fills the interface settings from the inventory and the node', () => {
    const o1 = desiredNodeConfig(mixed, 'o1', keysFor(mixed));
    assert.deepEqual(
      { ...o1, peers: undefined },
      {
        node: 'o1',
        interface: 'wg0',
        publicKey: fakeKey('o1'),
        address: '10.9.0.3/32',
        listenPort: 51999,
        mtu: 1420,
        privateKeyPath: '/etc/wireguard/wg0.key',
        peers: undefined,
      },
    );
  });

  it('derives endpoints and keepalive from the dial rules', () => {
    const peersOf = (name: string) => Object.fromEntries(desiredNodeConfig(mixed, name, keysFor(mixed)).peers.map((p) => [p.name, p]));
    const h1 = peersOf('h1');
    assert.equal(h1.h2!.endpoint, '192.168.1.11:51820'); // same site: LAN address
    assert.equal(h1.h2!.persistentKeepalive, undefined); // same site: no keepalive
    assert.equal(h1.o1!.endpoint, '203.0.113.2:51900'); // other NAT site: its public IP and the forward
    assert.equal(h1.o1!.persistentKeepalive, 25);
    assert.equal(h1.c1!.endpoint, '198.51.100.1:443');
    assert.equal(h1.l1!.endpoint, undefined); // a closed LAN cannot be dialled
    assert.equal(h1.l1!.persistentKeepalive, 25);

    const c1 = peersOf('c1');
    assert.equal(c1.h1!.endpoint, '203.0.113.1:51830');
    assert.equal(c1.h2!.endpoint, undefined); // no forward
    assert.ok(Object.values(c1).every((p) => p.persistentKeepalive === undefined)); // public nodes never keep alive
    assert.ok(!('endpoint' in c1.h2!), 'no endpoint key at all, not endpoint: undefined');

    const l1 = peersOf('l1');
    assert.equal(l1.c1!.endpoint, '198.51.100.1:443');
    assert.equal(l1.c1!.persistentKeepalive, 25);
  });

  it('marks pairs with a NAT on the path, at either end (ports may be rewritten)', () => {
    const c1 = desiredNodeConfig(mixed, 'c1', keysFor(mixed)).peers;
    assert.deepEqual(Object.fromEntries(c1.map((p) => [p.name, p.throughNat])), { h1: true, h2: true, l1: true, o1: true });
    const h1 = desiredNodeConfig(mixed, 'h1', keysFor(mixed)).peers;
    assert.deepEqual(Object.fromEntries(h1.map((p) => [p.name, p.throughNat])), { c1: true, h2: false, l1: true, o1: true });
  });

  it('uses no keepalive at all when the mesh sets it to 0', () => {
    const noKeepalive = { ...mixed, mesh: { ...mixed.mesh, persistentKeepalive: 0 } };
    for (const config of desiredMesh(noKeepalive, keysFor(noKeepalive))) {
      assert.ok(config.peers.every((p) => p.persistentKeepalive === undefined));
    }
  });

  it('names the key file after the interface', () => {
    const wg7 = { ...mixed, mesh: { ...mixed.mesh, interface: 'wg7' } };
    const config = desiredNodeConfig(wg7, 'h1', keysFor(wg7));
    assert.equal(config.interface, 'wg7');
    assert.equal(config.privateKeyPath, '/etc/wireguard/wg7.key');
  });

  it('is deterministic and does not depend on the order of the key map', () => {
    const reversed = new Map([...keysFor(mixed)].reverse());
    assert.deepEqual(desiredMesh(mixed, keysFor(mixed)), desiredMesh(mixed, reversed));
  });

  it('lists every node whose public key is missing', () => {
    const keys = keysFor(mixed);
    keys.delete('h2');
    keys.delete('l1');
    assert.throws(
      () => desiredMesh(mixed, keys),
      (error: unknown) => {
        assert.ok(error instanceof PublicKeyProblemError);
        assert.deepEqual(error.missing, ['h2', 'l1']);
        assert.equal(error.exitCode, ExitCode.stop);
        assert.match(error.message, /public keys are not usable: no public key for: h2, l1$/);
        return true;
      },
    );
    // The per-node variant needs the same keys: its own (for verify) and its peers'.
    assert.throws(() => desiredNodeConfig(mixed, 'c1', keys), /public keys are not usable/);
  });

  it('refuses malformed keys and one key shared by two nodes', () => {
    const keys = keysFor(mixed);
    keys.set('o1', 'not-a-key');
    keys.set('h2', keys.get('h1')!);
    assert.throws(
      () => desiredMesh(mixed, keys),
      (error: unknown) => {
        assert.ok(error instanceof PublicKeyProblemError);
        assert.deepEqual(error.malformed, ['o1']);
        assert.deepEqual(error.duplicated, [['h1', 'h2']]);
        // Q9 F-dupkey-msg: the nodes and the why are in the message a step's failure line shows
        assert.match(
          error.message,
          /not a WireGuard public key \(44 base64 characters\) for: o1; one public key shared by: h1, h2 \(cloned key files/,
        );
        return true;
      },
    );
  });

  it('400 cloned nodes sharing a key: the message names 20 and how many more, the details every node (RV6 F7)', () => {
    const names = Array.from({ length: 400 }, (_, i) => `n${String(i + 1).padStart(3, '0')}`);
    const error = new PublicKeyProblemError([], [], [names]);
    assert.ok(error.message.length < 2000, `${error.message.length} characters: the shown text is cut at 2,000`);
    assert.match(error.message, /one public key shared by: n001, n002, .*, n020 and 380 more \(cloned key files/);
    const detailed = error.details.join('\n');
    for (const name of names) assert.match(detailed, new RegExp(`\\b${name}\\b`));
    assert.ok(error.details.every((line) => line.length < 2000));
  });

  it('names an unknown node', () => {
    assert.throws(() => desiredNodeConfig(mixed, 'nope', keysFor(mixed)), /no node named nope/);
  });
});

describe('looksLikeWireGuardKey', () => {
  it('accepts 32 bytes of base64 and nothing else', () => {
    assert.ok(looksLikeWireGuardKey(fakeKey('x')));
    assert.ok(looksLikeWireGuardKey('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA='));
    assert.ok(!looksLikeWireGuardKey(`${fakeKey('x')}\n`));
    assert.ok(!looksLikeWireGuardKey('AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=')); // trailing bits set: not 32 bytes
    assert.ok(!looksLikeWireGuardKey('(none)'));
    assert.ok(!looksLikeWireGuardKey(''));
  });
});

describe('formatEndpoint', () => {
  it('brackets IPv6 literals', () => {
    assert.equal(formatEndpoint({ host: '198.51.100.1', port: 51820 }), '198.51.100.1:51820');
    assert.equal(formatEndpoint({ host: '2001:db8::1', port: 51820 }), '[2001:db8::1]:51820');
  });
});
