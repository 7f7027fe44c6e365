import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderDot, writeGraph, dotQuote } from '../../src/graph/dot.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { buildReport } from '../../src/checks/report.js';
import { factsFrom, healthyScenario, type Scenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';
import { tempDir } from '../support/temp-dir.js';

function reportOf(s: Scenario) {
  const facts = factsFrom(s);
  return { inventory: facts.inventory, report: buildReport(facts.inventory, evaluateVerify(facts), facts.matrix, facts.unreachable, 1000) };
}

test('DOT of the healthy lab: clusters by site, router with its forwards, six green edges', () => {
  const { inventory, report } = reportOf(healthyScenario());
  const dot = renderDot(inventory, report);
  assert.match(dot, /^graph mesh \{/);
  assert.match(dot, /subgraph "cluster_home"/);
  assert.match(dot, /subgraph "cluster_edge"/);
  assert.match(
    dot,
    /"router:home" \[label="router 192\.168\.15\.1\\npublic 203\.0\.113\.10\\nforwards:\\n203\.0\.113\.10:51821 → ms-1 \(192\.168\.15\.2:51820\)/,
  );
  const edges = dot.split('\n').filter((l) => / -- /.test(l) && !/router:/.test(l));
  assert.equal(edges.length, 6);
  assert.ok(edges.every((l) => /color="#2e9e44"/.test(l)));
  assert.match(dot, /"ms-1" -- "ctb-edge-1" \[color="#2e9e44".*label="0\.6 ms"/);
});

test('DOT of case 1: the edge <-> ms-1 edge is red and says why, the others stay green', () => {
  const { inventory, report } = reportOf(SCENARIOS['forward-misdirected']!());
  const dot = renderDot(inventory, report);
  const line = dot.split('\n').find((l) => l.includes('"ms-1" -- "ctb-edge-1"'))!;
  assert.match(line, /color="#d62828"/);
  assert.match(line, /FAIL: handshake/);
  assert.ok(dot.split('\n').filter((l) => / -- /.test(l) && /#2e9e44/.test(l)).length === 5);
});

test('warnings are orange (MTU black hole)', () => {
  const { inventory, report } = reportOf(SCENARIOS.mtu!());
  // path-mtu is a failure: red; a stale handshake alone would be orange
  assert.match(renderDot(inventory, report), /"ms-1" -- "ctb-edge-1" \[color="#d62828".*path-mtu/);
  const s = healthyScenario();
  s.after = { 'wk-1': s.nodes['wk-1']!.peers.map((p) => ({ ...p, latestHandshake: 1795376844 - 900 })) };
  const r2 = reportOf(s);
  assert.match(renderDot(r2.inventory, r2.report), /"wk-1" -- "wk-2" \[color="#f08c00"/);
});

test('dotQuote escapes quotes, backslashes and newlines', () => {
  assert.equal(dotQuote('a "b"\\c\nd'), '"a \\"b\\"\\\\c\\nd"');
});

test('writeGraph: .svg through dot with the .dot beside it; DOT text is valid for Graphviz', async (t) => {
  try {
    execFileSync('dot', ['-V'], { stdio: 'ignore' });
  } catch {
    t.skip('Graphviz dot is not installed');
    return;
  }
  const dir = tempDir('meshctl-graph-');
  const { inventory, report } = reportOf(SCENARIOS['forward-misdirected']!());
  const written = await writeGraph(join(dir, 'mesh.svg'), inventory, report);
  assert.deepEqual(written, [join(dir, 'mesh.svg'), join(dir, 'mesh.dot')]);
  assert.match(readFileSync(join(dir, 'mesh.svg'), 'utf8'), /<svg/);
  assert.ok(existsSync(join(dir, 'mesh.dot')));
});

test('writeGraph never writes through a symlink planted at the .svg or the .dot beside it (RV6: the F-state-symlink class)', async (t) => {
  try {
    execFileSync('dot', ['-V'], { stdio: 'ignore' });
  } catch {
    t.skip('Graphviz dot is not installed');
    return;
  }
  const dir = tempDir('meshctl-graph-link-');
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'keep\n');
  symlinkSync(victim, join(dir, 'mesh.dot'));
  symlinkSync(victim, join(dir, 'mesh.svg'));
  const { inventory, report } = reportOf(SCENARIOS['forward-misdirected']!());
  await writeGraph(join(dir, 'mesh.svg'), inventory, report);
  assert.equal(readFileSync(victim, 'utf8'), 'keep\n');
  assert.ok(!lstatSync(join(dir, 'mesh.svg')).isSymbolicLink(), 'the link is replaced by the graph');
  assert.match(readFileSync(join(dir, 'mesh.svg'), 'utf8'), /<svg/);
  assert.match(readFileSync(join(dir, 'mesh.dot'), 'utf8'), /^graph /);
});
