/**
 * `meshctl up`: connect to every node (one connection each, in parallel), run the up playbook with its gates,
 * and return a report. Output and prompting belong to the view; this module decides nothing about terminals.
 */
import type { Inventory } from '../inventory/types.js';
import type { Matrix } from '../checks/ping-matrix.js';
import type { Connection } from '../transport/types.js';
import { loadPlaybook, builtinPlaybookPath } from './playbook.js';
import { registryNames } from './registry.js';
import { runPlaybook, type EngineView } from './runner.js';
import { isChange, type EngineContext, type NodeState, type PhaseReport, type RunOptions } from './types.js';

export interface Connector {
  /** one connection per node, all in parallel; every node's failure reported; close() ends them all */
  connectAll(inventory: Inventory): Promise<{ connections: Map<string, Connection>; failures: Map<string, Error>; close(): Promise<void> }>;
  connectOne(node: Inventory['nodes'][number]): Promise<Connection>;
}

export interface UpReport {
  inventory: string;
  playbook: string;
  /** planned: a dry run went through every phase (its `changes` are what `up` would change) */
  result: 'converged' | 'planned' | 'stopped' | 'unreachable';
  dryRun: boolean;
  stoppedAt?: string;
  /** total changes made on all nodes by this run (0 on a converged mesh) */
  changes: number;
  phases: PhaseReport[];
  connectFailures: { node: string; error: string }[];
  matrix?: Matrix;
  timings: { totalMs: number; connectMs: number };
  roundTrips: Record<string, number>;
}

export async function runUp(
  inventory: Inventory,
  connector: Connector,
  view: EngineView,
  options: RunOptions & { playbookPath?: string },
): Promise<UpReport> {
  const started = Date.now();
  const playbookPath = options.playbookPath ?? builtinPlaybookPath('up');
  const playbook = loadPlaybook(playbookPath, registryNames);
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
    const nodes: NodeState[] = inventory.nodes.map((node) => ({ node, connection: connections.get(node.name)!, changes: [] }));
    const ctx: EngineContext = { inventory, nodes, options, reconnect: (node) => connector.connectOne(node) };
    const result = await runPlaybook(ctx, playbook, view);
    const changes = nodes.reduce((sum, s) => sum + s.changes.filter(isChange).length, 0);
    return {
      ...base,
      result: result.stoppedAt ? 'stopped' : options.dryRun ? 'planned' : 'converged',
      stoppedAt: result.stoppedAt,
      changes,
      phases: result.phases,
      matrix: ctx.matrix,
      timings: { totalMs: Date.now() - started, connectMs },
      roundTrips: Object.fromEntries(nodes.map((s) => [s.node.name, s.connection.stats.commands])),
    };
  } finally {
    await close();
  }
}
