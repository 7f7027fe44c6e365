/**
 * verify's checks of a large mesh: the pairs' checks are N x (N-1) each (62,250 cold-start directions at 250
 * nodes), and evaluateVerify appended them with `push(...checks)`, one stack argument each: the farm's verify at 250
 * nodes died there (RangeError: Maximum call stack size exceeded). 200,000 directions here (a 448-node mesh).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { planColdStart } from '../../src/checks/cold-start.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { renderChecks } from '../../src/checks/report.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';

describe('verify: checks of a mesh of hundreds of nodes', () => {
  it('evaluates 200,000 cold-start directions without overflowing the stack', () => {
    const inventory = loadInventory('inventories/homelab.yaml');
    const facts = factsFrom(healthyScenario());
    const dirs = planColdStart(inventory, new Set(inventory.nodes.map((n) => n.name))).slots.flat();
    const directions = Array.from({ length: 200_000 }, (_, i) => ({
      ...dirs[i % dirs.length]!,
      sent: 16,
      delta: { inDatagrams: 16, noPorts: 0 },
    }));
    facts.coldStart = { roundTrips: 1, ms: 1, directions };
    const checks = evaluateVerify(facts);
    assert.equal(checks.filter((c) => c.id === 'cold-start').length, 200_000);
  });

  it('prints 200,000 warnings as text without overflowing the stack (the column widths)', () => {
    const checks = Array.from({ length: 200_000 }, (_, i) => ({
      node: `n${i % 500}`,
      peer: `p${i}`,
      id: 'cold-start' as const,
      status: 'warn' as const,
      message: 'could not test',
      evidence: [],
    }));
    const text = renderChecks(checks, { color: false });
    assert.equal(text.split('\n').filter((l) => l.includes('WARN')).length, 200_000);
  });
});
