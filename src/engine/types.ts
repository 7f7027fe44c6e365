/** The values the `up` engine passes around. Per-host failures are values; only a gate stops a run. */
import type { NodeFacts } from '../facts/node-facts.js';
import type { Inventory, Node } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import type { DesiredNodeConfig } from '../topology/desired.js';
import type { Matrix } from '../checks/ping-matrix.js';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface CheckResult {
  id: string;
  status: CheckStatus;
  message: string;
  /** raw lines that back the verdict (command output, file names, rules) */
  evidence?: string[];
}

/** Everything `up` learns about one node as phases go by. */
export interface NodeState {
  node: Node;
  connection: Connection;
  facts?: NodeFacts;
  publicKey?: string;
  keyCreated?: boolean;
  desired?: DesiredNodeConfig;
  /** how the config on disk compared to the rendered one before this run wrote it */
  configChange?: 'create' | 'none' | 'peers' | 'interface';
  configSha256?: string;
  rpFilterApplied?: { all: number; default: number };
  service?: { active: string; enabled: string; interfaceIndex?: number };
  tunnel?: { routes: string[]; handshakes: Map<string, number> };
  /** what this run changed on the node, in words (in a dry run: what it would change) */
  changes: string[];
  /** dry run: how the config file would change (../render/line-diff.ts), until the phase report takes it */
  configDiff?: string[];
  /** a step that failed on this node: later steps skip it, its checks fail */
  error?: string;
}

/** A line of NodeState.changes that changed something (warnings ride along in the same list as `warning: ...`). */
export const isChange = (line: string) => !line.startsWith('warning:');

/** What the engine itself needs from the command line; prompting is the view's, connecting the connector's. */
export interface RunOptions {
  signal: AbortSignal;
  /** plan, do not apply: read-only phases run as usual, every later phase only records what it would change */
  dryRun?: boolean;
}

export interface EngineContext {
  inventory: Inventory;
  nodes: NodeState[];
  options: RunOptions;
  /** opens a new, separate SSH connection to a node (for the "can still log in" check) */
  reconnect: (node: Node) => Promise<Connection>;
  /** the ping matrix from the verify phase, kept for the report */
  matrix?: Matrix;
}

export interface StepDefinition {
  /** 'node': runs on every node in parallel; 'mesh': runs once with all nodes (e.g. the ping matrix) */
  scope: 'node' | 'mesh';
  run: (ctx: EngineContext, state?: NodeState) => Promise<void>;
  /**
   * The dry run of a step that changes nodes (or needs a working mesh): records in `state.changes` what `run`
   * would do and leaves the state `run` would leave, with no remote command. Read-only steps have none.
   */
  plan?: (ctx: EngineContext, state?: NodeState) => void;
}

export interface CheckDefinition {
  /** evaluates from what the steps recorded; may do read-only I/O */
  evaluate: (ctx: EngineContext, state: NodeState) => Promise<CheckResult> | CheckResult;
}

export interface PhaseSpec {
  id: string;
  title: string;
  steps: string[];
  checks: string[];
  /** the runbook's GO criterion, shown at the gate */
  go: string;
}

export interface Playbook {
  name: string;
  description: string;
  phases: PhaseSpec[];
  source: string;
}

export interface NodePhaseReport {
  node: string;
  changes: string[];
  /** dry run: the config file's would-be diff */
  diff?: string[];
  checks: CheckResult[];
  error?: string;
}

export interface PhaseReport {
  id: string;
  title: string;
  go: string;
  /** PLANNED: a dry run recorded what the phase would change, and neither ran nor checked anything */
  verdict: 'GO' | 'STOP' | 'PLANNED';
  durationMs: number;
  nodes: NodePhaseReport[];
}
