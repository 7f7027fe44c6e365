/** Exit codes are part of meshctl's interface: scripts rely on them (documented in the README). */
export const ExitCode = {
  ok: 0,
  /** a check failed or a gate said STOP */
  stop: 1,
  /** bad input: inventory, flags, environment (not root, missing tool) */
  badInput: 2,
  /** could not connect to (or authenticate with, or verify) a node */
  connect: 3,
  interrupted: 130,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** The one error type the CLI maps to an exit code; anything else is a bug (exit 70). */
export class MeshctlError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCodeValue = ExitCode.badInput,
    /** extra lines shown under the message (one per problem, e.g. every inventory error) */
    readonly details: string[] = [],
  ) {
    super(message);
    this.name = 'MeshctlError';
  }
}

export const badInput = (message: string, details: string[] = []) => new MeshctlError(message, ExitCode.badInput, details);
