/**
 * Q8 F-intr-matrix and F-warn. Ctrl-C during up's ping matrix printed a matrix of FAIL for a healthy, confirmed mesh:
 * cells the interrupt left unmeasured now read `n/m` (as verify marks a row it could not measure) and the summary
 * says the matrix was cut short. Over the bench's fake nodes (scripts/bench/farm/fake-node.ts), a cold `up` of
 * inventories/four-sites.yaml interrupted as the ping matrix's scripts are sent. And the forward-clash warning that
 * validate and plan print is in up's warnings too, once.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { FakeFarm } from '../../scripts/bench/farm/fake-node.js';
import { printSummary, upWarnings } from '../../src/commands/up.js';
import { runUp, type UpView } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { forwardClashWarnings } from '../../src/topology/forward-clash.js';
import { notMeasured, renderMatrix } from '../../src/checks/matrix-render.js';
import type { Matrix } from '../../src/checks/ping-matrix.js';
import { fakeConnector } from '../support/fake-connector.js';

const inventory = loadInventory('inventories/four-sites.yaml');

async function summaryOf(report: Parameters<typeof printSummary>[0]): Promise<string> {
  const out = new PassThrough();
  let text = '';
  out.on('data', (chunk) => {
    text += chunk;
  });
  await printSummary(report, false, out, new Map());
  return text;
}

/**
 * A cold up (every gate answered yes), Ctrl-C as the ping matrix's first script is sent, as Q8's SIGINT when
 * "❯ Ping matrix" appeared: every node's ping script is then refused (the fake fails a script of an aborted signal).
 */
async function interruptedInPings() {
  const farm = new FakeFarm();
  const abort = new AbortController();
  let pinging = false;
  const view: UpView = {
    onEvent: (event) => {
      if (event.type === 'phase-start') pinging = event.phase.steps.includes('ping-matrix');
    },
    gate: async () => true,
  };
  const connector = fakeConnector((name) => {
    const fake = farm.node(name);
    return Object.assign(Object.create(fake), {
      // async: the fake throws at once for an aborted signal; a run rejects instead
      run: async (script: string, options?: never) => {
        if (pinging && !abort.signal.aborted) abort.abort(new Error('interrupted'));
        return fake.run(script, options);
      },
    });
  });
  const report = await runUp(inventory, connector, view, { signal: abort.signal, underlayProbes: false, rollbackDeadlineS: 120 });
  return { report, text: await summaryOf(report) };
}

describe('Ctrl-C during the ping matrix (Q8 F-intr-matrix)', () => {
  it('unmeasured cells read n/m, not FAIL, and the summary says the matrix was cut short', async () => {
    const { report, text } = await interruptedInPings();
    assert.equal(report.result, 'interrupted');
    assert.ok(report.matrix, 'the interrupted run has a matrix');
    const n = inventory.nodes.length;
    assert.ok(
      Object.values(report.matrix.cells).every((row) => Object.values(row).every(notMeasured)),
      'no cell was measured',
    );
    assert.doesNotMatch(text, /FAIL/);
    const rows = text.split('\n').filter((l) => inventory.nodes.some((node) => l.startsWith(`${node.name} `)));
    assert.equal(rows.length, n);
    for (const row of rows) assert.equal(row.match(/n\/m/g)?.length, n - 1, row);
    assert.match(text, /n\/m not measured: the run was interrupted before these pings ended/);
    assert.match(
      text,
      new RegExp(`the ping matrix was cut short by the interrupt: ${n * (n - 1)} of ${n * (n - 1)} directions not measured \\(n/m\\)`),
    );
    assert.match(text, /interrupted during "Ping matrix"/);
  });

  it('a ping that ran and lost its requests stays FAIL; an uninterrupted run shows FAIL for an unmeasured cell as before', () => {
    const matrix: Matrix = {
      nodes: ['a', 'b'],
      cells: {
        a: { b: { ok: false, loss: 100, transmitted: 3, received: 0 } },
        b: { a: { ok: false, loss: 100, transmitted: 0, received: 0, error: 'ping did not report (script cut short)' } },
      },
    };
    const cut = renderMatrix(matrix, { color: false, interrupted: true });
    assert.match(cut, /^a\s+-\s+FAIL 100%$/m);
    assert.match(cut, /^b\s+n\/m\s+-$/m);
    const whole = renderMatrix(matrix, { color: false });
    assert.match(whole, /^b\s+FAIL\s+-$/m);
    assert.doesNotMatch(whole, /n\/m/);
  });
});

describe("up's warnings name the forward clashes validate and plan name (Q8 F-warn)", () => {
  it('homelab: ms-1 and wk-2, once each, after the run own warnings', () => {
    const homelab = loadInventory('inventories/homelab.yaml');
    const clashes = forwardClashWarnings(homelab);
    assert.ok(clashes.some((w) => /^ms-1: its forward 203\.0\.113\.10:51821 -> :51820 has another external port/.test(w)));
    assert.ok(clashes.some((w) => /^wk-2: /.test(w)));
    const warnings = upWarnings({ warnings: ['the run said this'] }, clashes);
    assert.deepEqual(warnings, ['the run said this', ...clashes]);
    assert.deepEqual(upWarnings({ warnings }, clashes), warnings, 'not repeated');
  });
});
