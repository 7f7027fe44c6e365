/**
 * An interrupted fallback pass (Q4's finding 5): relay: auto's second pass, cut by Ctrl-C at its enable gate, is
 * reverted (nothing of it was confirmed), so the nodes run the first pass's direct config. The report, and so the
 * local state, must record only what the nodes kept: no relayed pair, and no "now relayed" note. Over the bench's
 * fake nodes (scripts/bench/farm/fake-node.ts), whose pings between a-1 and p-2 (a direct pair of
 * inventories/four-sites.yaml) fail; once without Ctrl-C (the second pass runs and is kept: not vacuous), once with
 * Ctrl-C at the second pass's enable gate. Both with a rollback armed (the default: the fakes answer the arm and
 * revert scripts), and once more with `--no-rollback` (rollbackDeadlineS 0), where nothing is reverted, so the
 * nodes keep the relayed configs and the relay IS recorded (RV3 F1: it was recorded as reverted).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeFarm } from '../../scripts/bench/farm/fake-node.js';
import { loadInventory } from '../../src/inventory/load.js';
import { runUp, type UpView } from '../../src/engine/up.js';
import { fakeConnector } from '../support/fake-connector.js';
import { keptFallbacks, passKept, passMayBeMixed } from '../../src/engine/fallback.js';
import type { Connection } from '../../src/transport/types.js';
import { tempDir } from '../support/temp-dir.js';
import { forcedExitNotes } from '../../src/interrupt.js';
import { recordAtForcedExit } from '../../src/commands/up.js';
import { readState, type MeshState } from '../../src/state/state.js';

/** the phase of playbooks/up.yaml with the enable-service step */
const ENABLE_PHASE = loadPlaybookPhaseWith('enable-service');
const LOST = '3 packets transmitted, 0 received, 100% packet loss, time 2002ms';

/**
 * A cold up of four-sites over fake nodes whose a-1 <-> p-2 pings fail; `interrupt`: Ctrl-C at the second enable gate;
 * `rollbackDeadlineS`: 0 is `--no-rollback`. `scripts`: every script the fakes ran.
 * `forcedExitAt`: a second Ctrl-C at the gate of this phase of the second pass: what meshctl does before it exits at
 * once (../../src/interrupt.ts: the forced exit's notes, `up`'s recordAtForcedExit among them) is run there, and
 * the local state as it then is comes back as `stateAtExit` (the run itself goes on: the test's process does not exit).
 */
async function upInterruptedAtSecondEnable(interrupt: boolean, rollbackDeadlineS = 120, forcedExitAt?: string) {
  const dir = tempDir('meshctl-interrupted-fallback-');
  const path = join(dir, 'four-sites.yaml');
  copyFileSync('inventories/four-sites.yaml', path);
  const inventory = loadInventory(path);
  const overlay = new Map(inventory.nodes.map((n) => [n.name, n.overlayIp]));
  const abort = new AbortController();
  const farm = new FakeFarm();
  const scripts: string[] = [];
  const node = (name: string): Connection => {
    const fake = farm.node(name);
    const other = name === 'a-1' ? 'p-2' : name === 'p-2' ? 'a-1' : undefined;
    return Object.assign(Object.create(fake) as Connection, {
      run: async (script: string, options?: Parameters<Connection['run']>[1]) => {
        scripts.push(script);
        const result = await fake.run(script, options);
        if (!script.includes('@@meshctl begin ping:') || script.includes('@@meshctl begin uid') || !other) return result;
        const section = new RegExp(`(@@meshctl begin ping:${overlay.get(other)!.replaceAll('.', '\\.')}\\n)[^\\n]*\\n[^\\n]*`);
        return { ...result, stdout: result.stdout.replace(section, `$1${LOST}`) };
      },
    });
  };
  const connector = fakeConnector(node);
  let enableGates = 0;
  let stateAtExit: MeshState | undefined;
  // a gate of the second pass: the first pass's enable gate was counted (the ping gate comes after this pass's own)
  const secondPass = (phase: string) => enableGates >= (phase === loadPlaybookPhaseWith('ping-matrix') ? 2 : 1);
  let exitNotes: string[] = [];
  const view: UpView = {
    onEvent: () => undefined,
    gate: async (report) => {
      if (forcedExitAt && report.id === forcedExitAt && secondPass(report.id) && !stateAtExit) {
        exitNotes = forcedExitNotes();
        stateAtExit = readState(path, inventory.mesh.interface);
        return false;
      }
      // the second pass's enable gate: Ctrl-C there (as Q4's SIGTERM 0.1 s into the second "Enable wg-quick")
      if (report.id === ENABLE_PHASE) {
        enableGates++;
        if (interrupt && enableGates === 2) abort.abort(new Error('interrupted'));
      }
      return true;
    },
  };
  const report = await runUp(inventory, connector, view, {
    signal: abort.signal,
    underlayProbes: false,
    rollbackDeadlineS,
    onForcedExit: recordAtForcedExit(inventory, undefined),
  });
  return { report, enableGates, scripts, stateAtExit, exitNotes };
}

describe('relay: auto, a fallback pass interrupted before it was confirmed', () => {
  it('without Ctrl-C: the second pass relays a-1 <-> p-2 and the report records it (not vacuous)', async () => {
    const { report, enableGates } = await upInterruptedAtSecondEnable(false);
    assert.equal(enableGates, 2, 'two passes, each through its enable gate');
    assert.deepEqual(report.fallbackRelays?.pairs, ['a-1 p-2'], JSON.stringify(report.fallbackRelays));
    assert.ok((report.warnings ?? []).some((w) => /a-1 and p-2: the direct handshake failed at the gate, now relayed/.test(w)));
  });

  it('Ctrl-C at the second enable gate: the relay is not recorded and nothing says "now relayed"', async () => {
    const { report, enableGates, scripts } = await upInterruptedAtSecondEnable(true);
    assert.equal(enableGates, 2);
    assert.ok(
      scripts.some((s) => s.includes('echo rollback=armed')),
      'a rollback was armed on the nodes',
    );
    assert.ok(
      scripts.some((s) => s.includes('/bin/sh "$d/revert.sh"')),
      'and the nodes were reverted',
    );
    assert.equal(report.result, 'interrupted');
    assert.ok(report.firstPass, 'the second pass ran');
    assert.deepEqual(report.fallbackRelays?.pairs ?? [], [], JSON.stringify(report.fallbackRelays));
    assert.ok(!(report.warnings ?? []).some((w) => /now relayed/.test(w)), String(report.warnings));
    assert.ok(
      (report.warnings ?? []).some((w) => /a-1 and p-2: .*reverted before it was confirmed, so they are still direct/.test(w)),
      String(report.warnings),
    );
  });
});

describe('relay: auto with --no-rollback, a fallback pass interrupted at its enable gate', () => {
  it('nothing is reverted: the nodes keep the relayed configs, so the relay IS recorded, with a note to run up again', async () => {
    const { report, enableGates, scripts } = await upInterruptedAtSecondEnable(true, 0);
    assert.equal(enableGates, 2);
    assert.equal(report.result, 'interrupted');
    assert.ok(!scripts.some((s) => s.includes('echo rollback=armed') || s.includes('/bin/sh "$d/revert.sh"')), 'no rollback armed or run');
    assert.deepEqual(report.fallbackRelays?.pairs, ['a-1 p-2'], JSON.stringify(report.fallbackRelays));
    assert.ok(!(report.warnings ?? []).some((w) => /reverted before it was confirmed/.test(w)), String(report.warnings));
    assert.ok(
      (report.warnings ?? []).some((w) => /no rollback armed .*some nodes may run the new configs .*run up again/.test(w)),
      String(report.warnings),
    );
  });
});

describe('relay: auto, a second Ctrl-C in the second pass (RV3 F7: the state was not written at all)', () => {
  const CONFIG_PHASE = loadPlaybookPhaseWith('write-config');
  const PING_PHASE = loadPlaybookPhaseWith('ping-matrix');
  it("before its enable gate: the state records the first pass (kept) and the cold up's keys", async () => {
    const { report, stateAtExit, exitNotes } = await upInterruptedAtSecondEnable(false, 120, CONFIG_PHASE);
    assert.ok(report.firstPass, 'the second pass ran');
    assert.ok(stateAtExit, 'the second interrupt came at the second config gate');
    assert.deepEqual(Object.keys(stateAtExit.nodes).sort(), Object.keys(report.publicKeys ?? {}).sort());
    assert.equal(Object.keys(stateAtExit.nodes).length, 8, "the cold up learnt every node's key");
    assert.deepEqual(stateAtExit.fallbackRelays ?? [], [], 'a-1 p-2 not relayed yet');
    assert.equal(stateAtExit.lastApply?.result, 'interrupted');
    assert.ok(!exitNotes.some((l) => /could not write the local state/.test(l)), String(exitNotes));
  });
  it('past its enable gate: the state records the second pass (kept on the nodes)', async () => {
    const { stateAtExit } = await upInterruptedAtSecondEnable(false, 120, PING_PHASE);
    assert.ok(stateAtExit);
    assert.deepEqual(stateAtExit.fallbackRelays, ['a-1 p-2']);
  });
  it('at its enable gate (not confirmed: its reverts take the nodes back to the first pass): the first pass is recorded', async () => {
    const { stateAtExit } = await upInterruptedAtSecondEnable(false, 120, ENABLE_PHASE);
    assert.ok(stateAtExit);
    assert.deepEqual(stateAtExit.fallbackRelays ?? [], []);
  });
});

describe('which pass the nodes kept', () => {
  const phases = (stopAt?: string) =>
    ['facts', 'install', 'keys', 'config', 'enable', 'ping']
      .slice(0, stopAt ? ['facts', 'install', 'keys', 'config', 'enable', 'ping'].indexOf(stopAt) + 1 : 6)
      .map((id) => ({ id, verdict: 'GO' }));
  it('a pass kept its configs when it went past its enable gate; a dry run is taken as kept', () => {
    assert.equal(passKept({ phases: phases() }, 'enable', false, true), true);
    assert.equal(
      passKept({ phases: phases('ping'), stoppedAt: 'ping' }, 'enable', false, true),
      true,
      'stopped at the ping gate: configs stay',
    );
    assert.equal(
      passKept({ phases: phases('enable'), stoppedAt: 'enable' }, 'enable', false, true),
      false,
      'interrupted at the enable gate',
    );
    assert.equal(passKept({ phases: phases('config'), stoppedAt: 'config' }, 'enable', false, true), false);
    assert.equal(
      passKept({ phases: [...phases('config'), { id: 'enable', verdict: 'STOP' }], stoppedAt: 'enable' }, 'enable', false, true),
      false,
    );
    assert.equal(passKept({ phases: [], stoppedAt: 'facts' }, 'enable', true, false), true);
  });
  it('without a rollback (--no-rollback) a pass whose enable phase ran is kept, even cut at its gate; mixed then', () => {
    assert.equal(
      passKept({ phases: phases('enable'), stoppedAt: 'enable' }, 'enable', false, false),
      true,
      'interrupted at the enable gate',
    );
    const failedEnable = { phases: [...phases('config'), { id: 'enable', verdict: 'STOP' }], stoppedAt: 'enable' };
    assert.equal(passKept(failedEnable, 'enable', false, false), true, 'a node failed its enable step: the others run the pass');
    assert.equal(passKept({ phases: phases('config'), stoppedAt: 'config' }, 'enable', false, false), false, 'enable never ran');
    assert.equal(passMayBeMixed({ phases: phases('enable'), stoppedAt: 'enable' }, 'enable', false, false), true);
    assert.equal(passMayBeMixed(failedEnable, 'enable', false, false), true);
    assert.equal(passMayBeMixed({ phases: phases('enable'), stoppedAt: 'enable' }, 'enable', false, true), false, 'reverted');
    assert.equal(passMayBeMixed({ phases: phases('ping'), stoppedAt: 'ping' }, 'enable', false, false), false, 'past its gate');
    assert.equal(passMayBeMixed({ phases: phases('config'), stoppedAt: 'config' }, 'enable', false, false), false);
  });
  it('the newest kept pass wins; none kept: the pairs from before the run', () => {
    const earlier = ['b-2 p-2'];
    assert.deepEqual(keptFallbacks(earlier, { pairs: [], kept: true }, { pairs: ['a-1 p-2'], kept: false }), []);
    assert.deepEqual(keptFallbacks(earlier, { pairs: [], kept: true }, { pairs: ['a-1 p-2'], kept: true }), ['a-1 p-2']);
    assert.deepEqual(keptFallbacks(earlier, { pairs: [], kept: false }), ['b-2 p-2'], 'a reverted move back to direct: still relayed');
  });
});

function loadPlaybookPhaseWith(step: string): string {
  const text = readFileSync('playbooks/up.yaml', 'utf8');
  const phases = text.split(/\n {2}- id: /).slice(1);
  const phase = phases.find((p) => new RegExp(`steps: \\[[^\\]]*\\b${step}\\b`).test(p));
  assert.ok(phase, `a phase of playbooks/up.yaml runs ${step}`);
  return phase!.split('\n')[0]!.trim();
}
