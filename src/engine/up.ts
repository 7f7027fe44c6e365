/**
 * `meshctl up`: connect to every node (one connection each, in parallel), run the up playbook through the one run
 * loop (./runner.ts) with the executor backend, or the recorder for a dry run, and return a report that holds the
 * plan value. Output and prompting belong to the view; this module decides nothing about terminals.
 */
import type { Matrix } from '../checks/ping-matrix.js';
import type { Inventory } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { executor, recorder } from './backend.js';
import { acquireLocks } from './lock.js';
import { countActions, type Plan } from './plan.js';
import { builtinPlaybookPath, loadPlaybook } from './playbook.js';
import { registryContract } from './registry.js';
import { runPlaybook } from './runner.js';
import { DEFAULT_ROLLBACK_DEADLINE_S, newRunId } from './revert.js';
import type { EngineEvent, PhaseReport } from './types.js';

export interface Connector {
  /** one connection per node, all in parallel; every node's failure reported; close() ends them all */
  connectAll(inventory: Inventory): Promise<{ connections: Map<string, Connection>; failures: Map<string, Error>; close(): Promise<void> }>;
  connectOne(node: Inventory['nodes'][number]): Promise<Connection>;
}

/** What the engine needs from the command line; prompting is the view's, connecting the connector's. */
export interface UpOptions {
  signal: AbortSignal;
  /** plan, do not apply: read-only phases run as usual, every later phase is only recorded */
  dryRun?: boolean;
  playbookPath?: string;
  /** hosts at once (scheduler.ts DEFAULT_FORKS) */
  forks?: number;
  /** take over another run's lock (./lock.ts) */
  breakLock?: boolean;
  /** seconds a node's change may go unconfirmed before it reverts by itself; 0: arm no rollback (./revert.ts) */
  rollbackDeadlineS?: number;
}

/** What `up` shows and what the view needs to draw it. */
export interface UpView {
  onEvent(event: EngineEvent): void;
  gate(report: PhaseReport, isLast: boolean): Promise<boolean>;
}

export interface UpReport {
  inventory: string;
  playbook: string;
  /** planned: a dry run went through every phase (its `changes` are what `up` would change) */
  result: 'converged' | 'planned' | 'stopped' | 'unreachable' | 'interrupted' | 'locked';
  /** result 'locked': which node, and who holds its run lock */
  locked?: string;
  /** notes about the run itself (a stale lock taken over) */
  warnings?: string[];
  dryRun: boolean;
  stoppedAt?: string;
  /** actions run on all nodes by this run (0 on a converged mesh); in a dry run, actions planned */
  changes: number;
  phases: PhaseReport[];
  /** the plan value: per phase and node, the typed changes and their scripts */
  plan?: Plan;
  connectFailures: { node: string; error: string }[];
  matrix?: Matrix;
  timings: { totalMs: number; connectMs: number };
  /** remote commands per node */
  roundTrips: Record<string, number>;
}

/**
 * Runs `up` and reports; throws only for bad input (a playbook that does not load: exit 2 through main).
 * A node that cannot be connected makes the result 'unreachable' before anything runs anywhere.
 */
export async function runUp(inventory: Inventory, connector: Connector, view: UpView, options: UpOptions): Promise<UpReport> {
  const started = Date.now();
  const playbookPath = options.playbookPath ?? builtinPlaybookPath('up');
  const playbook = loadPlaybook(playbookPath, registryContract);
  const { connections, failures, close } = await connector.connectAll(inventory);
  const connectMs = Date.now() - started;
  const base = {
    inventory: inventory.source,
    playbook: playbookPath,
    dryRun: options.dryRun ?? false,
    connectFailures: [...failures].map(([node, e]) => ({ node, error: e.message })),
  };
  try {
    if (failures.size > 0) {
      return {
        ...base,
        result: 'unreachable',
        changes: 0,
        phases: [],
        timings: { totalMs: Date.now() - started, connectMs },
        roundTrips: {},
      };
    }
    // a run that changes nodes holds their lock (./lock.ts); plans and dry runs read only and take none
    const lock = options.dryRun
      ? undefined
      : await acquireLocks(connections, { breakLock: options.breakLock ?? false, signal: options.signal });
    if (lock && !lock.ok) {
      const timings = { totalMs: Date.now() - started, connectMs };
      return { ...base, result: 'locked', locked: lock.message, changes: 0, phases: [], timings, roundTrips: {} };
    }
    try {
      const run = await runPlaybook({
        inventory,
        playbook,
        connections,
        backend: options.dryRun ? recorder : executor,
        signal: options.signal,
        ...(options.forks ? { forks: options.forks } : {}),
        reconnect: (node) => connector.connectOne(node),
        onEvent: (event) => view.onEvent(event),
        gate: (report, isLast) => view.gate(report, isLast),
        ...(options.dryRun || options.rollbackDeadlineS === 0
          ? {}
          : { rollback: { runId: newRunId(), deadlineS: options.rollbackDeadlineS ?? DEFAULT_ROLLBACK_DEADLINE_S } }),
      });
      const warnings = [...(lock?.ok ? lock.warnings : []), ...(run.rollbackNotes ?? [])];
      return {
        ...base,
        result: run.interrupted ? 'interrupted' : run.stoppedAt ? 'stopped' : options.dryRun ? 'planned' : 'converged',
        ...(run.stoppedAt ? { stoppedAt: run.stoppedAt } : {}),
        changes: countActions(run.plan),
        phases: run.phases,
        plan: run.plan,
        ...(run.matrix ? { matrix: run.matrix } : {}),
        timings: { totalMs: Date.now() - started, connectMs },
        roundTrips: Object.fromEntries([...connections].map(([name, c]) => [name, c.stats.commands])),
        ...(warnings.length ? { warnings } : {}),
      };
    } finally {
      await lock?.release();
    }
  } finally {
    await close();
  }
}
