/**
 * The captured import probes of the lab's hand-built homelab mesh (test/fixtures/facts/handbuilt-*.txt, made by
 * test/lab/adopt.test.ts with MESHCTL_CAPTURE_FIXTURES=1), as `meshctl import` reads them: for the import tests.
 */
import { readFileSync } from 'node:fs';
import type { ImportedHost, ImportTarget } from '../../src/import/infer.js';
import { parseImportProbe } from '../../src/import/probe.js';
import { loadInventory } from '../../src/inventory/load.js';

export const homelab = loadInventory('inventories/homelab.yaml');
/** the hand-built mesh's nodes, in the order they are given to the import */
export const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
/** The import target of a homelab node: its name and SSH settings. */
export const targetOf = (name: string): ImportTarget => ({ name, ssh: homelab.nodes.find((n) => n.name === name)!.ssh });
/** One node's captured import probe, parsed. */
export const captured = (name: string): ImportedHost => ({
  target: targetOf(name),
  ...parseImportProbe(readFileSync(`test/fixtures/facts/handbuilt-${name}.txt`, 'utf8'), 'wg0', 51820),
});
