/**
 * Issue 10: the checks that judge one node's routes and sessions must read each route and live peer a bounded number
 * of times, so that judging a mesh of N nodes stays O(N^2), the size of its configs. The farm's profile at 100 to
 * 1,000 nodes found `overlay-routes` rebuilding the route set once per peer (298 s of meshctl CPU at 1,000 nodes)
 * and the session checks scanning the live peers once per peer. Counted as element reads through Proxies, not time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { judgeHandshakesRecent, judgeOverlayRoutes } from '../../src/checks/judge.js';
import { pairsWithoutSession } from '../../src/checks/collect.js';
import { checkInventoryText } from '../../src/inventory/load.js';
import type { LivePeer } from '../../src/render/wgdump.js';
import { farmInventory } from '../../scripts/bench/farm/inventory.js';

/** `array` behind a Proxy that counts reads of its elements into `count.reads`. */
function counting<T>(array: T[], count: { reads: number }): T[] {
  return new Proxy(array, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) count.reads++;
      return Reflect.get(target, key, receiver);
    },
  });
}

const N = 1000;
const peers = Array.from({ length: N }, (_, i) => ({
  name: `n${i}`,
  publicKey: `key-${i}`,
  allowedIps: [`10.${i >> 8}.${i & 255}.1/32`],
}));
const NOW = 1_795_376_800;
const live = (i: number): LivePeer => ({
  publicKey: `key-${i}`,
  hasPresharedKey: false,
  allowedIps: peers[i]!.allowedIps,
  latestHandshake: NOW - 30,
  rxBytes: 1,
  txBytes: 1,
});

describe('route and session judges read each route and live peer a bounded number of times', () => {
  it('overlay-routes: O(N) route reads for N peers (it was N reads per peer)', () => {
    const count = { reads: 0 };
    // host routes as `ip route show dev wg0` prints them: without /32, in reverse order
    const routes = counting(peers.map((p) => `${p.allowedIps[0]!.slice(0, -3)} scope link`).reverse(), count);
    const verdict = judgeOverlayRoutes({ iface: 'wg0', peers }, { interfaceRoutes: routes });
    assert.equal(verdict.status, 'pass', verdict.message);
    assert.ok(count.reads <= 3 * N, `${count.reads} route reads for ${N} peers`);
  });

  it('overlay-routes still names a missing route', () => {
    const routes = peers.slice(1).map((p) => p.allowedIps[0]!);
    const verdict = judgeOverlayRoutes({ iface: 'wg0', peers }, { interfaceRoutes: routes });
    assert.equal(verdict.status, 'fail');
    assert.match(verdict.message, /missing routes via wg0: 10\.0\.0\.1\/32 \(n0\)$/);
  });

  it('handshakes-recent: O(N) live-peer reads for N peers (it was a scan per peer)', () => {
    const count = { reads: 0 };
    const livePeers = counting(
      peers.map((_, i) => live(N - 1 - i)),
      count,
    );
    const verdict = judgeHandshakesRecent(peers, { peers: livePeers, now: NOW });
    assert.equal(verdict.status, 'pass', verdict.message);
    assert.ok(count.reads <= 3 * N, `${count.reads} live-peer reads for ${N} peers`);
  });

  it('handshakes-recent still fails a peer that is not live with its key', () => {
    const verdict = judgeHandshakesRecent(peers.slice(0, 3), { peers: [live(0), live(2)], now: NOW });
    assert.equal(verdict.status, 'fail');
    assert.match(verdict.message, /no recent handshake with n1$/);
    assert.match(verdict.evidence?.join('\n') ?? '', /n1: no session possible: n1 is not a peer with its key/);
  });

  it("verify's first-contact pairs: O(N^2) live-peer reads over a mesh of N nodes (it was O(N^3))", () => {
    const generated = farmInventory(200);
    const check = checkInventoryText(
      generated.yaml((name) => ({ port: 10_000 + generated.nodes.findIndex((n) => n.name === name), identityFile: '/nonexistent' })),
      'farm-200.yaml',
    );
    assert.ok(check.ok);
    const { inventory } = check;
    const keys = new Map(inventory.nodes.map((n) => [n.name, `key-${n.name}`]));
    const count = { reads: 0 };
    const checklists = new Map(
      inventory.nodes.map((node) => [
        node.name,
        {
          now: NOW,
          peers: counting(
            inventory.nodes
              .filter((other) => other.name !== node.name)
              .reverse()
              .map((other) => ({ ...live(0), publicKey: keys.get(other.name)! })),
            count,
          ),
        },
      ]),
    );
    // every session is fresh: no pair needs a first contact
    assert.deepEqual(pairsWithoutSession(inventory, checklists, keys), []);
    const n = inventory.nodes.length;
    assert.ok(count.reads <= 2 * n * n, `${count.reads} live-peer reads for ${n} nodes`);
  });
});
