/**
 * Q9 F-perm-rollback: the node's WireGuard files owned by another user or writable by others are a STOP at up's
 * baseline (`wireguard-file-modes`) and a failing verify check (`file-modes`); the .bak of wg0.conf is root's 0600
 * whatever the old file's owner and mode. Q9 F-immutable: a write that cannot rename over an immutable file leaves
 * no PATH.meshctl-tmp behind.
 *
 * test/fixtures/facts/file-modes/ holds the `wgfiles` section captured on nodes of the homelab lab (`lab up
 * inventories/homelab.yaml --name x11`, `up --yes`), run with `lab exec NODE -- sh -c SCRIPT`: `.shared.txt` is
 * FACTS.wireguardFiles' own stat, `.lean.txt` up's lean section (one stat shared with the key's mode and the file's
 * size), `.probe.txt` up's whole facts probe (factsProbeScript; SSH_CONNECTION set by hand):
 *   converged-wk-1: after `up`
 *   q9-ms-1: Q9's setup: `chmod 755 /etc/wireguard; chown nobody:nogroup /etc/wireguard/wg0.key
 *     /etc/wireguard/wg0.conf; chmod 666 /etc/wireguard/wg0.conf`
 *   key-640-wk-2: `chmod 640 /etc/wireguard/wg0.key`
 * None of them holds the node's private key (checked on ms-1 with `grep -c -F -f /etc/wireguard/wg0.key`: 0).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, chownSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FACTS, readFact, type WireGuardFileMode } from '../../src/facts/definitions.js';
import { LEAN_FACTS } from '../../src/facts/lean.js';
import { splitSections } from '../../src/facts/sections.js';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { checkNamed } from '../../src/engine/registry.js';
import { fileModeProblems, judgeWireGuardFiles } from '../../src/checks/file-modes.js';
import { atomicWriteScript } from '../../src/steps/action.js';
import { loadInventory } from '../../src/inventory/load.js';
import { tempDir } from '../support/temp-dir.js';

const FIXTURES = 'test/fixtures/facts/file-modes';
const target = { interface: 'wg0', listenPort: 51820 };
const section = (name: string) => readFact(FACTS.wireguardFiles, splitSections(readFileSync(`${FIXTURES}/${name}.txt`, 'utf8')), target);

const Q9: WireGuardFileMode[] = [
  { path: '/etc/wireguard', type: 'directory', mode: '755', uid: 0, owner: 'root' },
  { path: '/etc/wireguard/wg0.key', type: 'regular file', mode: '600', uid: 65534, owner: 'nobody' },
  { path: '/etc/wireguard/wg0.pub', type: 'regular file', mode: '644', uid: 0, owner: 'root' },
  { path: '/etc/wireguard/wg0.conf', type: 'regular file', mode: '666', uid: 65534, owner: 'nobody' },
];

describe('the facts read the owner and mode of /etc/wireguard, the key, the .pub and wg0.conf (lab captures)', () => {
  it("parses Q9's node as stat printed it: owners and modes (failed before: there was no such fact)", () => {
    assert.deepEqual(section('q9-ms-1.shared'), Q9);
  });

  it("up's lean section (the probe's one stat) prints what the shared stat prints", () => {
    for (const name of ['q9-ms-1', 'converged-wk-1'])
      assert.equal(readFileSync(`${FIXTURES}/${name}.lean.txt`, 'utf8'), readFileSync(`${FIXTURES}/${name}.shared.txt`, 'utf8'), name);
    assert.equal(LEAN_FACTS.wireguardFiles.name, FACTS.wireguardFiles.name);
  });

  it("up's whole facts probe gives NodeFacts.wireguardFiles (the same stat as the key's mode: still one stat)", () => {
    const facts = parseFactsProbe(readFileSync(`${FIXTURES}/q9-ms-1.probe.txt`, 'utf8'), target);
    assert.deepEqual(facts.wireguardFiles, Q9);
    assert.equal(facts.keys.privateKeyMode, '600');
    // one stat in the lean probe's script: the key's mode, the file's size and the owners come from it
    const script = LEAN_FACTS.wireguardFiles.command(target) + LEAN_FACTS.keyFile.command(target);
    assert.equal([...new Set(script.match(/stat -c '[^']*' -- [^\n]*/g))].length, 1);
  });

  it('a node whose probe did not read them (an older capture) has no wireguardFiles, and the check warns', () => {
    assert.equal(section('q9-ms-1.shared').length, 4);
    assert.equal(judgeWireGuardFiles('wg0', undefined).status, 'warn');
  });
});

describe('the verdict on the files (up: wireguard-file-modes at the baseline; verify: file-modes)', () => {
  it('passes on a converged node: root:root, 0700 / 0600 / 0644 / 0600', () => {
    const j = judgeWireGuardFiles('wg0', section('converged-wk-1.shared'));
    assert.equal(j.status, 'pass', j.message);
    assert.match(j.message, /\/etc\/wireguard\/wg0\.key 0600/);
  });

  it("fails Q9's node naming each file, its owner and mode, why it matters, the fix and to check the content first", () => {
    const j = judgeWireGuardFiles('wg0', Q9);
    assert.equal(j.status, 'fail');
    assert.match(
      j.message,
      /\/etc\/wireguard\/wg0\.key is owned by nobody \(uid 65534\), not root: another user can read or replace the private key/,
    );
    assert.match(
      j.message,
      /\/etc\/wireguard\/wg0\.conf is owned by nobody \(uid 65534\), not root, writable by group and others \(mode 0666\)/,
    );
    assert.match(j.message, /PostUp command that root runs when wg-quick starts/);
    assert.match(j.message, /meshctl changes nothing on this node: check the content first/);
    // a pending key another user could have planted goes too (X13)
    assert.match(j.message, /; rm -f \/etc\/wireguard\/wg0\.key\.new \/etc\/wireguard\/wg0\.key\.new\.meshctl-tmp;/);
    assert.match(
      j.message,
      /chown root:root \/etc\/wireguard\/wg0\.key \/etc\/wireguard\/wg0\.conf; chmod 700 \/etc\/wireguard; chmod 600 \/etc\/wireguard\/wg0\.key \/etc\/wireguard\/wg0\.conf/,
    );
    assert.match(j.message, /rotate-keys/);
    assert.ok(j.evidence?.includes('/etc/wireguard/wg0.conf: regular file, mode 0666, owner nobody (uid 65534)'), String(j.evidence));
    // the .pub and the directory (755: others cannot write it) are not named as wrong
    assert.deepEqual(
      fileModeProblems('wg0', Q9).map((p) => p.path),
      ['/etc/wireguard/wg0.key', '/etc/wireguard/wg0.conf'],
    );
  });

  it('fails a root key others may read (lab: chmod 640), with only a chmod in the fix', () => {
    const j = judgeWireGuardFiles('wg0', section('key-640-wk-2.lean'));
    assert.equal(j.status, 'fail');
    assert.match(j.message, /wg0\.key is readable by group \(mode 0640\): another user can read the private key/);
    assert.match(j.message, /then fix the modes as root: chmod 600 \/etc\/wireguard\/wg0\.key;/);
    assert.doesNotMatch(j.message, /chown/);
  });

  it('fails a directory, .pub or wg0.conf others may write, another owner of any, and a symbolic link', () => {
    const f = (path: string, mode: string, uid = 0, type = 'regular file'): WireGuardFileMode => ({
      path,
      type,
      mode,
      uid,
      owner: uid === 0 ? 'root' : 'alice',
    });
    const cases: Array<[WireGuardFileMode, RegExp]> = [
      [f('/etc/wireguard', '777', 0, 'directory'), /writable by group and others \(mode 0777\): another user can replace or add files/],
      [f('/etc/wireguard', '700', 1000, 'directory'), /owned by alice \(uid 1000\), not root/],
      [f('/etc/wireguard/wg0.pub', '664'), /writable by group \(mode 0664\): another user can change the public key/],
      [f('/etc/wireguard/wg0.conf', '602'), /writable by others \(mode 0602\): another user can change it/],
      [f('/etc/wireguard/wg0.conf', '777', 0, 'symbolic link'), /a symbolic link .*: its target is not judged/],
      [f('/etc/wireguard/wg0.key', '604'), /readable by others \(mode 0604\)/],
    ];
    for (const [file, words] of cases) {
      const j = judgeWireGuardFiles('wg0', [file]);
      assert.equal(j.status, 'fail', `${file.path} ${file.mode}`);
      assert.match(j.message, words);
    }
    // what passes: a root key 0400, a 0644 wg-quick file, a 0755 directory, another interface's files
    for (const file of [
      f('/etc/wireguard/wg0.key', '400'),
      f('/etc/wireguard/wg0.conf', '644'),
      f('/etc/wireguard', '755', 0, 'directory'),
      f('/etc/wireguard/wg1.conf', '666', 1000),
    ])
      assert.equal(judgeWireGuardFiles('wg0', [file]).status, 'pass', `${file.path} ${file.mode}`);
  });

  it('fails a wg-quick file others may read while it holds a key line (RV6 F3: the quick-start 0644 wg0.conf passed)', () => {
    const conf: WireGuardFileMode = { path: '/etc/wireguard/wg0.conf', type: 'regular file', mode: '644', uid: 0, owner: 'root' };
    let asked = 0;
    const j = judgeWireGuardFiles('wg0', [conf], () => ++asked > 0);
    assert.equal(j.status, 'fail');
    assert.match(
      j.message,
      /wg0\.conf is readable by group and others while it holds a key line \(mode 0644\): another user can read the private key/,
    );
    assert.match(j.message, /chmod 600 \/etc\/wireguard\/wg0\.conf/);
    assert.match(j.message, /meshctl rotate-keys INVENTORY NODE --yes/);
    // without a key line the same file passes, and the content is asked about only when others may read the file
    assert.equal(judgeWireGuardFiles('wg0', [conf], () => false).status, 'pass');
    asked = 0;
    assert.equal(judgeWireGuardFiles('wg0', [{ ...conf, mode: '600' }], () => ++asked > 0).status, 'pass');
    assert.equal(asked, 0);
    // a wg-quick file others may write: its PostUp could have copied the key, so the advice names rotate-keys too
    assert.match(judgeWireGuardFiles('wg0', [{ ...conf, mode: '646' }]).message, /rotate-keys/);
  });

  it('judges the files meshctl installs that root runs or reads: the re-resolve script, its units and directory, the drop-in, the sysctl file (Q10 F1)', () => {
    const f = (path: string, mode: string, uid = 0, type = 'regular file'): WireGuardFileMode => ({
      path,
      type,
      mode,
      uid,
      owner: uid === 0 ? 'root' : 'nobody',
    });
    // Q10's node: nobody's re-resolve script (root runs it every 30 s) and directory, drop-in and sysctl file
    const q10 = [
      f('/etc/sysctl.d/99-wireguard.conf', '666', 65534),
      f('/etc/systemd/system/wg-quick@wg0.service.d', '755', 0, 'directory'),
      f('/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf', '666', 65534),
      f('/usr/local/lib/meshctl', '777', 65534, 'directory'),
      f('/usr/local/lib/meshctl/reresolve-endpoints', '777', 65534),
      f('/etc/systemd/system/meshctl-reresolve@.service', '644'),
      f('/etc/systemd/system/meshctl-reresolve@.timer', '664'),
    ];
    const j = judgeWireGuardFiles('wg0', q10);
    assert.equal(j.status, 'fail');
    assert.deepEqual(
      fileModeProblems('wg0', q10).map((p) => p.path),
      [
        '/etc/sysctl.d/99-wireguard.conf',
        '/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf',
        '/usr/local/lib/meshctl',
        '/usr/local/lib/meshctl/reresolve-endpoints',
        '/etc/systemd/system/meshctl-reresolve@.timer',
      ],
    );
    assert.match(
      j.message,
      /reresolve-endpoints is owned by nobody \(uid 65534\), not root, writable by group and others \(mode 0777\): another user can change a program root runs/,
    );
    assert.match(
      j.message,
      /chown root:root \/etc\/sysctl\.d\/99-wireguard\.conf \/etc\/systemd\/system\/wg-quick@wg0\.service\.d\/meshctl-keep-key\.conf \/usr\/local\/lib\/meshctl \/usr\/local\/lib\/meshctl\/reresolve-endpoints;/,
    );
    assert.match(j.message, /chmod 755 \/usr\/local\/lib\/meshctl \/usr\/local\/lib\/meshctl\/reresolve-endpoints/);
    assert.match(
      j.message,
      /chmod 644 \/etc\/sysctl\.d\/99-wireguard\.conf \/etc\/systemd\/system\/wg-quick@wg0\.service\.d\/meshctl-keep-key\.conf \/etc\/systemd\/system\/meshctl-reresolve@\.timer/,
    );
    // root code execution exposes the key too
    assert.match(j.message, /rotate-keys/);
    // as meshctl installs them: pass
    const installed = [
      f('/etc/sysctl.d/99-wireguard.conf', '644'),
      f('/etc/systemd/system/wg-quick@wg0.service.d', '755', 0, 'directory'),
      f('/etc/systemd/system/wg-quick@wg0.service.d/meshctl-keep-key.conf', '644'),
      f('/usr/local/lib/meshctl', '755', 0, 'directory'),
      f('/usr/local/lib/meshctl/reresolve-endpoints', '755'),
      f('/etc/systemd/system/meshctl-reresolve@.service', '644'),
      f('/etc/systemd/system/meshctl-reresolve@.timer', '644'),
    ];
    assert.equal(judgeWireGuardFiles('wg0', installed).status, 'pass');
  });

  it("a symbolic link in place of /etc/wireguard is to become a directory of root's, not a regular file (RV6 F4)", () => {
    const j = judgeWireGuardFiles('wg0', [{ path: '/etc/wireguard', type: 'symbolic link', mode: '777', uid: 0, owner: 'root' }]);
    assert.match(j.message, /replace the symbolic link \/etc\/wireguard by a directory of root's \(mode 0700\)/);
    const k = judgeWireGuardFiles('wg0', [{ path: '/etc/wireguard/wg0.key', type: 'symbolic link', mode: '777', uid: 0, owner: 'root' }]);
    assert.match(k.message, /replace the symbolic link \/etc\/wireguard\/wg0\.key by a regular file of root's/);
  });

  it("up's baseline runs the check (playbooks/up.yaml) and stops on Q9's node", async () => {
    assert.match(readFileSync('playbooks/up.yaml', 'utf8'), /checks: \[[^\]]*wireguard-file-modes[^\]]*\]\n\s+go: Every node is pristine/);
    const inventory = loadInventory('test/fixtures/inventories/good/foreign-vpn.yaml');
    const evaluate = (wireguardFiles: WireGuardFileMode[], config: Partial<NodeFacts['config']> = {}) =>
      checkNamed('wireguard-file-modes')!.evaluate({
        node: inventory.nodes[0]!,
        inventory,
        values: {
          facts: { wireguardFiles, config: { exists: true, hasPrivateKeyLine: false, managedByMeshctl: false, ...config } } as NodeFacts,
        } as never,
        reconnect: async () => undefined as never,
        mesh: new Map(),
        changedSoFar: false,
      });
    const q9 = await evaluate(Q9.map((f) => ({ ...f, path: f.path.replace('wg0', inventory.mesh.interface) })));
    assert.equal(q9.status, 'fail');
    assert.match(q9.message, /owned by nobody/);
    assert.equal((await evaluate([])).status, 'pass');
    // the quick-start layout: a PrivateKey (or PresharedKey) line in a 0644 wg-quick file (RV6 F3)
    const conf = [{ path: `/etc/wireguard/${inventory.mesh.interface}.conf`, type: 'regular file', mode: '644', uid: 0, owner: 'root' }];
    assert.equal((await evaluate(conf)).status, 'pass');
    assert.equal((await evaluate(conf, { hasPrivateKeyLine: true })).status, 'fail');
    assert.equal((await evaluate(conf, { hasPresharedKeyLine: true })).status, 'fail');
  });
});

/** Runs `script` under /bin/sh (dash on Debian), as a step's script runs on a node. */
const sh = (script: string) => spawnSync('/bin/sh', ['-c', script], { encoding: 'utf8' });
const isRoot = process.getuid?.() === 0;

describe("atomicWriteScript: the .bak is root's 0600; a failed rename leaves no temp file", () => {
  it("keeps no other user's owner or mode in wg0.conf.bak (failed before: `cp -p` kept nobody's 0666)", {
    skip: !isRoot && 'needs root (chown)',
  }, () => {
    const dir = tempDir('meshctl-bak-');
    const conf = join(dir, 'wg0.conf');
    writeFileSync(conf, 'old\n', { mode: 0o666 });
    chownSync(conf, 65534, 65534);
    // an older .bak of another user's (a run before this fix): replaced, not written through
    writeFileSync(`${conf}.bak`, 'older\n', { mode: 0o666 });
    chownSync(`${conf}.bak`, 65534, 65534);
    const r = sh(atomicWriteScript(conf, 'new\n', { backup: true, label: 'config' }));
    assert.equal(r.status, 0, r.stderr);
    const bak = statSync(`${conf}.bak`);
    assert.deepEqual([bak.uid, bak.gid, (bak.mode & 0o777).toString(8)], [0, 0, '600']);
    assert.equal(readFileSync(`${conf}.bak`, 'utf8'), 'old\n');
    const now = statSync(conf);
    assert.deepEqual([now.uid, (now.mode & 0o777).toString(8), readFileSync(conf, 'utf8')], [0, '600', 'new\n']);
  });

  it('removes its temp files when the rename fails (an immutable wg0.conf, chattr +i), exits non-zero, PATH and the older .bak unchanged', (t) => {
    const dir = tempDir('meshctl-immutable-');
    const conf = join(dir, 'wg0.conf');
    writeFileSync(conf, 'old\n', { mode: 0o600 });
    // the backup of the last good write: a write that fails must not replace it (RV6 F6: it held `old` after)
    writeFileSync(`${conf}.bak`, 'older\n', { mode: 0o600 });
    if (sh(`chattr +i '${conf}'`).status !== 0)
      return t.skip('chattr +i is not possible here (not root, or the filesystem has no immutable flag)');
    try {
      const r = sh(atomicWriteScript(conf, 'new\n', { backup: true, label: 'config' }));
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /Operation not permitted/);
      assert.doesNotMatch(r.stdout, /config=/);
      assert.ok(!existsSync(`${conf}.meshctl-tmp`), 'the temp file is left (failed before)');
      assert.equal(readFileSync(conf, 'utf8'), 'old\n');
      assert.equal(readFileSync(`${conf}.bak`, 'utf8'), 'older\n', 'the older backup was replaced by a failed write');
      assert.deepEqual(readdirSync(dir).sort(), ['wg0.conf', 'wg0.conf.bak']);
    } finally {
      sh(`chattr -i '${conf}'`);
    }
  });

  it('exits non-zero and renames nothing when the temp file cannot be written (a directory in its place)', () => {
    const dir = tempDir('meshctl-writefail-');
    const conf = join(dir, 'wg0.conf');
    // mkdir where the temp file goes: `rm -f` leaves a directory, `cat >` fails on it
    const r = sh(`mkdir '${conf}.meshctl-tmp'\n${atomicWriteScript(conf, 'new\n', { label: 'config' })}`);
    assert.notEqual(r.status, 0);
    assert.ok(!existsSync(conf));
    assert.doesNotMatch(r.stdout, /config=/);
  });

  it('writes the same file again with nothing else left (idempotent)', () => {
    const dir = tempDir('meshctl-again-');
    const conf = join(dir, 'wg0.conf');
    for (let i = 0; i < 2; i++) assert.equal(sh(atomicWriteScript(conf, 'x\n', { backup: true })).status, 0);
    assert.deepEqual(readdirSync(dir).sort(), ['wg0.conf', 'wg0.conf.bak']);
    assert.equal((statSync(`${conf}.bak`).mode & 0o777).toString(8), '600');
  });
});
