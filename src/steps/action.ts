/**
 * A RemoteAction is what a step's pure planner returns: the script that closes the gap between a node's facts
 * and the desired state. `undefined` from a planner means "nothing to do" (an explicit no-op).
 */
import { dirname } from 'node:path';
import type { Connection, ExecResult } from '../transport/types.js';

export interface RemoteAction {
  /** what it changes, for the gate report and --dry-run, e.g. "install wireguard-tools wireguard-go (apt)" */
  description: string;
  script: string;
  timeoutMs?: number;
}

export class StepFailedError extends Error {
  constructor(
    readonly node: string,
    readonly action: RemoteAction,
    readonly result: ExecResult,
  ) {
    const detail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-4).join(' | ');
    super(`${action.description} failed on ${node} (exit ${result.code}): ${detail}`);
    this.name = 'StepFailedError';
  }
}

/** Runs an action and returns its stdout; a non-zero exit becomes a StepFailedError with the tail of stderr. */
export async function applyAction(connection: Connection, action: RemoteAction, signal?: AbortSignal): Promise<string> {
  const result = await connection.run(action.script, { timeoutMs: action.timeoutMs, signal });
  if (result.code !== 0) throw new StepFailedError(connection.node, action, result);
  return result.stdout;
}

/** A here-document whose delimiter cannot occur in the content, so files are written verbatim. */
export function heredoc(content: string): { start: string; body: string } {
  let delimiter = 'MESHCTL_EOF';
  while (content.includes(delimiter)) delimiter += '_';
  const body = content.endsWith('\n') ? content : `${content}\n`;
  return { start: `<<'${delimiter}'`, body: `${body}${delimiter}` };
}

/**
 * Script that writes a file atomically: temp file in the same directory, mode, rename over the target.
 * With `backup`, the previous version is kept as FILE.bak. Prints `LABEL=<sha256 of the new file>`.
 */
export function atomicWriteScript(
  path: string,
  content: string,
  { mode = '600', dirMode = '700', backup = false, label = 'sha256' } = {},
): string {
  const doc = heredoc(content);
  const tmp = `${path}.meshctl-tmp`;
  return [
    `umask 077`,
    `mkdir -p -m ${dirMode} '${dirname(path)}'`,
    `cat > '${tmp}' ${doc.start}\n${doc.body}`,
    `chmod ${mode} '${tmp}'`,
    backup ? `if [ -f '${path}' ]; then cp -p '${path}' '${path}.bak'; fi` : ':',
    `mv -f '${tmp}' '${path}'`,
    `echo "${label}=$(sha256sum < '${path}' | cut -d' ' -f1)"`,
  ].join('\n');
}
