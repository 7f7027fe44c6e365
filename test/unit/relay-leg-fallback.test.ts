/**
 * A relay leg that falls back (Q4's finding 1): when the direct pair between a node and the relay of one of its
 * relayed pairs fails at the gate, relay: auto must not keep the relayed pair on that relay (the node has no [Peer]
 * for the relay any more), and no designed config may leave a node without a route to another.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { failedDirectPairs, withFallbackRelays } from '../../src/engine/fallback.js';
import { pathBetween, planPaths, type MeshPaths } from '../../src/topology/paths.js';
import { classifyPair } from '../../src/debug/classify.js';
import { desiredMesh, unroutedNodes, UnroutedDesignError } from '../../src/topology/desired.js';
import type { Inventory } from '../../src/inventory/types.js';
import { pairKey } from '../../src/inventory/types.js';
import { relayLegs } from '../../src/debug/run.js';

const inventory = loadInventory('inventories/four-sites.yaml');
const names = inventory.nodes.map((n) => n.name);
const keys = new Map(names.map((n, i) => [n, `${String.fromCharCode(65 + i).repeat(42)}A=`]));

/** Every node's designed config routes every other node's /32 (the full-mesh invariant), as [node, unrouted] lists. */
const gaps = (inv: Inventory) =>
  desiredMesh(inv, keys)
    .map((config) => [config.node, unroutedNodes(inv, config)] as const)
    .filter(([, missing]) => missing.length > 0);

describe('a relay leg that fell back', () => {
  it('four-sites relays b-2 <-> c-1 via p-2 (the case Q4 found)', () => {
    const path = pathBetween(planPaths(inventory), 'b-2', 'c-1');
    assert.ok(path?.kind === 'relayed' && path.via === 'p-2', JSON.stringify(path));
  });

  it('moves the pairs relayed through that leg to a relay whose legs work (b-2 <-> c-1 via p-1, not p-2)', () => {
    // the gate: b-2 <-> p-2 dropped, so b-2 <-> c-1 (via p-2) fails too; only the direct pair is a fallback
    assert.deepEqual(failedDirectPairs(inventory, matrixFailing(['b-2', 'p-2'], ['b-2', 'c-1'])), ['b-2 p-2']);
    const fallen = withFallbackRelays(inventory, ['b-2 p-2']);
    const paths = planPaths(fallen);
    const leg = pathBetween(paths, 'b-2', 'p-2');
    assert.ok(leg?.kind === 'relayed' && leg.via === 'p-1', JSON.stringify(leg));
    const pair = pathBetween(paths, 'b-2', 'c-1');
    assert.ok(pair?.kind === 'relayed' && pair.via === 'p-1', JSON.stringify(pair));
    // b-2's config: its peer p-1 carries c-1's /32 (Q4: b-2's wg0.conf had no AllowedIPs for c-1 at all)
    const b2 = desiredMesh(fallen, keys).find((d) => d.node === 'b-2')!;
    const c1 = `${inventory.nodes.find((n) => n.name === 'c-1')!.overlayIp}/32`;
    assert.ok(b2.peers.find((p) => p.name === 'p-1')!.allowedIps.includes(c1), JSON.stringify(b2.peers));
    assert.deepEqual(gaps(fallen), []);
  });

  it('pairs that fail together are judged together: only those the joint plan relays fall back (RV3 F8)', () => {
    // b-2 lost UDP to both public nodes: each leg alone could go via the other public node, together neither can
    assert.deepEqual(failedDirectPairs(inventory, matrixFailing(['b-2', 'p-1'], ['b-2', 'p-2'])), []);
    // two failures that do not take each other's relay: both fall back, and the joint plan relays both (not vacuous)
    const both = failedDirectPairs(inventory, matrixFailing(['a-1', 'p-2'], ['b-2', 'p-2']));
    assert.deepEqual(both, ['a-1 p-2', 'b-2 p-2']);
    const paths = planPaths(withFallbackRelays(inventory, both));
    for (const pair of both) assert.equal(pathBetween(paths, ...(pair.split(' ') as [string, string]))?.kind, 'relayed', pair);
  });

  it('every designed config routes every other node, whichever one pair (or two) fell back', () => {
    const direct = planPaths(inventory).pairs.filter((p) => p.path.kind === 'direct');
    const singles = direct.map((p) => [pairKey(p.a, p.b)]);
    // two legs of one node to both public relays: it has no relay left for its relayed pairs
    const doubles = names.filter((n) => !n.startsWith('p-')).map((n) => [pairKey(n, 'p-1'), pairKey(n, 'p-2')]);
    for (const pairs of [...singles, ...doubles]) {
      const fallen = withFallbackRelays(inventory, pairs);
      let found: ReturnType<typeof gaps> = [];
      try {
        found = gaps(fallen);
      } catch (error) {
        // a node with no usable relay left: the design refuses the pair (none), it never renders a gap
        assert.fail(`${pairs.join(', ')}: ${String(error)}`);
      }
      assert.deepEqual(found, [], pairs.join(', '));
    }
  });

  it('the invariant check itself finds a node dropped from a config, and its error names the gap', () => {
    const b2 = desiredMesh(inventory, keys).find((d) => d.node === 'b-2')!;
    const p2 = b2.peers.find((p) => p.name === 'p-2')!;
    assert.ok(p2.allowedIps.length > 1, 'p-2 carries relayed /32s for b-2');
    const dropped = { node: 'b-2', peers: b2.peers.filter((p) => p.name !== 'p-2') };
    assert.deepEqual(unroutedNodes(inventory, dropped), ['c-1', 'p-2'].filter((n) => names.includes(n)).sort(byInventory));
    assert.ok(new UnroutedDesignError('b-2', ['c-1']).message.includes('no route (AllowedIPs) to c-1'));
  });
});

describe('debug on a pair whose relay leg is itself relayed', () => {
  // the plan Q4's run applied (made by hand: the planner no longer makes it): b-2 <-> c-1 via p-2 while the leg
  // b-2 <-> p-2 is itself relayed via p-1
  const q4Plan: MeshPaths = {
    pairs: planPaths(inventory).pairs.map((p) =>
      p.a === 'b-2' && p.b === 'p-2' ? { ...p, path: { kind: 'relayed', via: 'p-1', why: 'fell back', directExists: true } } : p,
    ),
  };

  it('expands the relayed leg again, down to direct tunnels, each once', () => {
    assert.ok(pathBetween(q4Plan, 'b-2', 'c-1')?.kind === 'relayed');
    assert.deepEqual(relayLegs(inventory, [['b-2', 'c-1']], q4Plan), [
      ['b-2', 'p-1'],
      ['p-1', 'p-2'],
      ['p-2', 'c-1'],
    ]);
    // a loop in a hand-made plan ends (a relay already on the way is not expanded again)
    const loop: MeshPaths = {
      pairs: q4Plan.pairs.map((p) =>
        p.a === 'p-1' && p.b === 'p-2' ? { ...p, path: { kind: 'relayed', via: 'b-2', why: 'x', directExists: true } } : p,
      ),
    };
    assert.ok(relayLegs(inventory, [['b-2', 'c-1']], loop).length > 0);
  });

  it('classifying a pair with no designed tunnel says it cannot judge it, instead of crashing', () => {
    const fallen = withFallbackRelays(inventory, ['b-2 p-2']);
    const desired = new Map(desiredMesh(fallen, keys).map((d) => [d.node, d]));
    const found = classifyPair({ inventory: fallen, desired, sender: 'b-2', receiver: 'p-2', sides: {} });
    assert.equal(found.length, 1);
    assert.equal(found[0]!.cause, 'not-designed');
    assert.match(found[0]!.explanation, /b-2 has no \[Peer\] for p-2 and p-2 has no \[Peer\] for b-2/);
  });
});

const byInventory = (x: string, y: string) => names.indexOf(x) - names.indexOf(y);

function matrixFailing(...pairs: Array<[string, string]>) {
  const bad = new Set(pairs.flatMap(([a, b]) => [`${a}>${b}`, `${b}>${a}`]));
  const cell = (ok: boolean) => ({ ok, loss: ok ? 0 : 100, transmitted: 3, received: ok ? 3 : 0 });
  return {
    nodes: names,
    cells: Object.fromEntries(
      names.map((a) => [a, Object.fromEntries(names.filter((b) => b !== a).map((b) => [b, cell(!bad.has(`${a}>${b}`))]))]),
    ),
  };
}
