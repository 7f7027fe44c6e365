/**
 * relay: auto at the gate (src/engine/fallback.ts): which failed pairs move to a relay, how the plan and the configs
 * follow them, and the local state that keeps them until their direct path works again.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadInventory } from '../../src/inventory/load.js';
import { failedDirectPairs, fallbackDirections, withFallbackRelays } from '../../src/engine/fallback.js';
import { pathBetween, planPaths } from '../../src/topology/paths.js';
import { desiredMesh } from '../../src/topology/desired.js';
import type { Matrix, MatrixCell } from '../../src/checks/ping-matrix.js';
import { parseState, updateState, emptyState } from '../../src/state/state.js';
import { inventoryWithFallbacks } from '../../src/state/record.js';
import { withStateFallbacks, renderSummary } from '../../src/commands/validate.js';
import { tempDir } from '../support/temp-dir.js';

const FILE = 'inventories/four-sites.yaml';
const inventory = loadInventory(FILE);
const names = inventory.nodes.map((n) => n.name);

/** A matrix where every cell answers except the pairs listed (both directions). */
function matrixFailing(...pairs: Array<[string, string]>): Matrix {
  const bad = new Set(pairs.flatMap(([a, b]) => [`${a}>${b}`, `${b}>${a}`]));
  const cell = (ok: boolean): MatrixCell => ({ ok, loss: ok ? 0 : 100, transmitted: 3, received: ok ? 3 : 0 });
  return {
    nodes: names,
    cells: Object.fromEntries(
      names.map((a) => [a, Object.fromEntries(names.filter((b) => b !== a).map((b) => [b, cell(!bad.has(`${a}>${b}`))]))]),
    ),
  };
}

const keys = new Map(names.map((n, i) => [n, `${String.fromCharCode(65 + i).repeat(42)}A=`]));

describe('relay: auto at the gate', () => {
  it('a direct pair whose ping failed moves to a relay; a relayed pair or one that answered does not', () => {
    assert.equal(pathBetween(planPaths(inventory), 'a-1', 'p-2')?.kind, 'direct');
    assert.deepEqual(failedDirectPairs(inventory, matrixFailing(['a-1', 'p-2'])), ['a-1 p-2']);
    // b-1 x c-1 is relayed already (no direct path): a failure there is the relay's, not a fallback's
    assert.deepEqual(failedDirectPairs(inventory, matrixFailing(['b-1', 'c-1'])), []);
    assert.deepEqual(failedDirectPairs(inventory, matrixFailing()), []);
  });

  it('relay: never on either end keeps the pair direct (it fails instead)', () => {
    const strict = loadInventory(FILE, {
      text: readFileSync(FILE, 'utf8').replace('  a-1:\n    site: a\n', '  a-1:\n    site: a\n    relay: never\n'),
    });
    assert.deepEqual(failedDirectPairs(strict, matrixFailing(['a-1', 'p-2'])), []);
  });

  it('the fallback pair is planned relayed via the other public node, and the configs route it there', () => {
    const fallen = withFallbackRelays(inventory, ['a-1 p-2']);
    const path = pathBetween(planPaths(fallen), 'a-1', 'p-2');
    assert.equal(path?.kind, 'relayed');
    assert.ok(path?.kind === 'relayed' && path.via === 'p-1', JSON.stringify(path));
    assert.match(path!.why, /direct handshake failed at the gate/);
    const a1 = desiredMesh(fallen, keys).find((d) => d.node === 'a-1')!;
    assert.equal(
      a1.peers.find((p) => p.name === 'p-2'),
      undefined,
      'no direct peer',
    );
    assert.ok(a1.peers.find((p) => p.name === 'p-1')!.allowedIps.includes('172.27.40.42/32'));
    // and back: without the pair, the plan is direct again
    assert.equal(pathBetween(planPaths(withFallbackRelays(fallen, [])), 'a-1', 'p-2')?.kind, 'direct');
  });

  it("a fallback pair moves no other pair to another relay: only its own ends' and its relay's configs change", () => {
    const fallen = withFallbackRelays(inventory, ['a-1 p-2']);
    const before = planPaths(inventory).pairs;
    const after = planPaths(fallen).pairs;
    const relayed = before.filter((p) => p.path.kind === 'relayed');
    assert.ok(relayed.length >= 2, 'four-sites has relayed pairs of its own');
    for (const [i, pair] of before.entries()) {
      if (pair.a === 'a-1' && pair.b === 'p-2') continue;
      assert.deepEqual(after[i], pair, `${pair.a} <-> ${pair.b}`);
    }
    // the configs: every node but the pair's ends and its relay renders as without the fallback
    const changed = new Set(['a-1', 'p-2', 'p-1']);
    const plain = desiredMesh(inventory, keys);
    const moved = desiredMesh(fallen, keys);
    for (const d of plain)
      if (!changed.has(d.node))
        assert.deepEqual(
          moved.find((m) => m.node === d.node),
          d,
          d.node,
        );
  });

  it('the directions probed before moving back: each side that dials the other, at its endpoint', () => {
    const dirs = fallbackDirections(inventory, ['a-1 p-2']).map((d) => `${d.from}>${d.to} ${d.endpoint.host}:${d.endpoint.port}`);
    assert.deepEqual(dirs, ['a-1>p-2 198.51.100.12:51820', 'p-2>a-1 203.0.113.10:41001']);
  });

  it('the local state keeps the pairs (dropping malformed ones) and gives them to the next run', () => {
    const state = updateState(
      emptyState('wg0'),
      inventory,
      { publicKeys: new Map() },
      { now: new Date(0), complete: false, fallbackRelays: ['a-1 p-2'] },
    );
    assert.deepEqual(state.fallbackRelays, ['a-1 p-2']);
    assert.deepEqual(parseState(JSON.stringify({ ...state, fallbackRelays: ['a-1 p-2', 42, 'nospace'] }), 'wg0').fallbackRelays, [
      'a-1 p-2',
    ]);
    const cleared = updateState(state, inventory, { publicKeys: new Map() }, { now: new Date(0), complete: false, fallbackRelays: [] });
    assert.equal(cleared.fallbackRelays, undefined);
    const dir = tempDir('meshctl-fallback-');
    const file = join(dir, 'mesh.yaml');
    writeFileSync(file, readFileSync(FILE, 'utf8'));
    writeFileSync(`${file}.state.json`, JSON.stringify({ ...state, fallbackRelays: ['a-1 p-2', 'a-1 gone-1'] }));
    assert.deepEqual(inventoryWithFallbacks(loadInventory(file)).mesh.fallbackRelays, ['a-1 p-2']);
    // validate's pair list shows the pair as the nodes run it: relayed, and why (Q4-7: it said direct)
    const text = renderSummary(withStateFallbacks(file));
    assert.match(text, /a-1 <-> p-2 {2}relayed via p-1: .*their direct handshake failed at the gate of an earlier up/);
  });
});
