/**
 * verify's compact judging (issue 10): the passing per-peer and per-pair checks of a healthy mesh, 9 N (N-1) of them,
 * are counted without being made (no message, no evidence). Checked here: it lists and counts exactly what judging
 * every check and dropping the passes did, on every fixture scenario; and on fake converged nodes it reads none of the
 * facts that only a passing check's message or evidence shows.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateVerify, evaluateVerifyCompact, type Check, type VerifyFacts } from '../../src/checks/verify.js';
import { readFileSync } from 'node:fs';
import { collectVerify } from '../../src/checks/collect.js';
import { planColdStart } from '../../src/checks/cold-start.js';
import { FACTS, readFact, splitSections } from '../../src/facts/definitions.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';
import { withConvergedFarm } from '../fixtures/probes/converged-farm.js';

/** What the compact judging must give: every check but the passing per-peer ones, and those counted per node and id. */
function expected(all: Check[]) {
  const counts = new Map<string, number>();
  for (const c of all)
    if (c.peer !== undefined && c.status === 'pass') counts.set(`${c.node} ${c.id}`, (counts.get(`${c.node} ${c.id}`) ?? 0) + 1);
  return { checks: all.filter((c) => c.peer === undefined || c.status !== 'pass'), counts };
}

describe('compact judging lists and counts what judging every check did', () => {
  for (const [name, make] of [['healthy', healthyScenario] as const, ...Object.entries(SCENARIOS)]) {
    it(name, () => {
      const facts = factsFrom(make());
      const want = expected(evaluateVerify(facts));
      const got = evaluateVerifyCompact(facts);
      assert.deepEqual(got.checks, want.checks);
      assert.deepEqual(new Map(got.passed.map((g) => [`${g.node} ${g.id}`, g.peers])), want.counts);
      // letting each node's facts go once judged (verify's command path) judges the same, and leaves none held
      const released = factsFrom(make());
      assert.deepEqual(evaluateVerifyCompact(released, { release: true }), got);
      assert.deepEqual([released.checklists.size, released.desired.size, released.afterPing?.size ?? 0], [0, 0, 0]);
    });
  }
});

describe('compact judging that lets each node go once judged', () => {
  it("still names the receiver's firewall in a failed cold-start direction's evidence", () => {
    const facts = () => {
      const f = factsFrom(healthyScenario());
      const ruleset = (name: string) =>
        readFact(FACTS.firewallRuleset, splitSections(readFileSync(`test/fixtures/firewall/${name}.txt`, 'utf8')), {
          interface: 'wg0',
          listenPort: 51820,
        });
      for (const [name, cl] of f.checklists)
        cl.firewallRuleset = ruleset(name === 'ctb-edge-1' ? 'iptables-policy-drop' : 'default-accept');
      const dirs = planColdStart(f.inventory, new Set(f.inventory.nodes.map((n) => n.name))).slots.flat();
      f.coldStart = {
        roundTrips: 1,
        ms: 1,
        directions: dirs.map((d) => ({ ...d, sent: 16, delta: { inDatagrams: d.to === 'ctb-edge-1' ? 0 : 16, noPorts: 0 } })),
      };
      return f;
    };
    const released = evaluateVerifyCompact(facts(), { release: true });
    const failed = released.checks.filter((c) => c.id === 'cold-start');
    assert.equal(failed.length, 3);
    assert.ok(failed.every((c) => c.evidence.some((e) => e.startsWith('firewall on ctb-edge-1: the firewall drops new UDP 51820'))));
    assert.deepEqual(released, evaluateVerifyCompact(facts()));
  });
});

describe('compact judging makes no message for a pass (40 fake converged nodes)', () => {
  it("reads none of the facts only a passing check's words show; judging every check reads each once or more", async () => {
    const n = 40;
    await withConvergedFarm(n, async (inventory, farm) => {
      const collected = await collectVerify(inventory, farm.connections(), new Map(), { pathMtu: true });
      let reads = 0;
      /** `value`, counting reads of `fields` (shown only in a check's message or evidence) */
      const watched = <T extends object>(value: T, fields: string[]): T =>
        new Proxy(value, {
          get(target, key, receiver) {
            if (typeof key === 'string' && fields.includes(key)) reads++;
            return Reflect.get(target, key, receiver);
          },
        });
      const watch = (facts: VerifyFacts): VerifyFacts => ({
        ...facts,
        // the handshake's evidence: transfer counters
        afterPing: new Map(
          [...facts.afterPing!].map(([node, a]) => [node, { ...a, peers: a.peers.map((p) => watched(p, ['rxBytes', 'txBytes'])) }]),
        ),
        // the route's evidence: the gateway
        checklists: new Map(
          [...facts.checklists].map(([node, cl]) => [node, { ...cl, routes: cl.routes.map((r) => watched(r, ['gateway', 'error'])) }]),
        ),
        // the ping's evidence: the counts; the path MTU's: its tries
        matrix: {
          nodes: facts.matrix!.nodes,
          cells: Object.fromEntries(
            Object.entries(facts.matrix!.cells).map(([from, row]) => [
              from,
              Object.fromEntries(
                Object.entries(row).map(([to, cell]) => [
                  to,
                  watched({ ...cell, pmtu: watched({ ...cell.pmtu! }, ['tries']) }, ['transmitted', 'received', 'loss']),
                ]),
              ),
            ]),
          ),
        },
        // the cold-start direction's evidence: where it was sent
        coldStart: { ...facts.coldStart!, directions: facts.coldStart!.directions.map((d) => watched(d, ['endpoint'])) },
      });
      const compact = evaluateVerifyCompact(watch(collected));
      assert.equal(compact.checks.filter((c) => c.status !== 'pass').length, 0);
      assert.equal(
        compact.passed.reduce((sum, g) => sum + g.peers, 0),
        9 * n * (n - 1),
      );
      assert.equal(reads, 0, `${reads} reads of what only a passing check's message or evidence shows`);
      // the same facts, every check made: each pair's words read them (so the count above can fail)
      evaluateVerify(watch(collected));
      assert.ok(reads >= 5 * n * (n - 1), `${reads} reads`);
    });
  });
});
