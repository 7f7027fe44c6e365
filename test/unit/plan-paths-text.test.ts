/**
 * plan's text below the plan: the pairs that are not direct, with their `why`, and the count of each kind. It used to
 * build every pair's report (each direct pair's `why` sentence too: O(pairs) texts) to show those few; now it asks
 * src/topology/paths.ts notDirectPairs for them alone. Same text as before, on inventories/four-sites.yaml (two pairs
 * relayed) and an inventory whose every pair is direct.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { pathReports, renderPaths } from '../../src/checks/report.js';
import { plannedPathsText } from '../../src/commands/plan.js';
import { notDirectPairs, planPaths, type MeshPaths, type PairPath } from '../../src/topology/paths.js';

describe("plan's paths text", () => {
  it('is what every pair’s report rendered, for relayed pairs and for an all-direct mesh', () => {
    for (const file of ['inventories/four-sites.yaml', 'inventories/homelab.yaml']) {
      const inventory = loadInventory(file);
      assert.equal(plannedPathsText(inventory), renderPaths(pathReports(inventory, undefined), { measured: false }), file);
    }
    assert.match(
      plannedPathsText(loadInventory('inventories/four-sites.yaml')),
      /^Paths \(\d+ direct, 2 relayed, 0 none\)\n {2}b-1 <-> c-1 {2}relayed via p-1: /,
    );
    assert.equal(plannedPathsText(loadInventory('inventories/homelab.yaml')), '');
  });

  it('notDirectPairs makes no direct pair’s path: a `why` that may not be read is never read', () => {
    const inventory = loadInventory('inventories/four-sites.yaml');
    const planned = planPaths(inventory);
    const { pairs, counts } = notDirectPairs(planned);
    assert.deepEqual(
      pairs.map((p) => `${p.a}-${p.b}`),
      planned.pairs.filter((p) => p.path.kind !== 'direct').map((p) => `${p.a}-${p.b}`),
    );
    assert.equal(counts.direct + counts.relayed + counts.none, planned.pairs.length);
    // a MeshPaths made by hand whose direct paths throw when their `why` is read
    const direct = (): PairPath => ({
      kind: 'direct',
      get why(): string {
        throw new Error('a direct pair’s why was made');
      },
    });
    const byHand: MeshPaths = {
      pairs: [
        { a: 'x', b: 'y', path: direct() },
        { a: 'x', b: 'z', path: { kind: 'relayed', via: 'y', why: 'because', directExists: false } },
      ],
    };
    assert.deepEqual(notDirectPairs(byHand), { pairs: [byHand.pairs[1]], counts: { direct: 1, relayed: 1, none: 0 } });
  });
});
