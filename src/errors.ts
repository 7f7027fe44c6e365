/**
 * Outcomes and exit codes: the one table. Commands return an Outcome (or throw a MeshctlError carrying one);
 * src/main.ts alone turns it into the process's exit code. The README's exit-code table lists exactly these.
 */
export const ExitCode = {
  /** done: converged, planned, healthy */
  ok: 0,
  /** a check failed or a gate said STOP */
  stop: 1,
  /** bad input: inventory, playbook, flags, environment (not root, missing tool, no terminal for a gate) */
  badInput: 2,
  /** could not connect to (or authenticate with, or verify the host key of) a node */
  connect: 3,
  /** `meshctl plan`: the mesh differs from the inventory (up would change something); for cron and CI alerts */
  drift: 4,
  /** a bug in meshctl: an error that is not a MeshctlError (the message asks for a report) */
  internal: 70,
  /** interrupted (Ctrl-C, SIGTERM, SIGHUP: src/interrupt.ts); remote work in flight was stopped (128 + SIGINT, as shells report it) */
  interrupted: 130,
} as const;
export type Outcome = keyof typeof ExitCode;
export type ExitCodeValue = (typeof ExitCode)[Outcome];

/** What a command's action hands back to main: an outcome, or a child's exit code passed through (`lab exec`). */
export type CommandResult = Outcome | { passthrough: number };

/** The one error type main maps to an exit code; anything else is a bug (outcome 'internal'). */
export class MeshctlError extends Error {
  constructor(
    message: string,
    readonly outcome: Outcome = 'badInput',
    /** extra lines shown under the message (one per problem, e.g. every inventory error) */
    readonly details: string[] = [],
  ) {
    super(message);
    this.name = 'MeshctlError';
  }

  get exitCode(): ExitCodeValue {
    return ExitCode[this.outcome];
  }
}

export const badInput = (message: string, details: string[] = []) => new MeshctlError(message, 'badInput', details);
