/**
 * The verify report's spec (src/checks/report-schema.ts) is strict and in step with docs/verify-json.md: a field
 * added to the report but not to the spec, a missing field or a wrong type is a problem; every field the spec
 * knows is in the doc's example.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { buildReport } from '../../src/checks/report.js';
import { checkVerifyReport, verifyReportSpec } from '../../src/checks/report-schema.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import type { Spec } from '../../src/schema/spec.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';

/** The healthy fixtures' report, every cell listed (--all-checks), as JSON. */
function report() {
  const facts = factsFrom(healthyScenario());
  return JSON.parse(
    JSON.stringify(buildReport(facts.inventory, evaluateVerify(facts), facts.matrix, facts.unreachable, 1234, { allChecks: true })),
  );
}

/** Every field name the spec knows, at any depth. */
function fieldNames(spec: Spec, out = new Set<string>()): Set<string> {
  if (spec.type === 'object')
    for (const [name, field] of Object.entries(spec.fields)) {
      out.add(name);
      fieldNames(field, out);
    }
  if (spec.type === 'record') fieldNames(spec.value, out);
  if (spec.type === 'array') fieldNames(spec.items, out);
  return out;
}

describe('the verify report spec', () => {
  it('a field the spec does not know is a problem, at any depth', () => {
    const json = report();
    json.newField = 1;
    json.matrix.cells['ms-1']['wk-1'].jitterMs = 0.1;
    json.checks[0].severity = 'high';
    assert.deepEqual(checkVerifyReport(json), [
      'checks[0].severity: unknown field (allowed here: node, peer, id, status, message, evidence)',
      'matrix.cells.ms-1.wk-1.jitterMs: unknown field (allowed here: ok, asked, loss, transmitted, received, rttMs, error, pmtu)',
      'newField: unknown field (allowed here: version, inventory, ok, exitCode, summary, durationMs, nodes, checks, passed, matrix, timings, channels, paths, pathCounts)',
    ]);
  });

  it('missing fields, wrong types and values out of range are problems', () => {
    const json = report();
    delete json.summary.warn;
    json.exitCode = 2;
    json.checks[1].id = 'routes';
    json.matrix.cells['ms-1']['wk-1'].loss = 150;
    json.nodes[0].connected = 'yes';
    assert.deepEqual(checkVerifyReport(json), [
      'exitCode: expected 0, 1 or 3, got 2',
      'summary.warn: missing required field',
      'nodes[0].connected: expected true or false, got the string "yes"',
      'checks[1].id: expected connect, service, interface, address, mtu, listener, public-key, config-drift, file-modes, rp-filter, peers, allowed-ips, endpoint, keepalive, handshake, route, ping, path-mtu, firewall, cold-start or relay, got the string "routes"; did you mean route?',
      'matrix.cells.ms-1.wk-1.loss: 150 is out of range: expected a percentage from 0 to 100',
    ]);
  });

  it("the compact matrix's RTT rows: a number or null, nothing else", () => {
    const json = report();
    json.matrix.rttMs[0][1] = 'fast';
    json.matrix.rttMs[1][0] = null;
    json.matrix.cellsListed = 'some';
    assert.deepEqual(checkVerifyReport(json), [
      'matrix.rttMs[0][1]: expected milliseconds (0 or more) or null, got the string "fast"',
      'matrix.cellsListed: expected not-passing or all, got the string "some"',
    ]);
  });

  it('matrix may be null; free text may hold any characters', () => {
    const json = report();
    json.matrix = null;
    json.checks[0].evidence = ['  indented output\twith a tab\n'];
    assert.deepEqual(checkVerifyReport(json), []);
  });

  it('docs/verify-json.md shows every field of the spec', () => {
    const doc = readFileSync('docs/verify-json.md', 'utf8');
    for (const name of fieldNames(verifyReportSpec)) assert.match(doc, new RegExp(`"${name}":`), `the doc does not show "${name}"`);
  });
});
