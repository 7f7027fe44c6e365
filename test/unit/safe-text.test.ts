/**
 * Text from nodes and input files reaches the terminal escaped: the safe-text functions on their own, then the gate
 * report of the facts phase for a node whose /etc/os-release PRETTY_NAME carries terminal escape sequences (the real
 * probe output of a bare node, with its pretty_name line replaced, through the real parser and check).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Chalk } from 'chalk';
import { checkNamed } from '../../src/engine/registry.js';
import type { PhaseReport } from '../../src/engine/types.js';
import { parseFactsProbe } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { renderGateReport } from '../../src/ui/gate-report.js';
import { hasUnsafeText, MAX_SHOWN_CHARS, safeBlock, safeText } from '../../src/ui/safe-text.js';
import { renderChecks } from '../../src/checks/report.js';

const RAW_CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;

describe('safeText', () => {
  it('escapes an OSC title sequence (ESC ] 0 ; ... BEL)', () => {
    assert.equal(safeText('Debian\u001b]0;pwned\u0007 12'), 'Debian\\x1b]0;pwned\\x07 12');
  });
  it('escapes an OSC 52 clipboard write ended by ST (ESC \\)', () => {
    assert.equal(safeText('\u001b]52;c;ZWNobyBoaQ==\u001b\\'), '\\x1b]52;c;ZWNobyBoaQ==\\x1b\\');
  });
  it('escapes CSI sequences (clear screen, cursor up, colour)', () => {
    assert.equal(safeText('\u001b[2J\u001b[1A\u001b[31mred'), '\\x1b[2J\\x1b[1A\\x1b[31mred');
  });
  it('escapes C1 controls (U+009B CSI, U+009D OSC, U+0085 NEL) and DEL', () => {
    assert.equal(safeText('a\u009b2Jb\u009d0;t\u0085c\u007fd'), 'a\\x9b2Jb\\x9d0;t\\x85c\\x7fd');
  });
  it('escapes CR, BS, NUL, tab and newline in a one-line value', () => {
    assert.equal(safeText('ok\rFAIL\b\u0000\t\n'), 'ok\\x0dFAIL\\x08\\x00\\x09\\x0a');
  });
  it('escapes bidirectional overrides', () => {
    assert.equal(safeText('abc\u202edcb\u2066'), 'abc\\u202edcb\\u2066');
  });
  it('keeps printable ASCII, backslashes and other Unicode as they are', () => {
    const text = 'ms-1: Debian GNU/Linux 12 (bookworm) — größe ✓ \\x1b';
    assert.equal(safeText(text), text);
    assert.equal(hasUnsafeText(text), false);
    assert.equal(hasUnsafeText('a\u001bb'), true);
  });
  it('safeBlock keeps newlines and tabs but escapes CR and ESC', () => {
    assert.equal(safeBlock('line 1\n\tline 2\r\u001b[2K'), 'line 1\n\tline 2\\x0d\\x1b[2K');
  });
  it('leaves no raw control character for any code point below U+00A0', () => {
    const all = Array.from({ length: 0xa0 }, (_, i) => String.fromCharCode(i)).join('');
    assert.doesNotMatch(safeText(all), RAW_CONTROL);
    assert.doesNotMatch(safeText(all), /\n/);
  });
});

describe('node output in reports', () => {
  const inventory = loadInventory('inventories/homelab.yaml');
  const node = inventory.nodes[0]!;
  const hostile = 'Debian\u001b]0;owned\u0007\u001b[2J\u009b1;31m\r 12';
  const probe = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8').replace(/^pretty_name=.*$/m, `pretty_name=${hostile}`);
  const facts = parseFactsProbe(probe, { interface: 'wg0', listenPort: 51820 });

  it('the probe parser keeps the hostile PRETTY_NAME as data (the escaping is the output edge’s job)', () => {
    assert.equal(facts.os.prettyName, hostile);
  });

  it('the facts gate report shows it escaped, with meshctl’s own colours intact', async () => {
    const result = await checkNamed('package-manager-known')!.evaluate({
      node,
      inventory,
      values: { facts } as never,
      reconnect: () => Promise.reject(new Error('not used')),
      mesh: new Map(),
      changedSoFar: false,
    });
    assert.match(result.message, /\u001b\]0;owned/, 'the check message quotes the node');
    const report: PhaseReport = {
      id: 'facts',
      title: 'Connect and gather facts',
      go: 'go',
      verdict: 'STOP',
      durationMs: 10,
      nodes: [
        {
          node: node.name,
          changes: [`note from node: ${hostile}`],
          diff: [`+# ${hostile}`],
          checks: [result, { id: 'x', status: 'fail', message: 'bad', evidence: [hostile] }],
        },
      ],
    };
    const plain = renderGateReport(report, new Chalk({ level: 0 }));
    assert.doesNotMatch(plain, RAW_CONTROL);
    assert.match(plain, /Debian\\x1b\]0;owned\\x07\\x1b\[2J\\x9b1;31m\\x0d 12 with apt/);
    assert.match(plain, /\+# Debian\\x1b/);
    const coloured = renderGateReport(report, new Chalk({ level: 1 }));
    assert.match(coloured, /\u001b\[31m/, 'meshctl’s own colour codes are kept');
    assert.doesNotMatch(coloured, /\u001b\]|\u009b|\u0007|\r/);
  });

  it('verify’s check table shows node text escaped', () => {
    const text = renderChecks([{ node: node.name, id: 'os', status: 'fail', message: hostile, evidence: [hostile] } as never], {
      color: false,
      verbose: true,
    });
    assert.doesNotMatch(text, RAW_CONTROL);
    assert.match(text, /Debian\\x1b\]0;owned/);
  });

  it('a flood of node output quoted in a check is cut at MAX_SHOWN_CHARS (Q9 F-evidence-flood: two 679 KB lines)', () => {
    const flood = `no route to 172.27.15.31 (ctb-edge-1): ${'['.repeat(500_000)}${']'.repeat(500_000)}`;
    const text = renderChecks([{ node: 'wk-2', id: 'route', status: 'fail', message: flood, evidence: [flood] } as never], {
      color: false,
      verbose: true,
    });
    const longest = Math.max(...text.split('\n').map((l) => l.length));
    assert.ok(longest < MAX_SHOWN_CHARS + 200, `longest line ${longest}`);
    assert.match(text, /no route to 172\.27\.15\.31 \(ctb-edge-1\): \[+\.\.\. \(998\d{3} characters more not shown\)/);
    // a block keeps its short lines whole and cuts the long one
    const block = safeBlock(`short line\n${'x'.repeat(5000)}\nlast`);
    assert.deepEqual(
      block.split('\n').map((l) => l.length),
      [10, MAX_SHOWN_CHARS + ' (3000 characters more not shown)'.length + 3, 4],
    );
  });
});
