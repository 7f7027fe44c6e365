/** Exit codes are set in one place (defect 6): commands return outcomes, main maps them through one table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { upOutcome } from '../../src/commands/up.js';
import { ExitCode } from '../../src/errors.js';
import { main } from '../../src/main.js';

test('the README exit-code table is exactly the table in src/errors.ts', () => {
  const readme = readFileSync('README.md', 'utf8');
  const section = readme.slice(readme.indexOf('### Exit codes'));
  const rows = [...section.slice(0, section.indexOf('\n## ')).matchAll(/^\| (\d+) \|/gm)].map((m) => Number(m[1]));
  assert.deepEqual(rows, Object.values(ExitCode));
});

test('no module but main sets the exit code (commands return outcomes)', () => {
  const hits = execFileSync('grep', ['-rnE', 'process\\.exitCode *=|process\\.exit\\(', 'src'], { encoding: 'utf8' })
    .trim()
    .split('\n')
    .filter((line) => !line.startsWith('src/cli.ts:') && !line.startsWith('src/interrupt.ts:'));
  assert.deepEqual(hits, []);
});

test('an interrupted up exits 130, a stopped one 1, a converged or planned one 0', () => {
  assert.equal(ExitCode[upOutcome('interrupted')], 130);
  assert.equal(ExitCode[upOutcome('stopped')], 1);
  assert.equal(ExitCode[upOutcome('converged')], 0);
  assert.equal(ExitCode[upOutcome('planned')], 0);
});

test('bad flags are bad input (exit 2) before anything is contacted', async () => {
  const stderr = process.stderr.write;
  process.stderr.write = (() => true) as typeof process.stderr.write;
  try {
    assert.equal(await main(['node', 'meshctl', 'up', 'inventories/homelab.yaml', '--yes', '--forks', '0']), 2);
  } finally {
    process.stderr.write = stderr;
  }
});
