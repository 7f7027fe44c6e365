/**
 * A new user's finding (2026-12-01): an `up` after an interrupted run said "converged" while that run's unconfirmed
 * rollback was still pending on the nodes, which then flipped back when its timer fired. `up` now reads the pending
 * reverts in its facts probe and confirms them at the confirming gate when it is GO (src/engine/revert.ts
 * PendingRollbacks); a run that does not get there says, per node, that the revert is pending and when it fires.
 * Over scripted fake connections (the facts: the bare-node capture of a lab node); the node side is in the lab
 * (test/lab/rollback-pending.test.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { runUp, type Connector, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { FakeConnection } from '../support/fake-connection.js';
import { parsePendingRollbacks } from '../../src/engine/revert.js';
import type { PhaseReport } from '../../src/engine/types.js';

const inventory = loadInventory('inventories/homelab.yaml');
const bareFacts = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8');
const playbookPath = 'test/fixtures/up/facts-confirm.yaml';
const RUN = '0123456789abcdef';
/** 2026-12-01 17:02:09 UTC */
const DUE = 1796058129;
const section = (name: string, body: string) => `@@meshctl begin ${name}\n${body}\n@@meshctl end ${name} rc=0\n`;

/**
 * A node whose facts probe finds `pending` (pendingRollbacksScript's lines) and whose cancel answers `cancel`; it
 * makes a key and writes its config when told (config-confirm.yaml), and logs its disarm or revert.
 */
function node(name: string, pending: string, cancel: string, log: string[]) {
  return new FakeConnection(name, [
    // the fresh login's check after a change (ssh-still-reachable)
    { match: /^true$/, reply: {} },
    { match: /wg genkey/, reply: { stdout: `created\n${randomBytes(32).toString('base64')}\n` } },
    { match: /wg0\.conf\.meshctl-tmp/, reply: { stdout: 'config=x\nsysctl=x\nrp_filter=2,2\n' } },
    {
      match: /rollback=disarmed/,
      reply: () => {
        log.push(`disarm ${name}`);
        return { stdout: 'rollback=disarmed\n' };
      },
    },
    {
      match: /rollback=reverted/,
      reply: () => {
        log.push(`revert ${name}`);
        return { stdout: 'rollback=reverted\n' };
      },
    },
    {
      match: /mc_cancel/,
      reply: () => {
        log.push(`cancel ${name}`);
        return { stdout: cancel };
      },
    },
    {
      match: /@@meshctl begin uid/,
      reply: (script) => ({
        stdout: `${script.includes('take_lock') ? section('lock', 'acquired') : ''}${script.includes('begin rollback-pending') ? section('rollback-pending', pending) : ''}${bareFacts}`,
      }),
    },
    { match: /take_lock/, reply: { stdout: 'acquired\n' } },
    { match: /rm -f/, reply: {} },
  ]);
}

async function run(options: { cancel?: string; dryRun?: boolean; stopAt?: string; playbook?: string } = {}) {
  const log: string[] = [];
  const pendingOn = 'wk-1';
  const connections = new Map(
    inventory.nodes.map((n) => [
      n.name,
      node(n.name, n.name === pendingOn ? `pending=${RUN} ${DUE}` : '', options.cancel ?? `pending ${RUN}=cancelled\n`, log),
    ]),
  );
  const connector: Connector = {
    connectAll: async () => ({ connections, failures: new Map(), close: async () => undefined }),
    // the confirmation's new login (the run's own connection may predate the change it confirms)
    connectOne: async (n) => {
      log.push(`login ${n.name}`);
      return node(n.name, '', options.cancel ?? `pending ${RUN}=cancelled\n`, log);
    },
  };
  const gates: PhaseReport[] = [];
  const view: UpView = {
    onEvent: () => undefined,
    gate: async (report) => {
      gates.push(structuredClone(report));
      return report.id !== options.stopAt;
    },
  };
  const report = await runUp(inventory, connector, view, {
    signal: new AbortController().signal,
    playbookPath: options.playbook ?? playbookPath,
    ...(options.dryRun ? { dryRun: true } : {}),
  });
  // from the report, not the gates' copies: a confirming gate confirms after its answer (RunContext.gate's confirm)
  const rollbackChecks = report.phases.flatMap((g) =>
    g.nodes.flatMap((n) => n.checks.filter((c) => c.id === 'rollback').map((c) => ({ node: n.node, ...c }))),
  );
  return { report, log, gates, rollbackChecks };
}

describe('up: a pending rollback of an earlier run', () => {
  it('is confirmed at the confirming gate when it is GO: cancelled on its node only, and said at that gate', async () => {
    const { report, log, rollbackChecks } = await run();
    assert.equal(report.result, 'converged');
    assert.deepEqual(log, ['login wk-1', 'cancel wk-1'], 'cancelled over a new login');
    assert.equal(rollbackChecks.length, 1);
    assert.equal(rollbackChecks[0]!.node, 'wk-1');
    assert.equal(rollbackChecks[0]!.status, 'pass');
    assert.match(
      rollbackChecks[0]!.message,
      /confirmed the change an earlier run left unconfirmed \(revert-0123456789abcdef, due at 17:02:09 UTC\)/,
    );
    assert.ok(!(report.warnings ?? []).some((w) => /goes back by itself/.test(w)), String(report.warnings));
    assert.equal(report.pendingReverts, undefined, 'confirmed: nothing pending');
  });

  it('a revert that fired before the confirmation: the gate STOPs, the run is not converged', async () => {
    const { report, log, rollbackChecks } = await run({ cancel: `pending ${RUN}=reverted\n` });
    assert.deepEqual(log, ['login wk-1', 'cancel wk-1']);
    assert.equal(report.result, 'stopped');
    assert.equal(report.stoppedAt, 'enable');
    assert.equal(rollbackChecks[0]!.status, 'fail');
    assert.match(
      rollbackChecks[0]!.message,
      /went back by itself before this run could confirm it: wk-1 is on that run's snapshot now; run up again/,
    );
  });

  it('a confirm that failed leaves the revert pending in the report (RV4 F3.4); one that fired does not', async () => {
    const failed = await run({ cancel: `pending ${RUN}=busy\n` });
    assert.equal(failed.report.result, 'stopped');
    assert.match(failed.rollbackChecks[0]!.message, /could not be confirmed \(busy\): it may still go back/);
    assert.deepEqual(failed.report.pendingReverts, ['wk-1']);
    const fired = await run({ cancel: `pending ${RUN}=reverted\n` });
    assert.equal(fired.report.pendingReverts, undefined, 'gone back: nothing left pending');
  });

  /**
   * Review of 2026-12-01: the earlier run's revert was confirmed at the gate, after this run had disarmed its own
   * nodes; one that had gone back first STOPped the gate with this run's changes confirmed on every other node.
   */
  it('is confirmed before this run disarms its own changes: one that went back first gets them reverted, not confirmed', async () => {
    const ok = await run({ playbook: 'test/fixtures/up/config-confirm.yaml' });
    assert.equal(ok.report.result, 'converged', JSON.stringify(ok.report.phases.at(-1)));
    assert.ok(ok.log.includes('cancel wk-1'), ok.log.join(', '));
    assert.ok(ok.log.indexOf('cancel wk-1') < ok.log.findIndex((l) => l.startsWith('disarm')), ok.log.join(', '));
    const fired = await run({ playbook: 'test/fixtures/up/config-confirm.yaml', cancel: `pending ${RUN}=reverted\n` });
    assert.equal(fired.report.result, 'stopped');
    assert.equal(fired.report.stoppedAt, 'enable');
    assert.deepEqual(
      fired.log.filter((l) => l.startsWith('disarm')),
      [],
      fired.log.join(', '),
    );
    assert.deepEqual(fired.log.filter((l) => l.startsWith('revert')).sort(), inventory.nodes.map((n) => `revert ${n.name}`).sort());
  });

  it('a run that stops before the confirming gate cancels nothing and says when the revert fires', async () => {
    const { report, log } = await run({ stopAt: 'facts' });
    assert.equal(report.result, 'stopped');
    assert.deepEqual(log, []);
    assert.ok(
      (report.warnings ?? []).some((w) =>
        /^wk-1: an earlier run's change is still unconfirmed and goes back by itself \(revert-0123456789abcdef at 17:02:09 UTC\)/.test(w),
      ),
      String(report.warnings),
    );
  });

  it('a dry run (plan) cancels nothing and warns', async () => {
    const { report, log } = await run({ dryRun: true });
    assert.deepEqual(log, []);
    // plan exits 4 on it (Q5 finding 2: exit 0 while the change was about to go back by itself)
    assert.deepEqual(report.pendingReverts, ['wk-1']);
    assert.ok(
      (report.warnings ?? []).some((w) => /^wk-1: .*goes back by itself/.test(w)),
      String(report.warnings),
    );
  });

  it('reads only well-formed pending lines', () => {
    assert.deepEqual(parsePendingRollbacks(`pending=${RUN} ${DUE}\npending=${RUN}\npending=../x 1\nnoise`), [
      { runId: RUN, deadline: DUE },
      { runId: RUN },
    ]);
  });
});
