/**
 * verify's compact judging with `release` (the command's path) lets the cold-start directions go before it judges the
 * nodes (issue 10: one or two objects a pair, ~145 MB at 1,000 nodes, were held through the judging of every node),
 * and still lists their checks last and counts their passes as before.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateVerifyCompact, type Check } from '../../src/checks/verify.js';
import { collectVerify } from '../../src/checks/collect.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

describe('releasing judging and the cold-start directions', () => {
  it('judges the same, lists the cold-start checks last, and lets the directions go first', async () => {
    await withConvergedFarm(8, async (inventory, farm) => {
      const options = { pathMtu: true, deadlineSeconds: 7 };
      const kept = await collectVerify(inventory, farm.connections(), new Map(), options);
      const released = await collectVerify(inventory, farm.connections(), new Map(), options);
      // one direction that does not pass (its receiver's counters not read), so a cold-start check is listed
      for (const facts of [kept, released]) {
        const d = facts.coldStart!.directions[3]!;
        delete d.delta;
      }
      let seenWhenFirstNodeJudged: unknown = 'not asked';
      const firstNode = inventory.nodes[0]!.name;
      const checklists = released.checklists;
      const cl = checklists.get(firstNode)!;
      // the first node's checklist is read as the judging of nodes begins: the directions are gone by then
      Object.defineProperty(cl, 'service', {
        enumerable: true,
        configurable: true,
        get() {
          if (seenWhenFirstNodeJudged === 'not asked') seenWhenFirstNodeJudged = released.coldStart;
          return kept.checklists.get(firstNode)!.service;
        },
      });
      const want = evaluateVerifyCompact(kept);
      const got = evaluateVerifyCompact(released, { release: true });
      assert.deepEqual(got, want);
      const last = got.checks.at(-1) as Check;
      assert.deepEqual([last.id, last.status], ['cold-start', 'warn']);
      assert.equal(seenWhenFirstNodeJudged, undefined);
      assert.equal(released.coldStart, undefined);
    });
  });

  it('countPasses: the passing directions counted as the probe ends, the others kept; judged the same', async () => {
    await withConvergedFarm(8, async (inventory, farm) => {
      const options = { pathMtu: true, deadlineSeconds: 7 };
      const all = await collectVerify(inventory, farm.connections(), new Map(), options);
      const counted = await collectVerify(inventory, farm.connections(), new Map(), { ...options, countPasses: true });
      const n = inventory.nodes.length;
      assert.equal(all.coldStart!.directions.length, n * (n - 1));
      // a converged mesh: every direction passed, none is held
      assert.deepEqual(counted.coldStart!.directions, []);
      assert.deepEqual(counted.coldStart!.passed, new Map(inventory.nodes.map((node) => [node.name, n - 1])));
      assert.deepEqual(evaluateVerifyCompact(counted, { release: true }), evaluateVerifyCompact(all));
    });
  });
});
