/**
 * The verify phase of `up`, in one round trip per node: the ping matrix over all nodes at once, and in the same
 * script, after the pings have provoked handshakes, the routes on the interface and the peers' latest handshakes.
 * After a run that changed something, one round before it lets one side of each pair speak first.
 */
import { runPingRound } from '../checks/ping-matrix.js';
import { firstContactPairs } from '../topology/endpoints.js';
import { peerDumpCommand } from '../checks/probes.js';
import { parseWgDumpPeers } from '../render/wgdump.js';
import { shellQuote } from '../transport/types.js';
import { isChange, type CheckResult, type EngineContext } from './types.js';

export async function runPingMatrix(ctx: EngineContext): Promise<void> {
  const iface = ctx.inventory.mesh.interface;
  const connections = new Map(ctx.nodes.filter((s) => !s.error).map((s) => [s.node.name, s.connection]));
  const targets = ctx.inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
  // a run that changed nothing has its sessions already; after any change, one side of each pair speaks first
  const changed = ctx.nodes.some((s) => s.changes.some(isChange));
  const round = await runPingRound(connections, targets, {
    signal: ctx.options.signal,
    ...(changed ? { firstContact: firstContactPairs(ctx.inventory) } : {}),
    after: [
      { name: 'routes', command: `ip -4 route show dev ${shellQuote(iface)} | cut -d' ' -f1` },
      { name: 'peers', command: peerDumpCommand(iface) },
    ],
  });
  ctx.matrix = round.matrix;
  for (const state of ctx.nodes) {
    const sections = round.after.get(state.node.name);
    if (!sections) continue;
    const routes = (sections.get('routes')?.body ?? '')
      .split('\n')
      .map((l) => l.trim())
      .filter(Boolean);
    const peers = parseWgDumpPeers(sections.get('peers')?.body ?? '').peers;
    state.tunnel = { routes, handshakes: new Map(peers.map((p) => [p.publicKey, p.latestHandshake ?? 0])) };
  }
}

export function pingMatrixRow(ctx: EngineContext, node: string): CheckResult {
  const matrix = ctx.matrix;
  if (!matrix) return { id: 'ping-matrix', status: 'fail', message: 'the ping matrix did not run' };
  const row = matrix.cells[node] ?? {};
  const failed = Object.entries(row).filter(([, cell]) => !cell.ok);
  if (failed.length === 0) return { id: 'ping-matrix', status: 'pass', message: `reaches all ${Object.keys(row).length} peers` };
  return {
    id: 'ping-matrix',
    status: 'fail',
    message: `cannot reach ${failed.map(([peer]) => peer).join(', ')}`,
    evidence: failed.map(
      ([peer, cell]) => `${node} -> ${peer}: ${cell.received}/${cell.transmitted} replies${cell.error ? `, ${cell.error}` : ''}`,
    ),
  };
}
