/**
 * Issue 10, what the run holds through its verify phase at farm scale, counted (never timed): the planned paths keep
 * no object or text per pair, the desired configs share their peers across nodes, the ping round's live peers are
 * numbers, not objects, and each node's routes and peer dump are read as its output arrives. Bytes are the heap
 * still in use after a full collection (V8's gc(), exposed here through --expose-gc set at run time).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { heldBytes } from '../support/held-heap.js';
import { runPingMatrix } from '../../src/engine/ping.js';
import { runPingRound } from '../../src/checks/ping-matrix.js';
import { desiredMesh } from '../../src/topology/desired.js';
import { planPaths } from '../../src/topology/paths.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import type { Inventory } from '../../src/inventory/types.js';
import { FakeFarm, fakeFarmInventory, fakePublicKey } from '../../scripts/bench/farm/fake-node.js';
import { nodesWithConfigs } from '../support/farm-configs.js';

function withFarm<T>(n: number, body: (inventory: Inventory) => Promise<T> | T): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-scale-retained-'));
  return Promise.resolve(body(fakeFarmInventory(n, dir))).finally(() => rmSync(dir, { recursive: true, force: true }));
}

const keysOf = (inventory: Inventory) => new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)]));

describe('planPaths keeps no object or text per pair (issue 10)', () => {
  it('400 nodes (79,800 pairs): the plan holds under 5 bytes of heap per pair; a path and its why are made when asked', () =>
    withFarm(400, (inventory) => {
      const before = heldBytes();
      const paths = planPaths(inventory);
      const held = heldBytes() - before;
      const pairs = (400 * 399) / 2;
      // a PairPlan, its path object and its why text per pair were ~200 bytes each (~100 MB at 1,000 nodes)
      assert.ok(held < 5 * pairs, `${held} bytes held for ${pairs} pairs`);
      const first = paths.pairs[0]!;
      assert.equal(first.path.kind, 'direct');
      assert.match(first.path.why, /^pub-0000 dials pub-0001 at \S+; pub-0001 dials pub-0000 at \S+$/);
      assert.deepEqual(Object.keys(first.path), ['kind', 'why']);
    }));
});

describe('desired configs share their peers across nodes (issue 10)', () => {
  it('120 nodes: at most a few distinct DesiredPeer objects per peer, not one per node and peer (14,280)', () =>
    withFarm(120, (inventory) => {
      const mesh = desiredMesh(inventory, keysOf(inventory));
      const objects = new Set(mesh.flatMap((config) => config.peers));
      const lists = new Set(mesh.flatMap((config) => config.peers.map((p) => p.allowedIps)));
      assert.equal(
        mesh.reduce((sum, c) => sum + c.peers.length, 0),
        120 * 119,
      );
      // the farm's sites: a peer looks alike from every node of a site kind (endpoint, keepalive, NAT flag)
      assert.ok(objects.size <= 4 * 120, `${objects.size} distinct peer objects`);
      assert.ok(lists.size <= 120, `${lists.size} distinct AllowedIPs lists`);
      // values as before: each config renders the same text from the shared peers as from fresh copies
      for (const config of mesh.slice(0, 5)) {
        const fresh = { ...config, peers: config.peers.map((p) => ({ ...p, allowedIps: [...p.allowedIps] })) };
        assert.equal(renderWgQuickConfig(config), renderWgQuickConfig(fresh));
        assert.ok(Object.isFrozen(config.peers[0]));
      }
    }));
});

describe("the ping round's tunnel values (issue 10)", () => {
  it('150 nodes: the live peers of every node (22,350) are held in under 100 bytes each with their matrix rows and routes (161 before), read back as the same values', () =>
    withFarm(150, async (inventory) => {
      const signal = new AbortController().signal;
      // a small round first: the code it runs is compiled before the count
      await withFarm(4, async (small) => {
        await runPingMatrix({ inventory: small, nodes: await nodesWithConfigs(small, new FakeFarm()), changedSoFar: false, signal });
      });
      const nodes = await nodesWithConfigs(inventory, new FakeFarm());
      const before = heldBytes();
      const out = await runPingMatrix({ inventory, nodes, changedSoFar: false, signal });
      const held = heldBytes() - before;
      const peers = 150 * 149;
      // the matrix (one row object per node, ~40 bytes a cell; the cells are one shared object here) and the routes
      // are held too: ~71 bytes a peer in all (2026-12-01), 161 with a LivePeer object per peer
      assert.ok(held < 100 * peers, `${held} bytes held for ${peers} live peers (${(held / peers).toFixed(1)} per peer)`);
      const ipOf = new Map(inventory.nodes.map((n) => [fakePublicKey(n.name), `${n.overlayIp}/32`]));
      for (const [name, { tunnel }] of out.values) {
        const live = tunnel.peers;
        assert.equal(live.length, 149, name);
        for (const peer of live) {
          assert.deepEqual(Object.keys(peer), ['publicKey', 'hasPresharedKey', 'allowedIps', 'latestHandshake', 'rxBytes', 'txBytes']);
          assert.deepEqual(peer.allowedIps, [ipOf.get(peer.publicKey)]);
          assert.equal(peer.rxBytes, 92);
          assert.equal(peer.latestHandshake, tunnel.now);
        }
      }
    }));

  it("each node's after-sections are handed over as its output arrives, before later nodes answer", () =>
    withFarm(12, async (inventory) => {
      const nodes = await nodesWithConfigs(inventory, new FakeFarm());
      const order: string[] = [];
      const connections = new Map(
        nodes.map(({ node, connection }) => [
          node.name,
          {
            ...connection,
            target: connection.target,
            stats: connection.stats,
            close: () => connection.close(),
            // the output exists from here on, as a reply's does
            run: async (script: string, options?: Parameters<typeof connection.run>[1]) => {
              const result = await connection.run(script, options);
              order.push(`output ${node.name}`);
              return result;
            },
          },
        ]),
      );
      const targets = inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
      const round = await runPingRound(connections, targets, {
        count: 1,
        after: [{ name: 'now', command: 'date +%s' }],
        onAfter: (node, { after, row, failure }) => {
          order.push(`read ${node}`);
          assert.equal(failure, undefined);
          assert.ok(after.has('now'), node);
          assert.equal(Object.keys(row).length, 11);
        },
      });
      assert.equal(round.after.size, 0, 'the round keeps no sections of its own when they are handed over');
      // every node's sections are read right after its own output, not after the last node's
      assert.deepEqual(
        order,
        inventory.nodes.flatMap((n) => [`output ${n.name}`, `read ${n.name}`]),
      );
    }));
});
