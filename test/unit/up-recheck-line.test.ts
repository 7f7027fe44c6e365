/**
 * The ping phase's second round in `up`'s text output (src/commands/up.ts recheckLine, printSummary): before, it was
 * only in `up --json` (matrix.recheck), and a run that paused up to 17 s at the ping matrix said nothing of why.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { printSummary, recheckLine } from '../../src/commands/up.js';

describe("up's text output names the ping phase's second round", () => {
  it('says which pairs answered only then, and which still did not', () => {
    const line = recheckLine({ pairs: ['home-6 office-3', 'office-6 office-9'], answered: ['home-6 office-3'], ms: 7100 });
    assert.match(line, /^second round: 2 pairs failed the first round and were pinged again \(7\.1 s;/);
    assert.match(line, /answered then: home-6<->office-3; still no answer: office-6<->office-9$/);
    assert.doesNotMatch(recheckLine({ pairs: ['a b'], answered: ['a b'], ms: 200 }), /still no answer/);
  });

  it('printSummary writes it under the matrix, and nothing when there was no second round', async () => {
    const summary = async (recheck?: { pairs: string[]; answered: string[]; ms: number }) => {
      const out = new PassThrough();
      let text = '';
      out.on('data', (c: Buffer) => (text += c.toString()));
      const matrix = {
        nodes: ['a', 'b'],
        cells: { a: { b: { ok: true, rttMs: 1 } }, b: { a: { ok: true, rttMs: 1 } } },
        ...(recheck ? { recheck } : {}),
      };
      const report = { result: 'converged', changes: 1, matrix, timings: { totalMs: 1000 }, phases: [] } as unknown as Parameters<
        typeof printSummary
      >[0];
      await printSummary(report, false, out, new Map());
      return text;
    };
    assert.match(
      await summary({ pairs: ['a b'], answered: ['a b'], ms: 200 }),
      /second round: 1 pair failed the first round and was pinged again \(0\.2 s;.*answered then: a<->b\n/,
    );
    assert.doesNotMatch(await summary(), /second round/);
  });
});
