/**
 * What verify's collection holds per pair until it judges (issue 10: a heap snapshot after the collection at 200
 * fake nodes held ~10 objects per ordered pair, 12 million at 1,000 nodes, which every garbage collection walks).
 * Counted here on 40 fake converged nodes: the matrix's cells with their path MTU are one shared object, a peer's
 * AllowedIPs one array across every node that has the peer, and the wg-quick file's text is not kept once parsed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { collectVerify } from '../../src/checks/collect.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

describe("verify's collection holds one object per distinct value, not one per pair (40 fake converged nodes)", () => {
  it('cells, AllowedIPs lists and config texts', async () => {
    const n = 40;
    await withConvergedFarm(n, async (inventory, farm) => {
      const collected = await collectVerify(inventory, farm.connections(), new Map(), { pathMtu: true });
      // every pair answered alike, its path MTU the plain pass: one cell object (with its pmtu) for 1,560 cells
      const cells = Object.values(collected.matrix!.cells).flatMap((row) => Object.values(row));
      assert.equal(cells.length, n * (n - 1));
      assert.ok(cells.every((c) => c.ok && c.pmtu?.ok));
      assert.equal(new Set(cells).size, 1);
      // AllowedIPs: the live peers, the wg-quick file's peers and the peers after the pings, 3 x 1,560 lists: one per peer
      const lists = new Set<readonly string[]>();
      let read = 0;
      for (const cl of collected.checklists.values())
        for (const p of [...cl.peers, ...(cl.config?.peers ?? [])]) {
          lists.add(p.allowedIps);
          read++;
        }
      for (const after of collected.afterPing!.values())
        for (const p of after.peers) {
          lists.add(p.allowedIps);
          read++;
        }
      assert.equal(read, 3 * n * (n - 1));
      assert.equal(lists.size, n);
      // the file's text is parsed and let go
      assert.ok([...collected.checklists.values()].every((cl) => cl.config !== undefined && cl.configText === undefined));
    });
  });
});
