/**
 * Files meshctl writes on the operator's machine, made safe against the directory they sit in (Q9 F-state-symlink).
 *
 * meshctl runs as root and writes beside the inventory (its state, `import`'s inventory) and in the working
 * directory (`debug`'s bundle). Anyone who can write that directory (a group-writable checkout, /tmp) could place a
 * symlink where meshctl's temp file will be, and root would then write through it into any file. So a temp file has
 * a random name and is created with O_CREAT|O_EXCL (`wx`: open(2) fails on any existing path, a symlink included,
 * without following it), and a bundle directory is made by meshctl or, when it is there already, must be a real
 * directory of meshctl's user that nobody else can write.
 *
 * Why not write-file-atomic: it names its temp file from the pid and a counter (predictable) and opens it with
 * flag `w`, which follows a symlink placed there.
 */
import { randomBytes } from 'node:crypto';
import { lstatSync, mkdirSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { MeshctlError } from '../errors.js';

/**
 * Replaces `path` with `text` atomically: a temp file of a random name in the same directory, created exclusively
 * with `mode` (e.g. 0o644), then rename(2) over `path` (which replaces a symlink at `path`, never its target).
 * Throws the fs error (EACCES, ENOSPC, ...) after removing the temp file; `path` is then as it was.
 */
export function writeFileAtomic(path: string, text: string | Uint8Array, mode: number): void {
  const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, text, { mode, flag: 'wx' });
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // not made (EEXIST, EACCES) or already renamed
    }
    throw e;
  }
}

/**
 * Makes `dir` (mode 0700; its parents as needed) for files only the operator may read, e.g. packet captures. A `dir`
 * already there is used only if it is a directory (not a symlink) owned by this process's user with no group or
 * other write bit: one meshctl made earlier in this run. Its parent must not be writable by group or others unless
 * it has the sticky bit (/tmp's 1777): there another user could rename `dir` away and put a symlink in its place
 * between this check and the writes into it (RV6 F1: a group-writable working directory, the capture's seconds).
 * Throws MeshctlError('badInput') naming the path otherwise.
 */
export function ownPrivateDir(dir: string): void {
  mkdirSync(dirname(dir), { recursive: true });
  assertPrivateParent(dirname(dir));
  try {
    mkdirSync(dir, { mode: 0o700 });
    return;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0)
    throw new MeshctlError(
      `${dir} is already there and is not a private directory of this user (a symlink, another owner, or writable by others): not writing into it`,
      'badInput',
    );
}

/**
 * Throws MeshctlError('badInput') when `parent` (a directory that exists) is writable by group or others without
 * the sticky bit: there another user could rename a directory meshctl makes in it and put a symlink in its place
 * (ownPrivateDir). Called by `debug --tcpdump` before any capture too (RV6 F10: refused only after the capture ran).
 */
export function assertPrivateParent(parent: string): void {
  const st = statSync(parent);
  if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0)
    throw new MeshctlError(
      `${parent} is writable by ${(st.mode & 0o002) !== 0 ? 'others' : 'its group'} (mode 0${(st.mode & 0o7777).toString(8)}, no sticky bit): another user could swap the bundle directory for a symlink while meshctl writes into it; run meshctl from a directory only you can write`,
      'badInput',
    );
}

/**
 * Writes a new file of the operator's alone (mode 0600) into a directory ownPrivateDir made: created exclusively
 * (`wx`), so an existing path there, a symlink planted in its place included, is never written through (open(2)
 * O_CREAT|O_EXCL fails on it without following it). Rejects with the fs error (EEXIST, ENOSPC, ...).
 */
export async function writePrivateFile(path: string, data: string | Uint8Array): Promise<void> {
  await writeFile(path, data, { mode: 0o600, flag: 'wx' });
}
