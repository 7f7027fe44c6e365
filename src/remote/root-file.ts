/**
 * Remote shell fragments for files only root may read (a private key and its temp files), shared by every script that
 * makes one: import's adopting script (../import/probe.ts). rotate-keys' key read (../steps/keys.ts rootOnlyFileTest)
 * keeps its own test: it refuses an empty file too and says why on stderr.
 */
import { raw, sh } from './shell.js';

/**
 * A shell condition (no `exit`: for `&&`/`||` lists) that holds when `path` is a regular file (not a symbolic link:
 * stat without -L) of root's (uid 0) with mode 0600, empty or not.
 */
export const rootOnlyFileCondition = (path: string): string =>
  sh`case "$(stat -c '%u %a %F' -- ${path} 2>/dev/null)" in '0 600 regular file'|'0 600 regular empty file') true;; *) false;; esac`.text;

/**
 * Shell `&&` list writing `command`'s stdout into a fresh file `tmp` that only root can read (Q10 F15: the adopting
 * script wrote the key with `> TMP` into a temp file another user had planted, and chmod and mv kept that owner):
 * `tmp` removed first (a planted file or symbolic link goes), created with noclobber (`set -C`: the write fails
 * rather than follow a path made meanwhile) under umask 077, then `chmod 600` and checked to be root's regular 0600
 * file (rootOnlyFileCondition). Fails (non-zero, nothing printed) when any step does; the caller removes `tmp`.
 */
export const freshRootFile = (tmp: string, command: string): string =>
  sh`rm -f -- ${tmp} && ( umask 077; set -C; ${raw(command)} > ${tmp} ) && chmod 600 -- ${tmp} && ${raw(rootOnlyFileCondition(tmp))}`.text;
