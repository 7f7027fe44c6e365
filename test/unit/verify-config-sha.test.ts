/**
 * verify judges a node's wg-quick file by its sha256 first (issue 10: filtering and parsing ~6 lines a peer on our
 * side, then comparing them with the design, was a third of verify's CPU at 1,000 nodes). A file whose sha256, read
 * on the node (confmeta), is the sha256 of what meshctl renders for the design passes config-drift without being read;
 * any other file is compared as before. Checked here: on every fixture scenario the checks are those of comparing
 * every file, and the files that are the design's are not read; collectVerify's lazyConfig parses a file only when
 * read, into what the eager parse gives.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { evaluateVerify, evaluateVerifyCompact } from '../../src/checks/verify.js';
import { collectVerify } from '../../src/checks/collect.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';
import type { NodeChecklist } from '../../src/checks/probes.js';

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Replaces each checklist's `config` by a getter that counts its reads (the value unchanged). */
function countReads(checklists: Map<string, NodeChecklist>): { reads: Set<string> } {
  const seen = { reads: new Set<string>() };
  for (const [node, cl] of checklists) {
    const descriptor = Object.getOwnPropertyDescriptor(cl, 'config');
    if (!descriptor) continue;
    const read = descriptor.get ?? (() => descriptor.value);
    Object.defineProperty(cl, 'config', {
      enumerable: true,
      configurable: true,
      get() {
        seen.reads.add(node);
        return read.call(cl);
      },
    });
  }
  return seen;
}

describe('a wg-quick file is judged by its sha256 first', () => {
  for (const [name, make] of [['healthy', healthyScenario] as const, ...Object.entries(SCENARIOS)]) {
    it(`${name}: the checks of comparing every file; the design's own files not read`, () => {
      const compared = evaluateVerify(factsFrom(make()));
      const scenario = make();
      const facts = factsFrom(scenario);
      // each node's file with its sha256, as confmeta reads it on the node
      for (const [node, cl] of facts.checklists) {
        const file = scenario.nodes[node]?.config;
        if (file !== undefined) cl.configSha256 = sha256(file);
      }
      const designs = new Set(
        [...facts.checklists.keys()].filter((node) => scenario.nodes[node]?.config === renderWgQuickConfig(facts.desired.get(node)!)),
      );
      const { reads } = countReads(facts.checklists);
      assert.deepEqual(evaluateVerify(facts), compared);
      // the other files are read: their sha256 is not the design's
      assert.deepEqual(
        [...reads].sort(),
        [...facts.checklists.keys()].filter((node) => scenario.nodes[node]?.config !== undefined && !designs.has(node)).sort(),
      );
      if (name === 'healthy') assert.equal(designs.size, facts.checklists.size);
    });
  }

  it('a file whose sha256 is the design rendering passes even where its text reads otherwise (a text cut at 1 MiB)', () => {
    const facts = factsFrom(healthyScenario());
    const [node, cl] = [...facts.checklists][0]!;
    cl.configSha256 = sha256(renderWgQuickConfig(facts.desired.get(node)!));
    // the text that came back holds only the file's start (CONFIG_TEXT_MAX_BYTES): no peer after the cut
    cl.config = { ...cl.config!, peers: [] };
    const drift = evaluateVerify(facts).find((c) => c.node === node && c.id === 'config-drift')!;
    assert.deepEqual([drift.status, drift.message, drift.evidence], ['pass', 'wg0.conf matches the inventory', []]);
  });
});

describe("collectVerify's lazyConfig", () => {
  it('parses a file only when read, into what the eager parse gives; converged nodes are judged without reading a file', async () => {
    await withConvergedFarm(12, async (inventory, farm) => {
      const options = { pathMtu: true, deadlineSeconds: 7 };
      const eager = await collectVerify(inventory, farm.connections(), new Map(), options);
      const lazy = await collectVerify(inventory, farm.connections(), new Map(), { ...options, lazyConfig: true });
      // its files not parsed on arrival: each a getter until read
      const unparsed = [...lazy.checklists].filter(([, cl]) => Object.getOwnPropertyDescriptor(cl, 'config')?.get).length;
      assert.equal(unparsed, inventory.nodes.length);
      const { reads } = countReads(lazy.checklists);
      const judged = evaluateVerifyCompact(lazy);
      assert.deepEqual(judged, evaluateVerifyCompact(eager));
      assert.deepEqual([...reads], []);
      assert.equal(judged.checks.filter((c) => c.status !== 'pass').length, 0);
      for (const node of inventory.nodes) {
        assert.deepEqual(lazy.checklists.get(node.name)!.config, eager.checklists.get(node.name)!.config);
      }
      assert.equal(reads.size, inventory.nodes.length);
    });
  });
});
