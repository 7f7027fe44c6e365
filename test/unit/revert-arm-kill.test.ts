/**
 * The rollback timer survives a kill of the arm script at any line (field report of 2026-12-01, lab t1: a Ctrl-C
 * 0.05-0.15 s into the enable step left a node on its unconfirmed config with no timer, 2 of 3 tries). The enable
 * step re-arms the config step's timer; the script used to stop the old timer before starting the new one.
 *
 * The scripts run under a real `sh`, with `systemctl` and `systemd-run` replaced by stubs that log what they were
 * asked, and the run's directory moved from /run/meshctl into a temporary one (nothing of the host is touched).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { armScript, disarmScript } from '../../src/engine/revert.js';

const RUN = { runId: '0123456789abcdef', deadlineS: 120 };
const root = mkdtempSync(join(tmpdir(), 'meshctl-revert-kill-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A stub that appends its arguments to $STUB_LOG, one call per line. */
function stub(dir: string, name: string): void {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\necho "${name} $*" >> "$STUB_LOG"\n`);
  chmodSync(path, 0o755);
}

/** Runs `script` with the stubs first on PATH and /run/meshctl moved under `case`; returns the stub log's lines. */
function run(caseDir: string, script: string): void {
  const result = spawnSync('sh', ['-c', script.replaceAll('/run/meshctl/', `${caseDir}/run/`)], {
    env: { PATH: `${join(root, 'bin')}:/usr/bin:/bin`, STUB_LOG: join(caseDir, 'log') },
    encoding: 'utf8',
  });
  assert.ok(result.status === 0 || result.status === null, result.stderr);
}

/** The timers still armed after the calls logged in `caseDir`: started by systemd-run, not stopped since. */
function armedTimers(caseDir: string): string[] {
  const armed = new Set<string>();
  let log = '';
  try {
    log = readFileSync(join(caseDir, 'log'), 'utf8');
  } catch {
    return [];
  }
  for (const line of log.split('\n')) {
    const started = /^systemd-run .*--unit=(\S+)/.exec(line);
    if (started) armed.add(started[1]!);
    const stopped = /^systemctl stop (\S+)\.timer$/.exec(line);
    if (!stopped) continue;
    const pattern = stopped[1]!;
    for (const unit of [...armed]) {
      if (pattern.endsWith('-*') ? unit.startsWith(pattern.slice(0, -1)) : unit === pattern) armed.delete(unit);
    }
  }
  return [...armed];
}

/**
 * The script's first `n` lines for every `n` where a kill can land: between top-level commands, never inside a
 * here-document or a compound command (`if ... fi`, `for ... done`, `{ ... }`), which the shell reads whole.
 */
function cutPoints(script: string): string[] {
  const lines = script.split('\n');
  const cuts: string[] = [];
  let heredoc: string | undefined;
  let depth = 0;
  for (let n = 0; n <= lines.length; n++) {
    if (heredoc === undefined && depth === 0) cuts.push(lines.slice(0, n).join('\n'));
    const line = lines[n]?.trim();
    if (line === undefined) break;
    if (heredoc !== undefined) {
      if (line === heredoc) heredoc = undefined;
      continue;
    }
    const opened = /<<'(\w+)'$/.exec(line);
    if (opened) heredoc = opened[1];
    if ((/^if\b/.test(line) && !/\bfi$/.test(line)) || (/^for\b/.test(line) && !/\bdone$/.test(line)) || line === '{') depth++;
    if (line === 'fi' || line === 'done' || line.startsWith('} ')) depth--;
  }
  return cuts;
}

describe('rollback arm: a kill at any line leaves a timer armed', () => {
  const bin = join(root, 'bin');
  spawnSync('mkdir', ['-p', bin]);
  stub(bin, 'systemctl');
  stub(bin, 'systemd-run');

  it("the enable step re-arms the config step's timer: at every cut, one timer at least is armed", () => {
    const first = armScript('wg0', RUN, true, 'config');
    const second = armScript('wg0', RUN, true, 'enable');
    const cuts = cutPoints(second);
    assert.ok(cuts.length > 10, `${cuts.length} cut points`);
    cuts.forEach((cut, i) => {
      const caseDir = join(root, `case-${i}`);
      run(caseDir, first);
      assert.deepEqual(armedTimers(caseDir), ['meshctl-revert-0123456789abcdef-config']);
      run(caseDir, cut);
      assert.ok(armedTimers(caseDir).length >= 1, `killed after line ${cut.split('\n').length}: no timer armed\n${cut.split('\n').at(-1)}`);
    });
    // run whole, only the enable step's timer is left
    const whole = join(root, 'whole');
    run(whole, first);
    run(whole, second);
    assert.deepEqual(armedTimers(whole), ['meshctl-revert-0123456789abcdef-enable']);
  });

  it('a confirmed run stops every timer it armed, also one a killed arm left behind', () => {
    const caseDir = join(root, 'disarm');
    run(caseDir, armScript('wg0', RUN, true, 'config'));
    // the enable step's arm killed right after starting its timer, before stopping the config step's
    const second = armScript('wg0', RUN, true, 'enable');
    run(caseDir, second.slice(0, second.indexOf('\n', second.indexOf('systemd-run'))));
    assert.equal(armedTimers(caseDir).length, 2);
    run(caseDir, disarmScript(RUN.runId));
    assert.deepEqual(armedTimers(caseDir), []);
  });

  it('a disarm that finds no snapshot says so (rollback=gone), never "disarmed": whether the node went back is unknown', () => {
    // a review's finding (stop 25): another run's probe removed the record, and the disarm reported a confirmed change
    const caseDir = join(root, 'gone');
    mkdirSync(join(caseDir, 'run'), { recursive: true });
    const out = spawnSync('sh', ['-c', disarmScript(RUN.runId).replaceAll('/run/meshctl/', `${caseDir}/run/`)], {
      env: { PATH: `${join(root, 'bin')}:/usr/bin:/bin`, STUB_LOG: join(caseDir, 'log') },
      encoding: 'utf8',
    }).stdout;
    assert.match(out, /^rollback=gone$/m);
    assert.doesNotMatch(out, /disarmed/);
  });
});
