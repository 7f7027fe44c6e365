/**
 * `meshctl validate`'s pair table (pairSummaries) takes each pair's path from planPaths without searching the whole
 * pair list once per pair (N^4 at N nodes: 100 nodes cost ~180 ms of CPU). Counted, not timed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pairSummaries, renderSummary } from '../../src/commands/validate.js';
import { checkInventoryText } from '../../src/inventory/load.js';
import { planPaths } from '../../src/topology/paths.js';
import { benchInventory } from '../../scripts/bench/inventory.js';
import { farmInventory } from '../../scripts/bench/farm/inventory.js';

describe('pairSummaries', () => {
  const result = checkInventoryText(benchInventory(32), 'bench.yaml');
  assert.ok(result.ok);
  const inventory = result.inventory;

  it("gives every pair planPaths' path, without a search of the pair list per pair", () => {
    const find = Array.prototype.find;
    let finds = 0;
    Array.prototype.find = function (this: unknown[], ...args: Parameters<typeof find>) {
      finds++;
      return find.apply(this, args);
    } as typeof find;
    let pairs: ReturnType<typeof pairSummaries>;
    try {
      pairs = pairSummaries(inventory);
    } finally {
      Array.prototype.find = find;
    }
    assert.equal(pairs.length, (32 * 31) / 2);
    // the old table searched the pair list once per pair: 496 searches here
    assert.ok(finds < pairs.length, `${finds} Array.find calls for ${pairs.length} pairs`);
    const planned = planPaths(inventory).pairs;
    assert.equal(planned.length, pairs.length);
    for (const plan of planned) {
      const pair = pairs.find((p) => p.a === plan.a && p.b === plan.b);
      assert.deepEqual(pair?.path, plan.path, `${plan.a} <-> ${plan.b}`);
    }
  });

  it('renders the summary of a 1,000-node inventory (499,500 pairs) without overflowing the stack', () => {
    let port = 3000;
    const big = checkInventoryText(
      farmInventory(1000).yaml(() => ({ port: port++, identityFile: '/nonexistent/id' })),
      'farm.yaml',
    );
    assert.ok(big.ok, JSON.stringify(big.ok ? '' : big.problems.slice(0, 3)));
    const text = renderSummary(big.inventory);
    assert.match(text, /who dials whom \(499500 pairs\)/);
  });
});
