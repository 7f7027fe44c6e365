/**
 * Q9 F-state-symlink: a user who could write the inventory's directory planted symlinks at every
 * `homelab.yaml.state.json.<pid>.tmp` pointing at a root-only file; root's `meshctl up` then wrote the state JSON
 * into that file and renamed the symlink over the state path. The state (and `import`'s inventory, and `debug`'s
 * bundle) is now written through ../../src/local/files.ts: a random temp name created exclusively, and a bundle
 * directory that must be meshctl's own.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, lstatSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emptyState, readState, statePathFor, writeState } from '../../src/state/state.js';
import { ownPrivateDir, writeFileAtomic, writePrivateFile } from '../../src/local/files.js';
import { MeshctlError } from '../../src/errors.js';
import { tempDir } from '../support/temp-dir.js';

const VICTIM_TEXT = 'ROOT-ONLY VICTIM CONTENT\n';

function victim(dir: string): string {
  const path = join(dir, 'victim');
  writeFileSync(path, VICTIM_TEXT, { mode: 0o600 });
  return path;
}

test("writeState never writes through a symlink planted at the old temp name (this process's pid)", () => {
  const dir = tempDir('meshctl-state-link-');
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  const target = victim(dir);
  const inventory = join(shared, 'homelab.yaml');
  writeFileSync(inventory, 'x: 1\n');
  const state = statePathFor(inventory);
  symlinkSync(target, `${state}.${process.pid}.tmp`);
  writeState(inventory, emptyState('wg0'));
  assert.equal(readFileSync(target, 'utf8'), VICTIM_TEXT, 'the planted link was written through');
  assert.ok(lstatSync(state).isFile(), 'the state is a regular file, not the planted link');
  assert.equal(JSON.parse(readFileSync(state, 'utf8')).interface, 'wg0');
  assert.equal(lstatSync(state).mode & 0o777, 0o644);
  // nothing of ours left beside it: the inventory, the state, the planted link
  assert.deepEqual(readdirSync(shared).sort(), ['homelab.yaml', 'homelab.yaml.state.json', `homelab.yaml.state.json.${process.pid}.tmp`]);
});

test('a symlink AT the state path is replaced by the state, its target untouched', () => {
  const dir = tempDir('meshctl-state-link-');
  const target = victim(dir);
  const inventory = join(dir, 'inv.yaml');
  symlinkSync(target, statePathFor(inventory));
  writeState(inventory, emptyState('wg0'));
  assert.equal(readFileSync(target, 'utf8'), VICTIM_TEXT);
  assert.ok(lstatSync(statePathFor(inventory)).isFile());
});

test('writeFileAtomic: a failed write leaves the old file and no temp file', () => {
  const dir = tempDir('meshctl-atomic-');
  const file = join(dir, 'out.yaml');
  writeFileSync(file, 'old\n');
  writeFileAtomic(file, 'new\n', 0o644);
  assert.equal(readFileSync(file, 'utf8'), 'new\n');
  // a path whose directory does not exist: the error is thrown, nothing is left behind
  assert.throws(() => writeFileAtomic(join(dir, 'missing', 'x'), 'y', 0o644), { code: 'ENOENT' });
  assert.deepEqual(readdirSync(dir), ['out.yaml']);
});

test("ownPrivateDir: made 0700; a planted symlink or someone else's writable directory is refused", () => {
  const dir = tempDir('meshctl-bundle-');
  const fresh = join(dir, 'a', 'meshctl-debug-1');
  ownPrivateDir(fresh);
  assert.equal(lstatSync(fresh).mode & 0o777, 0o700);
  ownPrivateDir(fresh); // made earlier in the same run: used again
  const elsewhere = join(dir, 'elsewhere');
  mkdirSync(elsewhere);
  const link = join(dir, 'meshctl-debug-2');
  symlinkSync(elsewhere, link);
  assert.throws(
    () => ownPrivateDir(link),
    (e: unknown) => e instanceof MeshctlError && /meshctl-debug-2 is already there/.test(e.message),
  );
  const open = join(dir, 'meshctl-debug-3');
  mkdirSync(open);
  chmodSync(open, 0o777);
  assert.throws(() => ownPrivateDir(open), MeshctlError);
  assert.deepEqual(readdirSync(elsewhere), []);
});

test('ownPrivateDir refuses a bundle in a directory others may write without the sticky bit; writePrivateFile never writes through a planted path (RV6 F1)', async () => {
  const dir = tempDir('meshctl-bundle-parent-');
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o777);
  assert.throws(
    () => ownPrivateDir(join(shared, 'meshctl-debug-1')),
    (e: unknown) => e instanceof MeshctlError && /shared is writable by others \(mode 0777, no sticky bit\)/.test(e.message),
  );
  chmodSync(shared, 0o775);
  assert.throws(() => ownPrivateDir(join(shared, 'meshctl-debug-1')), /writable by its group/);
  assert.deepEqual(readdirSync(shared), [], 'nothing made there');
  // /tmp's way (1777): another user cannot rename root's directory there
  chmodSync(shared, 0o1777);
  const bundle = join(shared, 'meshctl-debug-2');
  ownPrivateDir(bundle);
  // a symlink at a file's path (planted before the write, or the directory swapped for one holding it): not followed
  const victim = join(dir, 'victim');
  writeFileSync(victim, 'keep\n');
  symlinkSync(victim, join(bundle, 'wk-1--ms-1-to-wk-1.pcap'));
  await assert.rejects(writePrivateFile(join(bundle, 'wk-1--ms-1-to-wk-1.pcap'), 'pcap bytes'), { code: 'EEXIST' });
  assert.equal(readFileSync(victim, 'utf8'), 'keep\n');
  await writePrivateFile(join(bundle, 'report.json'), '{}\n');
  assert.equal(lstatSync(join(bundle, 'report.json')).mode & 0o777, 0o600);
});

test('readState: a FIFO or a device at the state path is refused by name, not read (Q10 F9: a FIFO hung plan for good)', () => {
  const dir = tempDir('meshctl-state-fifo-');
  const inventory = join(dir, 'mesh.yaml');
  const state = statePathFor(inventory);
  execFileSync('mkfifo', [state]);
  const started = Date.now();
  assert.throws(
    () => readState(inventory, 'wg0'),
    (e: unknown) =>
      e instanceof MeshctlError && /mesh\.yaml\.state\.json \(the inventory's local state\) is not a regular file/.test(e.message),
  );
  assert.ok(Date.now() - started < 5_000);
  const link = join(dir, 'other.yaml');
  symlinkSync('/dev/zero', statePathFor(link));
  assert.throws(() => readState(link, 'wg0'), /not a regular file/);
  // absent: an empty state, as before
  assert.deepEqual(readState(join(dir, 'none.yaml'), 'wg0'), emptyState('wg0'));
});
