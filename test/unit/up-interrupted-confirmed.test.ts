/**
 * Q6/Q7 finding 3: a Ctrl-C after the change was confirmed (the enable gate answered yes, its rollback disarmed on
 * every node) ended with `interrupted during "Ping matrix"` and exit 130, and nothing said the change stays. Over the
 * bench's fake nodes (scripts/bench/farm/fake-node.ts, which answer the arm, disarm and revert scripts), a cold `up`
 * of inventories/four-sites.yaml with a rollback armed, interrupted at the last gate (the ping matrix's, after the
 * enable gate confirmed), and once at the enable gate itself, before its confirm: nothing confirmed, nothing said.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { FakeFarm } from '../../scripts/bench/farm/fake-node.js';
import { confirmedKept, printSummary } from '../../src/commands/up.js';
import { runUp, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { fakeConnector } from '../support/fake-connector.js';

const inventory = loadInventory('inventories/four-sites.yaml');
const NODES = inventory.nodes.map((n) => n.name);

/** the immediate revert (../../src/engine/revert.ts revertNowScript), not the arm that names the same script */
const REVERT_NOW = 'then echo rollback=none; exit 0; fi';

/** A cold up, Ctrl-C at the gate of phase `at` (the gate's answer: yes, as Ctrl-C right after it); summary text too. */
async function interruptedAt(at: string, { confirmFirst = false } = {}) {
  const farm = new FakeFarm();
  const scripts: string[] = [];
  const abort = new AbortController();
  const view: UpView = {
    onEvent: () => undefined,
    gate: async (report, _last, confirm) => {
      // a view that confirms as soon as the operator said yes (RunContext.gate), Ctrl-C right after
      if (report.id === at && confirmFirst) await confirm?.();
      if (report.id === at) abort.abort(new Error('interrupted'));
      return true;
    },
  };
  const connector = fakeConnector((name) => {
    const fake = farm.node(name);
    return Object.assign(Object.create(fake), {
      run: (script: string, options?: never) => {
        scripts.push(script);
        return fake.run(script, options);
      },
    });
  });
  const report = await runUp(inventory, connector, view, { signal: abort.signal, underlayProbes: false, rollbackDeadlineS: 120 });
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk) => {
    text += chunk;
  });
  await printSummary(report, false, out, new Map());
  return { report, text, scripts };
}

describe('Ctrl-C after the change was confirmed says it stays (Q6/Q7)', () => {
  it('at the last gate, after the enable gate confirmed every node: "confirmed on N nodes ... and stays"', async () => {
    const { report, text, scripts } = await interruptedAt('verify');
    assert.equal(report.result, 'interrupted');
    assert.ok(
      scripts.some((s) => s.includes('echo rollback=armed')),
      'a rollback was armed',
    );
    assert.ok(!scripts.some((s) => s.includes(REVERT_NOW)), 'and nothing reverted');
    assert.match(text, /interrupted during "Ping matrix"/);
    assert.match(
      text,
      new RegExp(
        `the change was confirmed on ${NODES.length} nodes \\(${NODES.join(', ')}\\) at "Enable wg-quick" before the interrupt and stays: their rollback was disarmed, nothing of it goes back`,
      ),
    );
  });
  it('at the enable gate right after its confirm was sent: the same words, the nodes keep the change', async () => {
    const { report, text, scripts } = await interruptedAt('enable', { confirmFirst: true });
    assert.equal(report.result, 'interrupted');
    assert.ok(!scripts.some((s) => s.includes(REVERT_NOW)), 'nothing reverted');
    assert.match(text, /interrupted during "Enable wg-quick"/);
    assert.match(
      text,
      new RegExp(`the change was confirmed on ${NODES.length} nodes .* at "Enable wg-quick" before the interrupt and stays`),
    );
  });
  it('at the enable gate, before its confirm: nothing was confirmed, so nothing says it stays (the nodes go back)', async () => {
    const { report, text, scripts } = await interruptedAt('enable');
    assert.equal(report.result, 'interrupted');
    assert.ok(
      scripts.some((s) => s.includes(REVERT_NOW)),
      'the nodes were reverted',
    );
    assert.match(text, /interrupted during "Enable wg-quick"/);
    assert.doesNotMatch(text, /confirmed on/);
    assert.equal(confirmedKept(report.phases), undefined);
  });
});
