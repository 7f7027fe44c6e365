/**
 * The terminal's view of `up` (src/ui/engine-view.ts): a node whose step failed is drawn as failed (✖), not with a
 * ✔ beside the word FAILED. Seen in lab t1 (helper T): Ctrl-C in the config phase drew
 * "✔ ms-1: FAILED write-config: interrupted" for every node.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const DRIVER = `
import { createEngineView } from './src/ui/engine-view.ts';
const view = createEngineView({ yes: true, interactive: false, json: false, color: false, out: process.stdout });
const phase = { id: 'config', title: 'Push wg0.conf', steps: ['write-config'], checks: [] };
view.onEvent({ type: 'phase-start', phase, nodes: ['ms-1', 'wk-1'] });
view.onEvent({ type: 'step-done', node: 'ms-1', step: 'write-config', changes: ['write /etc/wireguard/wg0.conf'], error: 'write-config: interrupted' });
view.onEvent({ type: 'step-done', node: 'wk-1', step: 'write-config', changes: ['write /etc/wireguard/wg0.conf'] });
view.onEvent({ type: 'phase-done', report: { id: 'config', title: 'Push wg0.conf', verdict: 'STOP', nodes: [], durationMs: 1 } });
await view.gate({ id: 'config', title: 'Push wg0.conf', verdict: 'STOP', go: '', durationMs: 1, nodes: [] }, false);
`;

test('a node whose step failed: ✖ with the failure, the others ✔', () => {
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', DRIVER], {
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  assert.equal(run.status, 0, run.stderr);
  // listr2 colours its marks whatever FORCE_COLOR says
  const lines = `${run.stdout}\n${run.stderr}`.replace(/\u001b\[[0-9;]*m/g, '').split('\n');
  assert.ok(lines.includes('✖ ms-1: write /etc/wireguard/wg0.conf [FAILED: write-config: interrupted]'), `${run.stdout}\n${run.stderr}`);
  assert.ok(lines.includes('✔ wk-1: write /etc/wireguard/wg0.conf'), run.stdout);
  assert.ok(!lines.some((l) => l.startsWith('✔') && l.includes('FAILED')), run.stdout);
});

/** The view's lines (marks uncoloured) for one phase of two nodes whose steps all ran, ended with `verdict`. */
function phaseLines(verdict: 'GO' | 'STOP', interrupted: boolean): string[] {
  const driver = `
import { createEngineView } from './src/ui/engine-view.ts';
const signal = AbortSignal.abort(); const quiet = new AbortController().signal;
const view = createEngineView({ yes: true, interactive: false, json: false, color: false, out: process.stdout, signal: ${interrupted} ? signal : quiet });
const phase = { id: 'enable', title: 'Enable wg-quick', steps: ['enable-service'], checks: [] };
view.onEvent({ type: 'phase-start', phase, nodes: ['ms-1', 'wk-1'] });
for (const node of ['ms-1', 'wk-1']) view.onEvent({ type: 'step-done', node, step: 'enable-service', changes: ['enable wg-quick@wg0'] });
const report = { id: 'enable', title: 'Enable wg-quick', verdict: '${verdict}', go: '', nodes: [], durationMs: 1 };
view.onEvent({ type: 'phase-done', report });
await view.gate(report, true);
`;
  const run = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', driver], {
    encoding: 'utf8',
    env: { ...process.env, FORCE_COLOR: '0' },
  });
  assert.equal(run.status, 0, run.stderr);
  return `${run.stdout}\n${run.stderr}`.replace(/\u001b\[[0-9;]*m/g, '').split('\n');
}

test('a phase cut by Ctrl-C is drawn ✖ interrupted, not ✔ (its nodes as their steps ended)', () => {
  const lines = phaseLines('GO', true);
  assert.ok(lines.includes('✖ Enable wg-quick [FAILED: interrupted]'), lines.join('\n'));
  assert.ok(!lines.includes('✔ Enable wg-quick'), lines.join('\n'));
  assert.ok(lines.includes('✔ ms-1: enable wg-quick@wg0'), lines.join('\n'));
});

test('a phase that stopped is drawn ✖ stopped; one that passed ✔', () => {
  assert.ok(phaseLines('STOP', false).includes('✖ Enable wg-quick [FAILED: stopped]'));
  const passed = phaseLines('GO', false);
  assert.ok(passed.includes('✔ Enable wg-quick'), passed.join('\n'));
  assert.ok(!passed.some((l) => l.startsWith('✖')), passed.join('\n'));
});
