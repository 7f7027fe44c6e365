import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { evaluateVerify } from '../../src/checks/verify.js';
import { buildReport } from '../../src/checks/report.js';
import { checkVerifyReport } from '../../src/checks/report-schema.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

function reportOf(scenario = healthyScenario(), unreachable = new Map<string, string>()) {
  const facts = factsFrom(scenario);
  for (const [n, why] of unreachable) {
    facts.checklists.delete(n);
    facts.unreachable.set(n, why);
  }
  return buildReport(facts.inventory, evaluateVerify(facts), facts.matrix, facts.unreachable, 1234);
}

test('verify --json of a healthy mesh matches the documented shape', () => {
  const json = JSON.parse(JSON.stringify(reportOf()));
  assert.deepEqual(checkVerifyReport(json), []);
  assert.equal(json.exitCode, 0);
  assert.equal(json.ok, true);
  // version 3: a healthy mesh lists no cell, only the RTTs (every cell with --all-checks)
  assert.equal(json.version, 3);
  assert.deepEqual(json.matrix.cells, {});
  assert.equal(json.matrix.cellsListed, 'not-passing');
  assert.equal(json.matrix.rttMs.length, json.matrix.nodes.length);
  assert.equal(json.matrix.rttMs[0][0], null);
  const facts = factsFrom(healthyScenario());
  const all = JSON.parse(
    JSON.stringify(buildReport(facts.inventory, evaluateVerify(facts), facts.matrix, facts.unreachable, 1234, { allChecks: true })),
  );
  assert.deepEqual(checkVerifyReport(all), []);
  assert.equal(all.matrix.cellsListed, 'all');
  assert.equal(all.matrix.cells['ms-1']['wk-1'].pmtu.expected, 1392);
  assert.equal(all.matrix.rttMs[0][1], all.matrix.cells['ms-1']['wk-1'].rttMs);
});

test('verify --json of every broken state matches the shape and exits 1', () => {
  for (const [name, make] of Object.entries(SCENARIOS)) {
    const json = JSON.parse(JSON.stringify(reportOf(make())));
    assert.deepEqual(checkVerifyReport(json), []);
    assert.equal(json.exitCode, 1, name);
    assert.equal(json.ok, false, name);
  }
});

test('an unreachable node gives exit code 3 and an error on the node', () => {
  const json = JSON.parse(JSON.stringify(reportOf(healthyScenario(), new Map([['wk-2', 'connection refused']]))));
  assert.deepEqual(checkVerifyReport(json), []);
  assert.equal(json.exitCode, 3);
  assert.deepEqual(
    json.nodes.find((n: { name: string }) => n.name === 'wk-2'),
    { name: 'wk-2', site: 'home', overlayIp: '172.27.15.13', connected: false, error: 'connection refused' },
  );
});

test('the doc lists every check id', () => {
  const doc = readFileSync(new URL('../../docs/verify-json.md', import.meta.url), 'utf8');
  const json = reportOf();
  for (const id of new Set(json.checks.map((c) => c.id))) assert.match(doc, new RegExp(`\\| \`${id}\` \\|`));
});

test('--strict: a warning alone fails the run (exit 1, ok false); without it the run passes', () => {
  const s = healthyScenario();
  // an edge peer whose last handshake is 10 minutes old: a warning, while the pings pass
  for (const p of s.nodes['ctb-edge-1']!.peers) p.latestHandshake -= 600;
  const facts = factsFrom(s);
  const checks = evaluateVerify(facts);
  assert.ok(checks.some((c) => c.status === 'warn') && !checks.some((c) => c.status === 'fail'), 'the scenario warns and fails nothing');
  const lenient = buildReport(facts.inventory, checks, facts.matrix, facts.unreachable, 1);
  const strict = buildReport(facts.inventory, checks, facts.matrix, facts.unreachable, 1, { strict: true });
  assert.deepEqual([lenient.exitCode, lenient.ok], [0, true]);
  assert.deepEqual([strict.exitCode, strict.ok], [1, false]);
  assert.deepEqual(checkVerifyReport(JSON.parse(JSON.stringify(strict))), []);
});
