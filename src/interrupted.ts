/**
 * What a command says when Ctrl-C (or SIGTERM, SIGHUP: ./interrupt.ts) comes before it changed anything: while it
 * logged in to the nodes (../transport/pool.ts connectAll), or while `up --limit` / `plan --limit` read the public
 * keys of the nodes outside the limit (./engine/limit.ts gatherOutsideKeys). Before, every command ended there with
 * main's bare `meshctl: interrupted` (exit 130) and, with --json, nothing on stdout: the operator did not learn how
 * far it got, nor that nothing was changed.
 *
 * The one way to say it: the command throws an InterruptedError (from interruptedLogin, or its own for the key
 * reads) once the connections it opened are closed, and main (./main.ts) prints its message on stderr, its
 * InterruptedReport as JSON on stdout when the command was given --json, and exits 130. E.g.
 *   meshctl: interrupted while logging in: 3 of 4 nodes connected (ms-1, wk-1, ctb-edge-1), wk-2 not yet; nothing was changed on any node
 * This module loads nothing but ./errors.ts and ./interrupt.ts (main imports it: no transport code before a login).
 */
import { ExitCode, MeshctlError } from './errors.js';
import { interruptSignal } from './interrupt.js';

/** What the command was doing when it was interrupted. */
export type InterruptedStage =
  /** the SSH logins to the nodes (TCP connect, key exchange, authentication, and the root probe where there is one) */
  | 'login'
  /** `--limit`: reading the public key of each node outside the limit (a login, then one read-only command) */
  | 'outside-keys';

/**
 * The report of an interrupt at one of those stages: the message's facts, printed as JSON on stdout with --json.
 * Node names in the inventory's order.
 */
export interface InterruptedReport {
  result: 'interrupted';
  stage: InterruptedStage;
  /** the nodes of the stage: those logged in to, or those outside --limit whose keys were read */
  nodes: string[];
  /** done before the interrupt: logged in (stage login), or public key read, or found to have none (outside-keys) */
  reached: string[];
  /** not done yet when the interrupt came: the command stopped waiting for them and closed what they had opened */
  notYet: string[];
  /** failed on their own before the interrupt, and why (the command would have reported them had it gone on) */
  failed: { node: string; error: string }[];
  /** false: neither stage changes anything on any node (both come before a run lock is taken or a phase runs) */
  changed: false;
}

/** The message of an interrupted report, one line (see the module doc for an example). */
export function interruptedMessage(report: InterruptedReport): string {
  const { nodes, reached, notYet, failed } = report;
  const list = (names: readonly string[]) => (names.length ? ` (${names.join(', ')})` : '');
  const where =
    report.stage === 'login'
      ? `logging in: ${reached.length} of ${nodes.length} node${nodes.length === 1 ? '' : 's'} connected${list(reached)}`
      : `reading the public keys of the nodes outside --limit: ${reached.length} of ${nodes.length} read${list(reached)}`;
  const parts = [where];
  if (notYet.length) parts.push(`${notYet.join(', ')} not yet`);
  if (failed.length) parts.push(`${failed.map((f) => f.node).join(', ')} failed (below)`);
  return `interrupted while ${parts.join(', ')}; nothing was changed on any node`;
}

/**
 * An interrupt before anything changed (see the module doc): outcome 'interrupted' (exit 130), the message of
 * `report`, and a detail line per node that failed on its own. main prints `report` as JSON with --json.
 */
export class InterruptedError extends MeshctlError {
  constructor(readonly report: InterruptedReport) {
    super(
      interruptedMessage(report),
      'interrupted',
      report.failed.map((f) => (f.error.startsWith(f.node) ? f.error : `${f.node}: ${f.error}`)),
    );
    this.name = 'InterruptedError';
  }
}

/**
 * The failure connectAll (../transport/pool.ts) records for a node whose login the interrupt cut short or never let
 * start: `NODE: not logged in yet when interrupted`. One form, so that it is told from the node's own failures also
 * where only its message travels (`up`'s report: UpReport.connectFailures).
 */
export const loginCutMessage = (node: string): string => `${node}: not logged in yet when interrupted`;

/** Whether `error` (an Error, or its message) is the failure loginCutMessage(node) names. */
export function isLoginCut(node: string, error: Error | string): boolean {
  return (typeof error === 'string' ? error : error.message) === loginCutMessage(node);
}

/**
 * After a command's logins (connectAll, or `up`'s report): the InterruptedError to throw when `signal` was aborted
 * and cut at least one node's login short (isLoginCut); undefined otherwise (no interrupt, or it came after every
 * login ended: the command then reports as it would have). `nodes`: the nodes the logins were for, in order;
 * `failures`: connectAll's (by node) or UpReport.connectFailures. The caller closes the connections it got first
 * (or in a `finally` around the throw).
 */
export function interruptedLogin(
  nodes: readonly string[],
  failures: ReadonlyMap<string, Error> | readonly { node: string; error: string }[],
  signal: AbortSignal = interruptSignal,
): InterruptedError | undefined {
  if (!signal.aborted) return undefined;
  const failed = new Map<string, string>(
    Array.isArray(failures)
      ? (failures as readonly { node: string; error: string }[]).map((f) => [f.node, f.error])
      : [...(failures as ReadonlyMap<string, Error>)].map(([node, e]) => [node, e.message]),
  );
  const cut = nodes.filter((n) => failed.has(n) && isLoginCut(n, failed.get(n)!));
  if (cut.length === 0) return undefined;
  return new InterruptedError({
    result: 'interrupted',
    stage: 'login',
    nodes: [...nodes],
    reached: nodes.filter((n) => !failed.has(n)),
    notYet: cut,
    failed: nodes.filter((n) => failed.has(n) && !cut.includes(n)).map((node) => ({ node, error: failed.get(node)! })),
    changed: false,
  });
}

/**
 * Throws interruptedLogin's error when there is one (arguments as there): for a command about to report the failures
 * of its logins, or go on with the nodes it reached.
 */
export function throwIfLoginCut(
  nodes: readonly string[],
  failures: ReadonlyMap<string, Error> | readonly { node: string; error: string }[],
  signal: AbortSignal = interruptSignal,
): void {
  const cut = interruptedLogin(nodes, failures, signal);
  if (cut) throw cut;
}

/**
 * main's end of a run that was interrupted (./interrupt.ts interruptSignal aborted) and threw `error`: prints what it
 * knows and returns the exit code, 130. An InterruptedError: its message and details on stderr, and with `json` its
 * report on stdout (with `command`: the command that ran). Another MeshctlError of outcome 'interrupted' (a command
 * that said where it stopped, e.g. rotate-keys' `interrupted before any key was rotated; nothing was changed`): its
 * message and details. Anything else failed because of the interrupt after the command stopped its remote work:
 * `meshctl: interrupted`, as before. `print` writes one line to stderr (quoting it safely is the caller's).
 */
export function reportInterrupted(
  error: unknown,
  options: { command?: string; json: boolean; print: (line: string) => void; stdout: NodeJS.WritableStream },
): number {
  if (error instanceof MeshctlError && error.outcome === 'interrupted') {
    options.print(`meshctl: ${error.message}`);
    for (const line of error.details) options.print(`  ${line}`);
    if (error instanceof InterruptedError && options.json) {
      const report = { ...(options.command ? { command: options.command } : {}), ...error.report, message: error.message };
      options.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    }
  } else options.print('meshctl: interrupted');
  return ExitCode.interrupted;
}
