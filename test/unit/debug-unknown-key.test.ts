/**
 * Q9 F-debug-placeholder: with wk-1 unreachable (its host key changed), `debug --pair ms-1,wk-1` named a
 * WRONG-PUBLIC-KEY on ms-1 and told the operator to replace wk-1's real key with the stand-in the collection made up
 * for a node whose key it could not learn (../../src/checks/collect.ts placeholderKey). A peer entry is now never
 * judged against a stand-in, and debug takes an unreached node's key from the local state first, as verify does.
 * The evidence is the homelab fixture's (test/fixtures/probes/homelab.ts), with the design made as the collection
 * makes it (publicKeysFrom: the stand-in for the node without a checklist).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyPair, type PairEvidence } from '../../src/debug/classify.js';
import { pairEvidence } from '../../src/debug/run.js';
import { publicKeysFrom, type Collected } from '../../src/checks/collect.js';
import { withStateKeys } from '../../src/checks/verify.js';
import { desiredMesh } from '../../src/topology/desired.js';
import { factsFrom, healthyScenario, KEYS } from '../fixtures/probes/homelab.js';

const causesOf = (e: PairEvidence) => classifyPair(e).map((d) => `${d.cause}${d.node ? `@${d.node}` : ''}`);

/** The homelab facts with `node` unreached, the design and keys made as collectVerify makes them. */
function unreached(node: string): Collected {
  const facts = factsFrom(healthyScenario()) as Collected;
  facts.checklists.delete(node);
  facts.afterPing?.delete(node);
  facts.unreachable.set(node, `root@${node}:22: HOST KEY CHANGED: the host offers ED25519 SHA256:abc, but ...`);
  const { keys, unknown } = publicKeysFrom(facts.inventory, facts.checklists);
  return {
    ...facts,
    publicKeys: keys,
    unknownKeys: unknown,
    desired: new Map(desiredMesh(facts.inventory, keys).map((d) => [d.node, d])),
  };
}

test("an unreached node's stand-in key: its peers' entries for it are not judged, no made-up key is advised", () => {
  const collected = unreached('wk-1');
  assert.equal(collected.unknownKeys?.size, 1);
  const e = pairEvidence(collected, 'ms-1', 'wk-1');
  assert.deepEqual(causesOf(e), ['node-unreachable@wk-1']);
  const stand = [...collected.unknownKeys!][0]!;
  for (const d of classifyPair(e)) assert.ok(!`${d.explanation} ${d.fix}`.includes(stand), d.fix);
});

test("with the local state's key the peer entries are judged again: a wrong key on ms-1 is still found", () => {
  const state = new Map(Object.entries(KEYS));
  const collected = withStateKeys(unreached('wk-1'), () => state, desiredMesh);
  assert.deepEqual([...(collected.keysFromState ?? [])], ['wk-1']);
  assert.equal(collected.desired.get('ms-1')!.peers.find((p) => p.name === 'wk-1')!.publicKey, KEYS['wk-1']);
  assert.deepEqual(causesOf(pairEvidence(collected, 'ms-1', 'wk-1')), ['node-unreachable@wk-1']);
  // the state says wk-1 has another key than the one ms-1 holds: that entry is wrong, and the state's key is advised
  const other = 'kh17HIvqAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAACwFg=';
  const moved = withStateKeys(unreached('wk-1'), () => new Map([...state, ['wk-1', other]]), desiredMesh);
  const found = classifyPair(pairEvidence(moved, 'ms-1', 'wk-1'));
  const wrong = found.find((d) => d.cause === 'wrong-public-key');
  assert.ok(wrong, found.map((d) => d.cause).join(', '));
  assert.equal(wrong.node, 'ms-1');
  assert.match(wrong.fix, new RegExp(`PublicKey = ${other.replace(/[+/]/g, (c) => `\\${c}`)}`));
});
