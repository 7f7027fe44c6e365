/**
 * T's finding 23: `verify --no-color` printed colour codes (verify had no --no-color at all: commander refused it,
 * and the text view was coloured whenever stdout was a terminal, NO_COLOR or not). Now verify decides as up, plan,
 * down, rotate-keys and validate do: colour only on a terminal, never with --no-color or NO_COLOR.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Command } from 'commander';
import { registerVerify, verifyColor } from '../../src/commands/verify.js';
import { buildReport, renderReport } from '../../src/checks/report.js';
import { evaluateVerifyCompact } from '../../src/checks/verify.js';
import { factsFrom, healthyScenario, pairDown } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

const ESC = '\u001b[';

/** A report with a failed pair, a warning (MTU black hole) and every kind of row the text view has. */
function brokenReport() {
  const s = SCENARIOS.mtu!();
  pairDown(s, 'wk-1', 'ms-1');
  const facts = factsFrom(s);
  const { checks, passed } = evaluateVerifyCompact(facts);
  return buildReport(facts.inventory, checks, facts.matrix, facts.unreachable, 1, { passed });
}

describe('verify --no-color (finding 23)', () => {
  it('the command takes --no-color', () => {
    const program = new Command().exitOverride();
    registerVerify(program, () => undefined);
    const verify = program.commands.find((c) => c.name() === 'verify')!;
    assert.ok(
      verify.options.some((o) => o.long === '--no-color'),
      verify.options.map((o) => o.long).join(' '),
    );
    verify.parseOptions(['--no-color']);
    assert.equal(verify.opts().color, false);
  });

  it('colour only on a terminal, and never with --no-color or NO_COLOR', () => {
    const tty = { isTTY: true };
    assert.equal(verifyColor({}, tty, {}), true);
    assert.equal(verifyColor({ color: true }, tty, {}), true);
    assert.equal(verifyColor({ color: false }, tty, {}), false, '--no-color');
    assert.equal(verifyColor({}, tty, { NO_COLOR: '1' }), false, 'NO_COLOR');
    assert.equal(verifyColor({}, { isTTY: false }, {}), false, 'a pipe');
    assert.equal(verifyColor({}, {}, {}), false, 'a file');
  });

  it('the text view without colour holds no escape sequence, with or without --verbose; with colour it does', () => {
    const report = brokenReport();
    assert.ok(report.summary.fail > 0 && report.summary.warn + report.summary.fail > 1);
    for (const verbose of [false, true]) {
      const plain = renderReport(report, { color: false, verbose });
      assert.ok(!plain.includes(ESC), JSON.stringify(plain.slice(Math.max(0, plain.indexOf(ESC) - 40), plain.indexOf(ESC) + 20)));
      assert.match(plain, /FAIL/);
      assert.ok(renderReport(report, { color: true, verbose }).includes(ESC), 'coloured when asked (the check above can fail)');
    }
    const healthy = factsFrom(healthyScenario());
    const verdicts = evaluateVerifyCompact(healthy);
    const text = renderReport(buildReport(healthy.inventory, verdicts.checks, healthy.matrix, healthy.unreachable, 1, verdicts), {
      color: false,
    });
    assert.ok(!text.includes(ESC));
    assert.match(text, /HEALTHY/);
  });
});
