/**
 * Q10 F15: `meshctl import` never moves a private key into a file another user made or can read.
 * - The real adopting script (../../src/import/probe.ts adoptScript) under /bin/sh, in a temp directory standing in
 *   for /etc/wireguard, with temp files of nobody's (uid 65534) planted where it writes: they are discarded, and the
 *   key file, the wg-quick file and the .pub are root's (the old script wrote the key into the planted file with
 *   `> TMP`, and chmod and mv kept its owner: nobody owned the key file and exit 0, "key pair kept");
 * - a file made again right after the script's `rm` (a race) is never written: noclobber refuses, nothing changed;
 * - the import's read-only judgement of every node's WireGuard files (judgeImportFileModes, up's baseline) refuses a
 *   node whose /etc/wireguard another user can write, naming node, file and fix, before any node is changed.
 * Runs as root (chown); `wg` is a stand-in (`wg show` finds no interface, `wg pubkey` answers `pub-KEY`).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, lstatSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { inferInventory } from '../../src/import/infer.js';
import { adoptScript, judgeImportFileModes, parseAdoptOutput } from '../../src/import/probe.js';
import { captured, NODES } from '../support/handbuilt-hosts.js';
import { tempDir } from '../support/temp-dir.js';

const NOBODY = 65534;

/** A directory standing in for /etc/wireguard (root's, 0700) with a wg0.conf holding a PrivateKey line. */
function handBuilt(): { dir: string; key: string; text: string; bin: string } {
  const dir = tempDir('meshctl-import-planted-');
  const key = randomBytes(32).toString('base64');
  const text = ['[Interface]', 'Address = 172.27.15.13/32', `PrivateKey = ${key}`, 'ListenPort = 51820', ''].join('\n');
  writeFileSync(join(dir, 'wg0.conf'), text, { mode: 0o600 });
  const bin = tempDir('meshctl-import-planted-bin-');
  writeFileSync(join(bin, 'wg'), '#!/bin/sh\ncase "$1" in pubkey) read -r k; echo "pub-$k" ;; *) exit 1 ;; esac\n', { mode: 0o755 });
  return { dir, key, text, bin };
}

/** Plants an empty file of nobody's, mode 0666, at `path` (what Q10 F15 planted). */
function plant(path: string): void {
  writeFileSync(path, '', { mode: 0o666 });
  chownSync(path, NOBODY, NOBODY);
}

const adopt = (dir: string, bin: string, extraPath = '') =>
  spawnSync('/bin/sh', ['-c', adoptScript('wg0', false).replaceAll('/etc/wireguard/', `${dir}/`)], {
    encoding: 'utf8',
    env: { ...process.env, PATH: `${extraPath}${bin}:${process.env.PATH ?? ''}` },
  });

/** uid and permission bits of a path (not followed) */
const owner = (path: string) => {
  const s = lstatSync(path);
  return { uid: s.uid, mode: (s.mode & 0o777).toString(8), link: s.isSymbolicLink() };
};

describe('import: no private key into a file another user made (Q10 F15)', () => {
  it("discards planted temp files of nobody's: the key file, wg0.conf and wg0.pub are root's (real sh)", () => {
    if (process.getuid?.() !== 0) return; // chown needs root (the project's tests run as root)
    const { dir, key, bin } = handBuilt();
    for (const name of ['wg0.key.meshctl-tmp', 'wg0.conf.meshctl-tmp', 'wg0.pub.meshctl-tmp']) plant(join(dir, name));
    const r = adopt(dir, bin);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const said = parseAdoptOutput(r.stdout);
    assert.equal(said.key, 'moved', r.stdout);
    assert.equal(said.refused, undefined);
    assert.equal(readFileSync(join(dir, 'wg0.key'), 'utf8').trim(), key, 'the key moved, whole');
    assert.deepEqual(owner(join(dir, 'wg0.key')), { uid: 0, mode: '600', link: false }, "the key file is root's 0600");
    assert.deepEqual(owner(join(dir, 'wg0.conf')), { uid: 0, mode: '600', link: false });
    assert.equal(owner(join(dir, 'wg0.pub')).uid, 0, "wg0.pub is root's");
    assert.doesNotMatch(readFileSync(join(dir, 'wg0.conf'), 'utf8'), /PrivateKey/);
    assert.deepEqual(readdirSync(dir).sort(), ['wg0.conf', 'wg0.key', 'wg0.pub'], 'the planted files are gone, no temp left');
  });

  it('a symbolic link planted as the temp file is removed, not written through (real sh)', () => {
    const { dir, key, bin } = handBuilt();
    const elsewhere = join(tempDir('meshctl-import-planted-target-'), 'readable');
    writeFileSync(elsewhere, '', { mode: 0o644 });
    symlinkSync(elsewhere, join(dir, 'wg0.key.meshctl-tmp'));
    const r = adopt(dir, bin);
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.equal(readFileSync(elsewhere, 'utf8'), '', 'nothing written through the link');
    assert.equal(owner(join(dir, 'wg0.key')).link, false, 'the key file is no symbolic link');
    assert.equal(readFileSync(join(dir, 'wg0.key'), 'utf8').trim(), key);
  });

  it("a temp file made again right after the script's rm is not written (noclobber): refused, nothing changed (real sh)", () => {
    if (process.getuid?.() !== 0) return;
    const { dir, text, bin } = handBuilt();
    plant(join(dir, 'wg0.key.meshctl-tmp'));
    // an `rm` that removes nothing stands in for another user making the file again between rm and the write
    const race = tempDir('meshctl-import-planted-rm-');
    writeFileSync(join(race, 'rm'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const r = adopt(dir, bin, `${race}:`);
    assert.equal(r.status, 3, r.stdout + r.stderr);
    assert.match(
      parseAdoptOutput(r.stdout).refused ?? '',
      /^could not copy the key of .*wg0\.conf aside to a fresh .*wg0\.key\.meshctl-tmp/,
    );
    assert.equal(readFileSync(join(dir, 'wg0.key.meshctl-tmp'), 'utf8'), '', 'the planted file holds no key');
    assert.equal(readFileSync(join(dir, 'wg0.conf'), 'utf8'), text, 'wg0.conf untouched');
    assert.deepEqual(readdirSync(dir).sort(), ['wg0.conf', 'wg0.key.meshctl-tmp'], 'no key file made');
  });

  it("judges every node's WireGuard files as up's baseline does: /etc/wireguard 0777 refuses the import, naming node, file and fix", () => {
    const hosts = NODES.map(captured);
    const wk2 = hosts.find((h) => h.target.name === 'wk-2')!;
    const files = [
      { type: 'directory', mode: '777', uid: 0, owner: 'root', path: '/etc/wireguard' },
      { type: 'regular file', mode: '600', uid: 0, owner: 'root', path: '/etc/wireguard/wg0.conf' },
    ];
    const facts = { ...wk2.facts, wireguardFiles: files };
    const refusal = judgeImportFileModes(facts, 'wg0');
    assert.match(refusal ?? '', /\/etc\/wireguard is writable by group and others \(mode 0777\)/);
    assert.match(refusal ?? '', /chmod 700 \/etc\/wireguard/);
    const result = inferInventory(
      hosts.map((h) => (h === wk2 ? { ...h, facts, fileModeRefusal: refusal! } : h)),
      'wg0',
    );
    assert.equal(result.draft, undefined, 'no inventory: nothing is written');
    assert.ok(
      result.problems.some((p) => p.startsWith('wk-2: /etc/wireguard is writable') && p.endsWith('then run meshctl import again')),
      result.problems.join('\n'),
    );
    // root's 0700 with a root 0600 key passes; a wg0.conf that holds its PrivateKey readable by others does not
    assert.equal(judgeImportFileModes({ ...facts, wireguardFiles: [{ ...files[0]!, mode: '700' }, files[1]!] }, 'wg0'), undefined);
    const readable = [
      { ...files[0]!, mode: '700' },
      { ...files[1]!, mode: '644' },
    ];
    assert.match(
      judgeImportFileModes({ ...facts, config: { ...facts.config, hasPrivateKeyLine: true }, wireguardFiles: readable }, 'wg0') ?? '',
      /wg0\.conf is readable by group and others while it holds a key line/,
    );
    // an older capture without the stat lines: not judged (up's baseline only warns)
    assert.equal(judgeImportFileModes({ ...facts, wireguardFiles: undefined }, 'wg0'), undefined);
  });
});
