/**
 * Building blocks of the scripts steps send: a verbatim here-document and the atomic file write. The engine runs
 * a step's NodeAction (../engine/types.ts); a non-zero exit becomes a StepFailedError.
 */
import { dirname } from 'node:path';
import type { NodeAction } from '../engine/types.js';
import { describeAction } from '../engine/plan.js';
import { raw, sh } from '../remote/shell.js';
import type { ExecResult } from '../transport/types.js';

/** An action's script exited non-zero on a node; the message carries the last lines of its stderr (or stdout). */
export class StepFailedError extends Error {
  constructor(
    readonly node: string,
    readonly action: NodeAction,
    readonly result: ExecResult,
  ) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-4).join(' | ');
    super(`${describeAction(action)} failed on ${node} (exit ${result.code}): ${detail}`);
    this.name = 'StepFailedError';
  }
}

/** A here-document whose delimiter cannot occur in the content, so files are written verbatim. */
export function heredoc(content: string): { start: string; body: string } {
  let delimiter = 'MESHCTL_EOF';
  while (content.includes(delimiter)) delimiter += '_';
  const body = content.endsWith('\n') ? content : `${content}\n`;
  return { start: `<<'${delimiter}'`, body: `${body}${delimiter}` };
}

/**
 * Script that writes a file atomically: temp file (PATH.meshctl-tmp) in the same directory, mode, rename over the
 * target (rename(2) is atomic within a filesystem). With `backup`, the previous version is kept as PATH.bak: a fresh
 * copy of root's under umask 077 (`cp` without `-p` to PATH.bak.meshctl-tmp, renamed to PATH.bak once PATH is
 * replaced: a write that fails leaves the older .bak as it was), never the previous file's owner and
 * mode (Q9 F-perm-rollback: a `cp -p` of a file another user owned kept it writable by that user, and the rollback
 * restarted wg-quick on it). A write, chmod, backup or rename that fails removes the temp file and exits with that
 * command's status (Q9 F-immutable: an immutable PATH, `chattr +i`, left PATH.meshctl-tmp behind); PATH is then as it was.
 * Prints `LABEL=<sha256 of the new file>`, read back by the step so the gate compares what is on the node.
 * `mode`, `dirMode`: octal, e.g. '600'; the directory is created with `dirMode` only when missing.
 */
export function atomicWriteScript(
  path: string,
  content: string,
  { mode = '600', dirMode = '700', backup = false, label = 'sha256' } = {},
): string {
  const doc = heredoc(content);
  const tmp = `${path}.meshctl-tmp`;
  const bak = `${path}.bak`;
  // the new backup is made beside and renamed over the old one only once PATH was replaced (RV6 F6: made in place
  // first, a rename that then failed had already lost the older .bak, the file an operator rolls back to by hand)
  const bakTmp = `${bak}.meshctl-tmp`;
  // the here-document's body follows the line of its redirection, whatever else that line holds
  const steps = [
    `${sh`cat > ${tmp}`.text} ${doc.start}`,
    sh`chmod ${raw(mode)} ${tmp}`.text,
    ...(backup ? [sh`{ [ ! -f ${path} ] || cp ${path} ${bakTmp}; }`.text] : []),
    sh`mv -f ${tmp} ${path}`.text,
    ...(backup ? [sh`{ [ ! -f ${bakTmp} ] || mv -f ${bakTmp} ${bak}; }`.text] : []),
  ];
  const temps = backup ? sh`rm -f ${tmp} ${bakTmp}`.text : sh`rm -f ${tmp}`.text;
  return [
    `umask 077`,
    sh`mkdir -p -m ${raw(dirMode)} ${dirname(path)}`.text,
    // a temp file left by an older run (or planted) is not written through
    temps,
    `${steps.join(' && ')} || { mc_rc=$?; ${temps}; exit $mc_rc; }\n${doc.body}`,
    `echo "${label}=$(sha256sum < ${sh`${path}`.text} | cut -d' ' -f1)"`,
  ].join('\n');
}
