/**
 * Ctrl-C during an early phase of `up` (facts, baseline, install, keys, config: before enable), over cold fake nodes
 * with the transport's behaviour on abort (../support/interruptible-farm.ts): at each phase's start, while every
 * node's script of the phase is under way (none answered), while one is (the others answered), once all answered
 * (before the checks) and at the phase's gate; with 4 nodes (inventories/homelab.yaml) and with 1 (--limit ms-1).
 * Each time runUp resolves (never rejects) with an interrupted report whose last phase is the one interrupted and
 * which says per node what it did (a change answered, a read stopped by the interrupt); the run lock's release is sent
 * to every node whose lock script was sent; nothing but that release, and a revert on the nodes whose change was
 * armed (the config step arms it), is sent after the interrupt; no gate is asked after it. Also Ctrl-C while the
 * first node's facts probe, which takes its run lock, has not answered it yet (issue 10 folded the lock into that
 * probe), or while the first node's lock is taken on its own (fewer forks than nodes): runUp rejected with the
 * interrupt's reason there, so meshctl printed "meshctl: interrupted" and no summary, and the run was not recorded.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { summaryOf } from '../support/up-summary.js';
import { runUp, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { PhaseReport } from '../../src/engine/types.js';
import { InterruptibleFarm, type ScriptKind, type SentScript } from '../support/interruptible-farm.js';

const inventory = loadInventory('inventories/homelab.yaml');
const ALL = inventory.nodes.map((n) => n.name);

/** The early phases and the script each sends to a node (the baseline sends none with --no-underlay-probes). */
const PHASES: { id: string; kind?: ScriptKind; change?: boolean }[] = [
  { id: 'facts', kind: 'facts' },
  { id: 'baseline' },
  { id: 'install', kind: 'install', change: true },
  { id: 'keys', kind: 'keys', change: true },
  { id: 'config', kind: 'config', change: true },
];

/**
 * Where the interrupt comes: phase-start (before any script of the phase), sent (every node's script of the phase
 * sent, none answered), outstanding (the others answered, the first node's still running), answered (every node's
 * answered, before the checks), gate (at the phase's gate, which then says yes). lock-unknown: the facts phase only,
 * the first node's probe sent and its lock section not answered yet (no other node is sent anything before it).
 */
type Point = 'phase-start' | 'sent' | 'outstanding' | 'answered' | 'gate' | 'lock-unknown';

const SIZES: { label: string; limit?: string[] }[] = [{ label: '4 nodes' }, { label: '1 node (--limit ms-1)', limit: ['ms-1'] }];

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A cold `up` (every gate answered yes, rollback armed) interrupted in `phase` at `point`. */
async function interruptedUp(phase: (typeof PHASES)[number], point: Point, limit?: string[]) {
  const farm = new InterruptibleFarm();
  const work = limit ?? ALL;
  const gates: string[] = [];
  const interrupt = () => {
    if (!farm.abort.signal.aborted) farm.abort.abort(new Error('interrupted'));
  };
  const aborted = new Promise<void>((resolve) => farm.abort.signal.addEventListener('abort', () => resolve(), { once: true }));
  const ofPhase = (s: SentScript) => phase.kind !== undefined && s.kind === phase.kind && !s.afterAbort;
  const sentOfPhase = () => farm.sent.filter(ofPhase);
  // the phase's scripts: held until the interrupt (a change step's script then ends by itself, as the runner waits
  // for it; a read is stopped by the interrupt first), or answered at once
  farm.streamLock = point !== 'lock-unknown';
  farm.hold = (s) => {
    if (!ofPhase(s)) return undefined;
    const mine = sentOfPhase();
    if (point === 'lock-unknown') {
      interrupt();
      return aborted;
    }
    if (point === 'sent') {
      if (mine.length === work.length) interrupt();
      return aborted;
    }
    if (point === 'outstanding') {
      // the first node's script runs on; the others answer, then the interrupt
      if (mine[0] === s) {
        if (work.length === 1) interrupt();
        return aborted;
      }
      if (mine.length === work.length)
        void (async () => {
          while (!sentOfPhase().every((x) => x === mine[0] || x.outcome === 'answered')) await tick();
          interrupt();
        })();
      return undefined;
    }
    return undefined;
  };
  const done = new Set<string>();
  const view: UpView = {
    onEvent: (event) => {
      if (event.type === 'phase-start' && event.phase.id === phase.id && point === 'phase-start') interrupt();
      if (event.type === 'step-done' && event.phase === phase.id && point === 'answered') {
        done.add(event.node);
        if (done.size === work.length) interrupt();
      }
    },
    gate: async (report) => {
      gates.push(report.id);
      if (report.id === phase.id && point === 'gate') interrupt();
      return true;
    },
  };
  const report = await runUp(inventory, farm.connector(), view, {
    signal: farm.abort.signal,
    underlayProbes: false,
    rollbackDeadlineS: 120,
    ...(limit ? { limit, knownPublicKeys: new Map() } : {}),
  });
  return { farm, report, gates, work };
}

/** The checks every interrupted run passes (see the module doc). */
async function assertInterrupted(run: Awaited<ReturnType<typeof interruptedUp>>, phase: (typeof PHASES)[number], point: Point) {
  const { farm, report, gates, work } = run;
  const where = `${phase.id} at ${point}`;
  assert.ok(farm.abort.signal.aborted, `${where}: the interrupt came`);
  assert.equal(report.result, 'interrupted', `${where}: ${JSON.stringify(report.phases.map((p) => [p.id, p.verdict]))}`);
  const last: PhaseReport | undefined = report.phases.at(-1);
  assert.ok(last, `${where}: no phase reported`);
  assert.equal(last.id, phase.id, `${where}: the report ends at the interrupted phase`);
  assert.match(await summaryOf(report), new RegExp(`interrupted during "${last.title.replace(/[{}()]/g, '.')}"`), where);
  // no gate after the interrupted phase's
  const at = PHASES.findIndex((p) => p.id === phase.id);
  assert.deepEqual(
    gates.filter((g) => !PHASES.slice(0, at + 1).some((p) => p.id === g)),
    [],
    `${where}: a gate after the interrupt`,
  );
  // per node, what it did in the interrupted phase
  for (const node of work) {
    const entry: PhaseReport['nodes'][number] | undefined = last.nodes.find((n) => n.node === node);
    assert.ok(entry, `${where}: ${node} is in the report`);
    const own = farm.sent.filter((s) => s.node === node && s.kind === phase.kind && !s.afterAbort);
    if (own.some((s) => s.outcome === 'stopped')) assert.match(entry.error ?? '', /interrupted/, `${where}: ${node} says it was stopped`);
    else if (phase.change && own.some((s) => s.outcome === 'answered'))
      assert.ok(entry.changes.length > 0, `${where}: ${node}'s change is reported: ${JSON.stringify(entry)}`);
    else if (own.length === 0) assert.deepEqual(entry.changes, [], `${where}: ${node} did nothing`);
  }
  // nothing is sent after the interrupt but the lock's release and a revert of the armed nodes
  const after = farm.sent.filter((s) => s.afterAbort);
  assert.deepEqual(
    after.filter((s) => s.kind !== 'release' && s.kind !== 'revert'),
    [],
    `${where}: sent after the interrupt: ${JSON.stringify(after)}`,
  );
  const armed = new Set(farm.sent.filter((s) => s.kind === 'config' && !s.afterAbort).map((s) => s.node));
  assert.deepEqual(
    farm
      .scripts({ kinds: ['revert'] })
      .map((s) => s.node)
      .sort(),
    [...armed].sort(),
    `${where}: a revert on every armed node and only there`,
  );
  // the lock's release on every node whose lock script was sent (taken, or maybe taken before it was stopped), once
  // each, as its last script; a node whose probe was let go at the instant of the interrupt may get one too (its
  // script may have gone: the release removes only this run's lock)
  const asked = [...new Set(farm.sent.filter((s) => s.locks).map((s) => s.node))].sort();
  assert.ok(asked.length > 0, `${where}: a lock was asked`);
  const released = farm.scripts({ kinds: ['release'] }).map((s) => s.node);
  assert.equal(new Set(released).size, released.length, `${where}: one release per node: ${released.join(' ')}`);
  for (const node of asked) assert.ok(released.includes(node), `${where}: ${node}'s lock was asked and not released`);
  for (const node of released) {
    assert.ok(work.includes(node), `${where}: a release outside the run, on ${node}`);
    assert.equal(farm.scripts({ node }).at(-1)?.kind, 'release', `${where}: ${node}: the release is the last script`);
  }
  // nothing left running: every script sent before the interrupt answered or was stopped
  assert.deepEqual(
    farm.sent.filter((s) => s.outcome === 'held'),
    [],
    `${where}: a script still held`,
  );
}

for (const size of SIZES)
  describe(`up interrupted in an early phase, ${size.label}: runUp resolves as interrupted`, () => {
    it("during facts, before the first node's probe answered its run lock (rejected before)", async () => {
      const facts = PHASES[0]!;
      const run = await interruptedUp(facts, 'lock-unknown', size.limit);
      await assertInterrupted(run, facts, 'lock-unknown');
      // the first node's probe alone was sent: no other node was touched before its lock was this run's
      const first = [...run.work].sort()[0]!;
      assert.deepEqual(
        run.farm.sent.filter((s) => s.kind !== 'release' && s.kind !== 'public-key').map((s) => `${s.node} ${s.kind}`),
        [`${first} facts`],
      );
    });

    for (const phase of PHASES)
      for (const point of ['phase-start', 'sent', 'outstanding', 'answered', 'gate'] as const) {
        // the baseline sends nothing (--no-underlay-probes): only its start and its gate
        if (phase.kind === undefined && point !== 'phase-start' && point !== 'gate') continue;
        it(`during ${phase.id}: ${point}`, async () => {
          const run = await interruptedUp(phase, point, size.limit);
          await assertInterrupted(run, phase, point);
        });
      }
  });

describe('the interruptible farm itself', () => {
  it('an uninterrupted cold up converges over it, 4 nodes and --limit ms-1 (the scenarios above start from a working run)', async () => {
    for (const size of SIZES) {
      const farm = new InterruptibleFarm();
      const view: UpView = { onEvent: () => undefined, gate: async () => true };
      const report = await runUp(inventory, farm.connector(), view, {
        signal: farm.abort.signal,
        underlayProbes: false,
        rollbackDeadlineS: 120,
        ...(size.limit ? { limit: size.limit, knownPublicKeys: new Map() } : {}),
      });
      assert.equal(report.result, 'converged', `${size.label}: ${JSON.stringify(report.phases.map((p) => [p.id, p.verdict]))}`);
      assert.deepEqual(farm.scripts({ kinds: ['other'] }), [], `${size.label}: a script the farm does not know`);
    }
  });
});

describe('up interrupted before its phases: the lock taken alone, the fallback probe', () => {
  /**
   * A cold up whose first script of `kind` is held until the interrupt, which comes as it is sent (the view shows no
   * phase: none started). `forks`, `fallbackRelays`: up's options and the inventory's pairs relayed by relay: auto.
   */
  async function interruptedBefore(kind: ScriptKind, options: { forks?: number; fallbackRelays?: string[] }) {
    const farm = new InterruptibleFarm();
    const aborted = new Promise<void>((resolve) => farm.abort.signal.addEventListener('abort', () => resolve(), { once: true }));
    farm.hold = (s) => {
      if (s.kind !== kind || s.afterAbort) return undefined;
      farm.abort.abort(new Error('interrupted'));
      return aborted;
    };
    const work = options.fallbackRelays ? { ...inventory, mesh: { ...inventory.mesh, fallbackRelays: options.fallbackRelays } } : inventory;
    const view: UpView = { onEvent: () => undefined, gate: async () => true };
    const report = await runUp(work, farm.connector(), view, {
      signal: farm.abort.signal,
      underlayProbes: false,
      rollbackDeadlineS: 120,
      ...(options.forks ? { forks: options.forks } : {}),
    });
    return { farm, report };
  }

  it('fewer forks than nodes: Ctrl-C while the first node takes its lock alone (rejected before)', async () => {
    const { farm, report } = await interruptedBefore('lock', { forks: 1 });
    assert.equal(report.result, 'interrupted');
    assert.deepEqual(report.phases, []);
    assert.match(await summaryOf(report), /interrupted during "connect"/);
    const first = [...ALL].sort()[0]!;
    assert.deepEqual(
      farm.sent.map((s) => `${s.node} ${s.kind}${s.afterAbort ? ' (after)' : ''}`),
      [`${first} lock`, `${first} release (after)`],
    );
  });

  it("relay: auto's probe of the fallback pairs' direct path: Ctrl-C while it runs (it resolved before too)", async () => {
    const { farm, report } = await interruptedBefore('other', { fallbackRelays: ['ctb-edge-1 ms-1'] });
    assert.ok(farm.abort.signal.aborted, 'the probe was sent');
    assert.equal(report.result, 'interrupted');
    assert.deepEqual(report.phases, []);
    const after = farm.sent.filter((s) => s.afterAbort);
    assert.deepEqual(
      after.filter((s) => s.kind !== 'release'),
      [],
    );
    // every node's lock was taken (alone: a fallback probe comes after the locks), every one released
    assert.deepEqual(after.map((s) => s.node).sort(), [...ALL].sort());
  });
});
