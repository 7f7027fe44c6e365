/**
 * Reading a file a person hands to meshctl (inventory, playbook), bounded: only a regular file, at most
 * MAX_INPUT_BYTES, checked before reading. `meshctl validate /dev/zero` or a FIFO must fail at once, not hang or
 * fill memory.
 */
import { closeSync, fstatSync, openSync, readSync, statSync } from 'node:fs';
import { badInput } from '../errors.js';

/** 1 MiB: a 100-node inventory is about 15 KiB. */
export const MAX_INPUT_BYTES = 1024 * 1024;

const REASONS: Record<string, string> = { ENOENT: 'no such file', EISDIR: 'it is a directory', EACCES: 'permission denied' };

/**
 * The UTF-8 text of the file at `path`. Throws a one-line MeshctlError (exit 2), `cannot read WHAT PATH: reason`,
 * when it is missing, unreadable, not a regular file, or larger than `maxBytes`.
 */
export function readInputFile(path: string, what: string, maxBytes = MAX_INPUT_BYTES): string {
  const fail = (reason: string) => badInput(`cannot read ${what} ${path}: ${reason}`);
  let fd: number | undefined;
  try {
    // stat before open: opening a FIFO blocks until a writer comes
    checkStat(statSync(path), maxBytes, fail);
    fd = openSync(path, 'r');
    checkStat(fstatSync(fd), maxBytes, fail); // the file may have been swapped in between
    const buffer = Buffer.alloc(maxBytes + 1);
    let length = 0;
    for (let n = -1; n !== 0 && length <= maxBytes; length += n) n = readSync(fd, buffer, length, buffer.length - length, null);
    if (length > maxBytes) throw fail(tooLarge(maxBytes));
    return buffer.subarray(0, length).toString('utf8');
  } catch (error) {
    if (error instanceof Error && error.name === 'MeshctlError') throw error;
    const code = (error as NodeJS.ErrnoException).code ?? '';
    throw fail(REASONS[code] ?? (error as Error).message);
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

const tooLarge = (maxBytes: number) => `larger than ${maxBytes / 1024 / 1024} MiB (${maxBytes} bytes), the limit for an input file`;

function checkStat(stat: { isFile(): boolean; isDirectory(): boolean; size: number }, maxBytes: number, fail: (reason: string) => Error) {
  if (stat.isDirectory()) throw fail('it is a directory');
  if (!stat.isFile()) throw fail('not a regular file');
  if (stat.size > maxBytes) throw fail(tooLarge(maxBytes));
}
