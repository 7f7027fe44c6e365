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
