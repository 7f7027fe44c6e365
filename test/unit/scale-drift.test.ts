/**
 * Issue 10: comparing one node's config and live peers with its design (src/render/drift.ts) must cost O(N) for N
 * peers, so that verify over N nodes stays O(N^2), the size of the configs. Counted as property reads of the peers
 * (through Proxies), not time: a scan of all peers per peer was O(N^2) per node, O(N^3) for a mesh.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { checkInventoryText } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { compareConfigToDesired, compareLiveToDesired } from '../../src/render/drift.js';
import type { LivePeer } from '../../src/render/wgdump.js';
import { parseWgQuickConfig, renderWgQuickConfig } from '../../src/render/wgquick.js';
import { desiredNodeConfig, type DesiredNodeConfig } from '../../src/topology/desired.js';
import { farmInventory } from '../../scripts/bench/farm/inventory.js';

function farm(n: number): Inventory {
  const generated = farmInventory(n);
  const ports = new Map(generated.nodes.map((node, i) => [node.name, 10_000 + i]));
  const check = checkInventoryText(
    generated.yaml((name) => ({ port: ports.get(name)!, identityFile: '/nonexistent' })),
    `farm-${n}.yaml`,
  );
  assert.ok(check.ok);
  return check.inventory;
}

/** `object` behind a Proxy that counts reads of its own properties into `count.reads`. */
function counting<T extends object>(object: T, count: { reads: number }): T {
  return new Proxy(object, {
    get(target, key, receiver) {
      if (typeof key === 'string' && Object.hasOwn(target, key)) count.reads++;
      return Reflect.get(target, key, receiver);
    },
  });
}

/** The design of the farm's first node (a public node: every peer has an endpoint) among n nodes. */
function design(n: number): DesiredNodeConfig {
  const inventory = farm(n);
  const keys = new Map(inventory.nodes.map((node) => [node.name, createHash('sha256').update(`k ${node.name}`).digest('base64')]));
  return desiredNodeConfig(inventory, inventory.nodes[0]!.name, keys);
}

describe('drift comparisons read each peer a bounded number of times (src/render/drift.ts)', () => {
  it('compareLiveToDesired: live peers in the reverse order, every one with its endpoint: O(N) reads for N peers', () => {
    const desired = design(400);
    const n = desired.peers.length;
    assert.ok(n >= 399 && desired.peers.filter((p) => p.endpoint).length > 300);
    const desiredReads = { reads: 0 };
    const liveReads = { reads: 0 };
    const live: LivePeer[] = desired.peers
      .map((p) => ({
        publicKey: p.publicKey,
        hasPresharedKey: false,
        allowedIps: p.allowedIps,
        rxBytes: 0,
        txBytes: 0,
        ...(p.endpoint ? { endpoint: p.endpoint } : {}),
        ...(p.persistentKeepalive ? { persistentKeepalive: p.persistentKeepalive } : {}),
      }))
      .reverse()
      .map((p) => counting(p, liveReads));
    const items = compareLiveToDesired({ ...desired, peers: desired.peers.map((p) => counting(p, desiredReads)) }, live);
    assert.deepEqual(items, []); // same peers, same values: no drift
    // old code: every live endpoint scanned all N designed peers (~2 N^2 = 320,000 reads) and the match scanned
    // the unmatched live peers per designed peer (~N^2 / 2 = 80,000)
    assert.ok(desiredReads.reads <= 40 * n, `${desiredReads.reads} reads of ${n} designed peers`);
    assert.ok(liveReads.reads <= 40 * n, `${liveReads.reads} reads of ${n} live peers`);
  });

  it('compareConfigToDesired: the rendered file of N peers is compared in O(N) reads of its blocks', () => {
    const desired = design(400);
    const parsed = parseWgQuickConfig(renderWgQuickConfig(desired));
    const n = parsed.peers.length;
    let reads = 0;
    const peers = new Proxy(parsed.peers, {
      get(target, key, receiver) {
        if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
        return Reflect.get(target, key, receiver);
      },
    });
    const items = compareConfigToDesired({ ...parsed, peers }, desired);
    assert.deepEqual(
      items.filter((i) => i.severity !== 'info'),
      [],
    );
    // old code: an indexOf per block (~N^2 / 2 = 80,000 reads)
    assert.ok(reads <= 4 * n, `${reads} reads of ${n} blocks`);
  });
});
