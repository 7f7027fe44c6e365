/**
 * verify judges a node's wg-quick file by its sha256 against the design's (src/checks/verify.ts renderedSha256): each
 * frozen desired peer's text is rendered once per process and kept by the peer object (the design shares one frozen
 * object per distinct peer across the nodes' configs: src/topology/desired.ts sharedPeer), so hashing every node's
 * design of a mesh of N nodes renders ~N peers' texts, not N (N-1) (issue 10). The sha256 must stay the whole text's,
 * and a peer that is not frozen (a design made by hand) is rendered anew each time, so a change to it shows.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { renderedSha256, renderedSha256Stats } from '../../src/checks/verify.js';
import { desiredMesh, type DesiredNodeConfig } from '../../src/topology/desired.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { fakePublicKey } from '../../scripts/bench/farm/fake-node.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

const whole = (d: DesiredNodeConfig) => createHash('sha256').update(renderWgQuickConfig(d)).digest('hex');

describe('renderedSha256 renders each frozen desired peer once', () => {
  it('hashes every node of a 120-node farm as the whole text, rendering ~N peer texts, not N (N-1)', async () => {
    await withConvergedFarm(120, async (inventory) => {
      const designs = desiredMesh(inventory, new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)])));
      const distinct = new Set(designs.flatMap((d) => d.peers));
      assert.ok(
        [...distinct].every((p) => Object.isFrozen(p)),
        'the design shares frozen peers',
      );
      const before = renderedSha256Stats.peerRenders;
      for (const d of designs) assert.equal(renderedSha256(d), whole(d), d.node);
      const rendered = renderedSha256Stats.peerRenders - before;
      // each distinct peer object once (the old code rendered every node's every peer: 120 x 119 = 14,280)
      assert.equal(rendered, distinct.size);
      // a peer has a variant per kind of viewer (its site, NAT): a few per node, far from N - 1
      assert.ok(distinct.size <= 4 * designs.length, `${distinct.size} distinct peers for ${designs.length} nodes`);
      // a second pass renders nothing, and gives the same sums
      for (const d of designs) assert.equal(renderedSha256(d), whole(d), d.node);
      assert.equal(renderedSha256Stats.peerRenders - before, rendered);
    });
  });

  it('renders a peer that is not frozen each time, so a change to it changes the sum', async () => {
    await withConvergedFarm(12, async (inventory) => {
      const d = desiredMesh(inventory, new Map(inventory.nodes.map((n) => [n.name, fakePublicKey(n.name)])))[3]!;
      // a design made by hand: plain copies of the peers
      const peers = d.peers.map((p) => ({ ...p, allowedIps: [...p.allowedIps] }));
      const byHand = { ...d, peers };
      const first = renderedSha256(byHand);
      assert.equal(first, whole(byHand));
      peers[4]!.endpoint = '192.0.2.77:51820';
      const second = renderedSha256(byHand);
      assert.notEqual(second, first);
      assert.equal(second, whole(byHand));
      // a design holding both kinds in one chunk of 64
      const mixed = { ...d, peers: [...d.peers.slice(0, 5), peers[4]!, ...d.peers.slice(6)] };
      assert.equal(renderedSha256(mixed), whole(mixed));
    });
  });
});
