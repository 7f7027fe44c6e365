/**
 * verify's collection reads each node's peer dump once per dump (issue 10: the pre part's dump was parsed for the
 * cold-start probe's first contacts and again for the checklist, which reads the same section of the same output;
 * the dump after the pings is a new one), and writes no route section per peer (one loop over the peers' list).
 * Counted here on 40 fake converged nodes: parsed dump lines and route sections made, not timings.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { collectVerify, firstScript } from '../../src/checks/collect.js';
import { routeSectionStats } from '../../src/checks/checklist-lean.js';
import { wgDumpParseStats } from '../../src/render/wgdump.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

describe("verify's collection parses each peer dump once (40 fake converged nodes)", () => {
  it('two dumps per node (before and after the pings), each line parsed once', async () => {
    const n = 40;
    await withConvergedFarm(n, async (inventory, farm) => {
      const before = wgDumpParseStats.lines;
      const collected = await collectVerify(inventory, farm.connections(), new Map(), { pathMtu: true });
      // every node has every other as a peer, in both dumps
      assert.equal(collected.checklists.size, n);
      for (const cl of collected.checklists.values()) assert.equal(cl.peers.length, n - 1);
      for (const after of collected.afterPing!.values()) assert.equal(after.peers.length, n - 1);
      // the pre part's dump (read for the checklist too) and the after-ping dump: 2 N (N-1) lines (3 N (N-1) before)
      assert.equal(wgDumpParseStats.lines - before, 2 * n * (n - 1));
    });
  });

  it('the checklist scripts write no route section per peer: each lists its peers once, for one loop', async () => {
    const n = 40;
    await withConvergedFarm(n, async (inventory) => {
      // a fresh address range, so that no section was made before in this process
      const fresh = {
        ...inventory,
        nodes: inventory.nodes.map((node, i) => ({ ...node, overlayIp: `100.99.${Math.floor(i / 200)}.${(i % 200) + 1}` })),
      };
      const before = routeSectionStats.made;
      const scripts = fresh.nodes.map((node) => firstScript(fresh, node.name));
      // every script looks each of its N-1 peers up, from its one list (src/checks/checklist-lean.ts routeLoop)
      for (const [i, script] of scripts.entries()) {
        const listed = /^mc_ips='([^']*)'$/m.exec(script)?.[1]?.split(' ');
        assert.deepEqual(
          listed,
          fresh.nodes.filter((_, j) => j !== i).map((peer) => peer.overlayIp),
        );
        assert.equal(script.match(/ mc_rg "\$mc_a"/g)?.length, 1);
      }
      assert.equal(routeSectionStats.made - before, 0);
    });
  });
});
