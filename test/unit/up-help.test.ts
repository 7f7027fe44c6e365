/**
 * Findings 24, 25: `up --help` and up's messages read as a new user would. The help said the inventory defaults to
 * "./meshctl.yaml or $MESHCTL_INVENTORY" (the variable comes first), "--json (implies no prompts: use with --yes)",
 * and exit 1 without a lock held by another run; `up --json` without --yes on a terminal was told "no terminal";
 * a STOP said what stopped but not what to do.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { Command } from 'commander';
import { registerUp } from '../../src/commands/up.js';
import { summaryOf } from '../support/up-summary.js';
import { NETWORK_GUARD } from '../support/network-guard.js';

/** `meshctl up --help` as commander prints it (wide enough that no line is wrapped). */
function upHelp(): string {
  const program = new Command('meshctl');
  registerUp(program, () => undefined);
  const up = program.commands.find((c) => c.name() === 'up')!;
  up.configureHelp({ helpWidth: 400 });
  return up.helpInformation() + ((up as unknown as { _afterHelp?: string })._afterHelp ?? '');
}

describe('findings 24, 25: up --help and its messages', () => {
  it('the inventory default in the order meshctl looks (argument, $MESHCTL_INVENTORY, ./meshctl.yaml)', () => {
    assert.match(upHelp(), /inventory file \(default: \$MESHCTL_INVENTORY, then \.\/meshctl\.yaml\)/);
  });

  it('--json says that it needs --yes (or --dry-run), and -y that it is needed without a terminal', () => {
    const help = upHelp();
    assert.match(help, /--json\s+print a JSON report on stdout instead of progress; it asks nothing, so it needs --yes \(or --dry-run\)/);
    assert.match(help, /-y, --yes\s+go on at every gate whose checks pass \(never when a check fails\); needed without a terminal/);
  });

  it('a STOP says what to do next', async () => {
    const text = await summaryOf({
      result: 'stopped',
      stoppedAt: 'baseline',
      phases: [{ id: 'baseline', title: 'Baseline (wipe-verify)', go: '', verdict: 'STOP', durationMs: 1, nodes: [] }],
      timings: { totalMs: 2900, connectMs: 100 },
    });
    assert.match(
      text,
      /STOP at "Baseline \(wipe-verify\)": nothing after it was run \(2\.9 s\); fix what the FAIL lines above name, then run up again/,
    );
  });

  it('a gate answered "no" (its checks passed): no FAIL lines to point at', async () => {
    // a new user's finding (stop 25): "n" at the enable gate said "fix what the FAIL lines above name" with none
    const text = await summaryOf({
      result: 'stopped',
      stoppedAt: 'enable',
      phases: [{ id: 'enable', title: 'Enable wg-quick', go: '', verdict: 'GO', durationMs: 1, nodes: [] }],
      timings: { totalMs: 14_000, connectMs: 100 },
    });
    assert.match(text, /STOP at "Enable wg-quick": nothing after it was run \(14\.0 s\); you answered no\n/);
    assert.doesNotMatch(text, /FAIL lines/);
  });

  it('up --json without --yes: told that --json asks nothing (not that there is no terminal), exit 2, nothing contacted', () => {
    const run = spawnSync(process.execPath, ['--import', NETWORK_GUARD, '--import', 'tsx', 'test/support/run-main-many.ts'], {
      input: JSON.stringify([['up', 'inventories/homelab.yaml', '--json']]),
      encoding: 'utf8',
      env: { ...process.env, FORCE_COLOR: '0' },
      timeout: 60_000,
    });
    assert.equal(run.status, 0, run.stderr);
    const [result] = JSON.parse(run.stdout) as { code: number; stderr: string }[];
    assert.equal(result!.code, 2);
    assert.match(
      result!.stderr,
      /--json asks nothing at the gates: add --yes \(gates still stop the run when a check fails\) or --dry-run/,
    );
  });
});
