/**
 * A new user's finding (2026-12-01): a Ctrl-C during `apt-get install` left dpkg with wireguard-tools half done (`iHR`,
 * half-configured), `wg` present; the install step only looked for the program, passed, and later phases failed with
 * a confusing error. Up's facts probe now reads dpkg's state of meshctl's packages (FACTS.dpkgStatus; in up's probe
 * from its one awk, src/facts/lean.ts) and the install step plans `dpkg --configure -a` and a reinstall for a package
 * left half done. The node side is in the lab (test/lab/dpkg-repair.test.ts).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FACTS, parseDpkgStatus } from '../../src/facts/definitions.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import { factsProbeScript, type NodeFacts } from '../../src/facts/node-facts.js';
import { splitSections } from '../../src/facts/sections.js';
import { dpkgHalfDone, DPKG_PACKAGES, planInstall } from '../../src/steps/install.js';
import { describeChange } from '../../src/engine/plan.js';
import { tempDir } from '../support/temp-dir.js';

const ctx = { interface: 'wg0', listenPort: 51820 };
const hasDpkgQuery = spawnSync('sh', ['-c', 'command -v dpkg-query']).status === 0;

/** An admin directory as dpkg keeps it: a status file and a journal record newer than it (updates/0001). */
function dpkgDir(): string {
  const dir = tempDir('meshctl-dpkg-');
  mkdirSync(join(dir, 'updates'));
  mkdirSync(join(dir, 'info'));
  const stanza = (name: string, status: string) =>
    `Package: ${name}\nStatus: ${status}\nPriority: optional\nVersion: 1.0-1\nArchitecture: amd64\nDescription: test\n more text\n`;
  writeFileSync(
    join(dir, 'status'),
    [
      stanza('aaa', 'install ok installed'),
      stanza('wireguard-go', 'deinstall ok config-files'),
      stanza('wireguard-tools', 'install reinstreq half-installed'),
      stanza('zzz', 'install ok unpacked'),
    ].join('\n'),
  );
  // dpkg's journal: what it wrote after the status file (read after it: the newer record wins)
  writeFileSync(join(dir, 'updates', '0001'), `${stanza('wireguard-tools', 'install ok half-configured')}\n`);
  return dir;
}

/** A section's output through its parser (FACTS.dpkgStatus's), the script run in this host's shell. */
function runSection(command: string) {
  const r = spawnSync('/bin/sh', ['-c', `echo '@@meshctl begin dpkg'\n${command}\necho '@@meshctl end dpkg rc=0'`], { encoding: 'utf8' });
  return FACTS.dpkgStatus.parse(splitSections(r.stdout).get('dpkg'), ctx);
}

describe("dpkg's state of meshctl's packages in up's facts probe", () => {
  it('the probe has the section, read by the awk it runs anyway (no dpkg-query exec)', () => {
    const script = factsProbeScript(ctx);
    assert.match(script, /@@meshctl begin dpkg/);
    assert.doesNotMatch(script, /dpkg-query/);
    assert.deepEqual(DPKG_PACKAGES, ['wireguard-tools', 'wireguard-go']);
  });

  it("the awk reads what dpkg-query reads: the status file, then dpkg's journal", { skip: !hasDpkgQuery && 'no dpkg-query here' }, () => {
    const dir = dpkgDir();
    const shared = FACTS.dpkgStatus.command(ctx).replace('dpkg-query -W', `dpkg-query --admindir=${dir} -W`);
    const lean = LEAN_FACTS.dpkgStatus.command(ctx).replaceAll('/var/lib/dpkg', dir);
    const expected = { 'wireguard-go': 'rc', 'wireguard-tools': 'iF' };
    assert.deepEqual(runSection(shared), expected);
    assert.deepEqual(runSection(lean), expected);
    // without the journal record: the status file's half-installed, reinstall-required package
    spawnSync('rm', [join(dir, 'updates', '0001')]);
    assert.deepEqual(runSection(shared), { 'wireguard-go': 'rc', 'wireguard-tools': 'iHR' });
    assert.deepEqual(runSection(lean), { 'wireguard-go': 'rc', 'wireguard-tools': 'iHR' });
  });

  it('without dpkg the section is empty; a capture without it has no dpkgStatus', () => {
    assert.deepEqual(runSection(LEAN_FACTS.dpkgStatus.command(ctx).replaceAll('/var/lib/dpkg', '/nonexistent')), {});
    assert.equal(FACTS.dpkgStatus.parse(undefined, ctx), undefined);
    assert.deepEqual(parseDpkgStatus(['wireguard-tools ii ', 'wireguard-tools:amd64 iF', 'junk', 'x i']), { 'wireguard-tools': 'iF' });
  });
});

function debianWithTools(dpkgStatus: NodeFacts['dpkgStatus'], packageManager: NodeFacts['packageManager'] = 'apt'): NodeFacts {
  return {
    packageManager,
    os: { id: 'debian', versionId: '12', idLike: [], prettyName: 'Debian GNU/Linux 12 (bookworm)' },
    kernelModule: 'loaded',
    tools: { wg: true, wgQuick: true, wireguardGo: false, tcpdump: true, ping: true },
    ...(dpkgStatus ? { dpkgStatus } : {}),
  } as unknown as NodeFacts;
}

describe('the install step repairs a package dpkg left half done', () => {
  it('half done: unpacked, half-configured, half-installed, triggers, reinstall-required; not: installed, removed', () => {
    for (const a of ['iU', 'iF', 'iHR', 'iW', 'it', 'iiR', 'hF']) assert.equal(dpkgHalfDone(a), true, a);
    for (const a of ['ii', 'hi', 'rc', 'un', 'pn']) assert.equal(dpkgHalfDone(a), false, a);
  });

  it('wg present but wireguard-tools half-configured: dpkg --configure -a, then the reinstall; the plan says so', () => {
    const action = planInstall(debianWithTools({ 'wireguard-tools': 'iF' }));
    assert.ok(action, 'an install is planned although wg and wg-quick are there');
    const lines = action.script.split('\n');
    const configure = lines.findIndex((l) => /dpkg --configure -a/.test(l));
    const install = lines.findIndex((l) =>
      /apt-get install -y -qq --no-install-recommends --reinstall wireguard-tools >\/dev\/null$/.test(l),
    );
    assert.ok(configure > 0 && install > configure, action.script);
    const change = action.changes[0]!;
    assert.match(
      describeChange(change),
      /^repair dpkg's half-done wireguard-tools: dpkg --configure -a \(it configures every package dpkg left pending on the node, not only these\), then reinstall wireguard-tools \(apt\)$/,
    );
    assert.ok(change.kind === 'install' && change.why.some((w) => /half-configured \(iF\)/.test(w)), JSON.stringify(change));
  });

  it('half-installed and reinstall-required (iHR), with wireguard-go missing too: both in one reinstall', () => {
    const facts = debianWithTools({ 'wireguard-tools': 'iHR' });
    facts.kernelModule = 'missing';
    const action = planInstall(facts)!;
    assert.match(action.script, /--reinstall wireguard-tools wireguard-go >\/dev\/null/);
    assert.ok(action.changes[0]!.kind === 'install' && /reinstall required/.test(action.changes[0]!.why[0]!));
    // RV-12: wireguard-go was only missing: installed, not "reinstalled"
    assert.match(describeChange(action.changes[0]!), /then reinstall wireguard-tools and install wireguard-go \(apt\)$/);
  });

  it('installed (ii), removed (rc) or not probed: nothing to do, as before; another package manager: as before', () => {
    assert.equal(planInstall(debianWithTools({ 'wireguard-tools': 'ii', 'wireguard-go': 'rc' })), undefined);
    assert.equal(planInstall(debianWithTools(undefined)), undefined);
    assert.equal(planInstall(debianWithTools({ 'wireguard-tools': 'iF' }, 'dnf')), undefined);
  });
});
