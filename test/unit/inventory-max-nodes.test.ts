/**
 * Q9: an inventory of 6,000 nodes (457 KB, under the 1 MiB input limit) ran `validate` for ~5 minutes up to 4.4 GB
 * and died "JavaScript heap out of memory"; 1,000 nodes took 33 s and 707 MB. A full mesh's checks walk every pair,
 * so an inventory above MAX_MESH_NODES is refused before them, with the file, line and field of `nodes:`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkInventoryText } from '../../src/inventory/load.js';
import { MAX_MESH_NODES } from '../../src/inventory/semantic.js';
import { farmInventory } from '../../scripts/bench/farm/inventory.js';
import { tempDir } from '../support/temp-dir.js';

/** One loopback port a node, as the farm gives them. */
const sshPorts = () => {
  let port = 20000;
  return () => ({ port: port++, identityFile: '/root/.ssh/id_ed25519' });
};

test(`an inventory of ${MAX_MESH_NODES + 1} nodes is refused at nodes: before any pair is looked at`, () => {
  const text = farmInventory(MAX_MESH_NODES + 1).yaml(sshPorts());
  const file = join(tempDir('meshctl-max-nodes-'), 'big.yaml');
  writeFileSync(file, text);
  const started = process.hrtime.bigint();
  const checked = checkInventoryText(text, file);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  assert.ok(!checked.ok, 'refused');
  const problems = checked.problems;
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0]!.path, 'nodes');
  assert.equal(problems[0]!.line, text.split('\n').findIndex((l) => /^nodes:/.test(l)) + 1);
  assert.match(problems[0]!.message, /^1001 nodes: meshctl builds a full mesh .*500,500 pairs\) and supports up to 1,000 nodes/);
  // informational: the refusal skips the pair checks (the old code spent 30+ s here at 1,000 nodes)
  process.stdout.write(`# refused ${MAX_MESH_NODES + 1} nodes in ${ms.toFixed(0)} ms\n`);
});

test(`${MAX_MESH_NODES} nodes, the farm's size, still load`, () => {
  const text = farmInventory(MAX_MESH_NODES).yaml(sshPorts());
  const checked = checkInventoryText(text, join(tempDir('meshctl-max-nodes-'), 'farm.yaml'));
  assert.ok(checked.ok, JSON.stringify(checked.ok ? [] : checked.problems.slice(0, 3)));
});
