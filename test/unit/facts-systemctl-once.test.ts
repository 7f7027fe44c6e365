/**
 * Issue 10 (node-side cost): up's facts probe asks systemd about wg-quick@IFACE and meshctl's re-resolve timer with
 * ONE `systemctl is-enabled` and ONE `systemctl is-active` for both units (src/facts/lean.ts mc_scr); it ran four
 * (is-enabled and is-active per unit; strace of a 16-node lab's home-1 during a second `up`, 2026-12-01). Each run is
 * a process and a D-Bus connection PID 1 serves (perf: PID 1 and systemctl were ~20 % of the nodes' CPU of a second
 * `up`).
 *
 * The probe's `service` and `reresolve` sections are cut out of factsProbeScript (so the test reads what up sends) and
 * run in this host's shell against a stand-in `systemctl` that answers as systemd 252 does (Debian 12, checked on a lab
 * node): `is-enabled A B` prints one state per unit and stops at the first unit without a unit file ("Failed to get
 * unit file state", exit 1, nothing more on stdout); `is-active A B` prints one state per unit, `inactive` for an
 * unknown one. The same sections of the shared definitions (FACTS, one unit per run) give the expected facts.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FACTS, factsScript, readFact, splitSections, type FactDef } from '../../src/facts/definitions.js';
import { factsProbeScript } from '../../src/facts/node-facts.js';
import { PATH_PRELUDE } from '../../src/facts/sections.js';
import { reresolvePaths } from '../../src/remote/wireguard.js';
import { tempDir } from '../support/temp-dir.js';

const ctx = { interface: 'wg0', listenPort: 51820 };
const SERVICE = 'wg-quick@wg0';
const TIMER = 'meshctl-reresolve@wg0.timer';

/** The section NAME of a combined script, as the script has it (its begin line to its end line). */
function sectionOf(script: string, name: string): string {
  const begin = script.indexOf(`echo '@@meshctl begin ${name}'\n`);
  const endLine = `@@meshctl end ${name} rc=%s\\n' "$?"`;
  const end = script.indexOf(endLine, begin);
  assert.ok(begin >= 0 && end > begin, `section ${name} in the script`);
  return script.slice(begin, end + endLine.length);
}

/** What up's probe sends for the two sections (lean where it has a lean definition). */
const upSections = () => {
  const probe = factsProbeScript(ctx);
  return [PATH_PRELUDE, sectionOf(probe, FACTS.service.name), sectionOf(probe, FACTS.reresolve.name)].join('\n');
};
/** The shared definitions' sections: one systemctl run per unit and question. */
const sharedSections = () => factsScript([FACTS.service, FACTS.reresolve] as FactDef<unknown>[], ctx);

interface Node {
  /** unit -> [is-enabled answer (undefined: no unit file), is-active answer (undefined: unknown unit)] */
  units: Record<string, [string | undefined, string | undefined]>;
  /** which of the re-resolve timer's three files exist */
  timerFiles: Array<'script' | 'service' | 'timer'>;
}

/** Runs `script` on a stand-in node: the facts of the two sections and the systemctl runs (their arguments). */
function run(script: string, node: Node) {
  const dir = tempDir('meshctl-systemctl-once-');
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  const log = join(dir, 'calls');
  writeFileSync(log, '');
  const enabled = Object.entries(node.units)
    .filter(([, [e]]) => e !== undefined)
    .map(([u, [e]]) => `${u}) echo ${e};;`)
    .join(' ');
  const active = Object.entries(node.units)
    .filter(([, [, a]]) => a !== undefined)
    .map(([u, [, a]]) => `${u}) echo ${a};;`)
    .join(' ');
  // systemd 252's systemctl, for these two verbs
  writeFileSync(
    join(bin, 'systemctl'),
    [
      '#!/bin/sh',
      `echo "$*" >> ${log}`,
      'verb=$1; shift',
      'for u in "$@"; do',
      `  case $verb in is-enabled) case $u in ${enabled} *) echo "Failed to get unit file state for $u: No such file or directory" >&2; exit 1;; esac;;`,
      `  is-active) case $u in ${active} *) echo inactive;; esac;; esac`,
      'done',
    ].join('\n'),
  );
  chmodSync(join(bin, 'systemctl'), 0o755);
  const r = reresolvePaths(ctx.interface);
  const files = { script: r.script, service: r.service, timer: r.timer };
  const local = Object.entries(files)
    .reduce((text, [key, path]) => {
      const stand = join(dir, key);
      if (node.timerFiles.includes(key as 'script')) writeFileSync(stand, `# ${key}\n`);
      return text.replaceAll(path, stand);
    }, script)
    .replace(PATH_PRELUDE, `export LC_ALL=C PATH=${bin}:/usr/bin:/bin`)
    .replaceAll('[ -d /run/systemd/system ]', '[ -d / ]');
  const out = spawnSync('/bin/sh', ['-c', local], { encoding: 'utf8' });
  assert.equal(out.status, 0, out.stderr);
  const sections = splitSections(out.stdout);
  return {
    service: readFact(FACTS.service, sections, ctx),
    reresolve: readFact(FACTS.reresolve, sections, ctx),
    calls: readFileSync(log, 'utf8').split('\n').filter(Boolean),
  };
}

const converged: Node = {
  units: { [SERVICE]: ['enabled', 'active'], [TIMER]: ['enabled', 'active'] },
  timerFiles: ['script', 'service', 'timer'],
};

describe("up's facts probe: one systemctl is-enabled and one is-active for wg-quick@ and the re-resolve timer", () => {
  it('a converged node with the timer: two systemctl runs where the shared definitions ran four, the same facts', () => {
    const now = run(upSections(), converged);
    const old = run(sharedSections(), converged);
    assert.equal(old.calls.length, 4, old.calls.join('\n'));
    assert.deepEqual(now.calls, [`is-enabled ${SERVICE} ${TIMER}`, `is-active ${SERVICE} ${TIMER}`]);
    assert.deepEqual(now.service, old.service);
    assert.deepEqual(now.reresolve, old.reresolve);
    // not vacuous: the stand-in's answers are what the facts hold
    assert.deepEqual(
      [now.service.enabled, now.service.active, now.reresolve.enabled, now.reresolve.active],
      ['enabled', 'active', 'enabled', 'active'],
    );
  });

  const cases: Array<[string, Node, number]> = [
    // each unit its own answer: the lines are not swapped
    [
      'the timer disabled and stopped by hand',
      { ...converged, units: { [SERVICE]: ['enabled', 'active'], [TIMER]: ['disabled', 'inactive'] } },
      2,
    ],
    [
      'the service masked and failed, the timer enabled',
      { ...converged, units: { [SERVICE]: ['masked', 'failed'], [TIMER]: ['enabled', 'activating'] } },
      2,
    ],
    // is-enabled stops at the service (no wg-quick@.service: wireguard-tools removed): the timer asked on its own
    ['no wg-quick@ unit file, the timer present', { ...converged, units: { [TIMER]: ['enabled', 'active'] } }, 3],
    // the timer's script left behind without its unit files: is-enabled prints the service's line only
    ['a stray re-resolve script, no timer unit', { units: { [SERVICE]: ['enabled', 'active'] }, timerFiles: ['script'] }, 2],
    ['neither unit', { ...converged, units: {} }, 3],
    // no timer file: the timer is not asked (FACTS.reresolve), the service in one run per question as before
    ['no re-resolve timer', { units: { [SERVICE]: ['disabled', 'inactive'] }, timerFiles: [] }, 2],
  ];
  for (const [name, node, runs] of cases)
    it(`${name}: the shared definitions' facts, ${runs} systemctl runs`, () => {
      const now = run(upSections(), node);
      const old = run(sharedSections(), node);
      assert.deepEqual(now.service, old.service);
      assert.deepEqual(now.reresolve, old.reresolve);
      assert.equal(now.calls.length, runs, now.calls.join('\n'));
    });
});
