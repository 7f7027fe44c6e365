/**
 * Every `systemctl enable` / `disable` meshctl's scripts run goes through src/remote/systemctl.ts, so it carries
 * `--no-reload`: the implicit daemon-reload after each one cost a node 150-180 ms of PID 1's CPU (measured in the
 * lab; the reasons are in that file).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { systemctlEnablement } from '../../src/remote/systemctl.js';

/** Every .ts file under dir, recursively. */
const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );

describe('systemctl enable/disable in remote scripts', () => {
  it('are built with --no-reload, and --now where asked', () => {
    assert.equal(systemctlEnablement('enable', 'wg-quick@wg0', true), 'systemctl enable --now --no-reload wg-quick@wg0');
    assert.equal(
      systemctlEnablement('disable', 'meshctl-reresolve@wg0.timer'),
      'systemctl disable --no-reload meshctl-reresolve@wg0.timer',
    );
  });

  it('no script text in src/ spells them out by hand (only advice to people may)', () => {
    const offenders: string[] = [];
    for (const file of sources('src')) {
      if (file.endsWith(join('remote', 'systemctl.ts'))) continue;
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          // comments, and fix texts shown to a person (`fix: ...`), are not run by meshctl
          if (/^\s*(\*|\/\/)/.test(line) || /\bfix:/.test(line)) return;
          if (/systemctl (enable|disable)\b/.test(line)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
        });
    }
    assert.deepEqual(offenders, []);
  });
});
