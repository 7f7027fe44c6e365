/**
 * Finding 29: `up --limit wk-1` printed the ping matrix with whole rows of `?` for the nodes outside the limit (they
 * ping nothing in such a run). The summary now shows the limited nodes' rows only, and says so.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Matrix } from '../../src/checks/ping-matrix.js';
import { renderMatrix } from '../../src/checks/matrix-render.js';
import { summaryOf } from '../support/up-summary.js';

const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const ok = { ok: true, loss: 0, transmitted: 3, received: 3, rttMs: 0.5 };
/** what a run limited to wk-1 measured: wk-1's row alone */
const matrix: Matrix = { nodes: NODES, cells: { 'wk-1': { 'ms-1': ok, 'wk-2': ok, 'ctb-edge-1': ok } } };

describe('finding 29: the ping matrix of a --limit run', () => {
  it('renderMatrix shows only the rows asked for, every column', () => {
    const text = renderMatrix(matrix, { color: false, rows: ['wk-1'] });
    const lines = text.trimEnd().split('\n');
    assert.equal(lines.length, 2, text);
    assert.match(lines[0]!, /^from \\ to\s+ms-1\s+wk-1\s+wk-2\s+ctb-edge-1$/);
    assert.match(lines[1]!, /^wk-1\s+ok 0\.50ms\s+-\s+ok 0\.50ms\s+ok 0\.50ms$/);
    assert.doesNotMatch(text, /\?/);
  });

  it("up's summary: no row of '?', and a line that says whose rows these are", async () => {
    const text = await summaryOf({ matrix, limit: ['wk-1'] });
    for (const node of ['ms-1', 'wk-2', 'ctb-edge-1']) assert.doesNotMatch(text, new RegExp(`^${node}\\s`, 'm'), text);
    assert.doesNotMatch(text, /\?/, text);
    assert.match(text, /^wk-1\s+ok/m);
    assert.match(text, /rows: the --limit node only \(wk-1\); the other nodes were not pinged from in this run/);
  });
});
