/**
 * The two backends of the one run loop (./runner.ts), as SSHKit has a printing backend beside its SSH one:
 * - `executor`: runs an action on the node and returns its output (a non-zero exit is a StepFailedError);
 * - `recorder` (dry run): runs read-only actions as usual (facts are needed to plan) and only records the others.
 */
import { StepFailedError } from '../steps/action.js';
import type { Connection } from '../transport/types.js';
import type { ActionResult, NodeAction } from './types.js';

export interface Backend {
  /** true when actions that change nodes are only recorded */
  readonly recording: boolean;
  /**
   * Runs (or records) `action` on the node behind `connection`.
   * @throws StepFailedError on a non-zero exit; TransportError when the connection broke; the abort reason on abort
   */
  run(connection: Connection, action: NodeAction, effect: 'read' | 'change', signal: AbortSignal): Promise<ActionResult>;
}

async function execute(connection: Connection, action: NodeAction, signal: AbortSignal): Promise<ActionResult> {
  const result = await connection.run(action.script, { ...(action.timeoutMs ? { timeoutMs: action.timeoutMs } : {}), signal });
  if (signal.aborted) throw signal.reason;
  if (result.code !== 0) throw new StepFailedError(connection.node, action, result);
  return { ran: true, stdout: result.stdout };
}

export const executor: Backend = { recording: false, run: (connection, action, _effect, signal) => execute(connection, action, signal) };

export const recorder: Backend = {
  recording: true,
  run: (connection, action, effect, signal) =>
    effect === 'read' ? execute(connection, action, signal) : Promise.resolve({ ran: false, recorded: true }),
};
