/** The verify phase of `up`: the ping matrix over all nodes at once, and its per-node row as a check. */
import { pingMatrix, type Matrix } from '../checks/ping-matrix.js';
import type { CheckResult, EngineContext } from './types.js';

export async function runPingMatrix(ctx: EngineContext): Promise<Matrix> {
  const connections = new Map(ctx.nodes.filter((s) => !s.error).map((s) => [s.node.name, s.connection]));
  const targets = ctx.inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
  return pingMatrix(connections, targets, { signal: ctx.options.signal });
}

export function pingMatrixRow(ctx: EngineContext, node: string): CheckResult {
  const matrix = ctx.matrix as Matrix | undefined;
  if (!matrix) return { id: 'ping-matrix', status: 'fail', message: 'the ping matrix did not run' };
  const row = matrix.cells[node] ?? {};
  const failed = Object.entries(row).filter(([, cell]) => !cell.ok);
  if (failed.length === 0) return { id: 'ping-matrix', status: 'pass', message: `reaches all ${Object.keys(row).length} peers` };
  return {
    id: 'ping-matrix',
    status: 'fail',
    message: `cannot reach ${failed.map(([peer]) => peer).join(', ')}`,
    evidence: failed.map(([peer, cell]) => `${node} -> ${peer}: ${cell.received}/${cell.transmitted} replies${cell.error ? `, ${cell.error}` : ''}`),
  };
}
