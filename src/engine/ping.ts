/**
 * The verify phase of `up`, in one round trip per node: the ping matrix over all nodes at once, and in the same
 * script, after the pings have provoked handshakes, the routes on the interface and the peers' latest handshakes.
 * After a run that changed something, one round before it lets one side of each pair speak first (two handshake
 * initiations that cross make both ends wait REKEY_TIMEOUT for a retry), and the pairs that failed are pinged once
 * more before the gate judges them (../checks/ping-matrix.ts RECHECK), the dialer of each clearing its session with
 * the other end first (./session-reset.ts).
 */
import { runPingRound, type MatrixCell } from '../checks/ping-matrix.js';
import { FACTS, readFact } from '../facts/definitions.js';
import { firstContactPairs } from '../topology/endpoints.js';
import { sessionResetCommand } from './session-reset.js';
import type { CheckResult, MeshStepInput, MeshStepOutput, TunnelValue } from './types.js';
import { LivePeerTable, sharedText, TextTable } from '../checks/live-peers.js';

/** Runs the ping matrix; provides each node's `tunnel` (routes, handshakes, its matrix row) and the whole matrix. */
export async function runPingMatrix(input: MeshStepInput<'desired'>): Promise<MeshStepOutput<'tunnel'>> {
  // the same fact definitions verify reads after its pings (../facts/definitions.ts): one command, one parser each
  const ctx = { interface: input.inventory.mesh.interface, listenPort: 0 };
  const after = [FACTS.interfaceRoutes, FACTS.peers, FACTS.now];
  const connections = new Map(input.nodes.map((n) => [n.node.name, n.connection]));
  const desiredOf = new Map(input.nodes.map((n) => [n.node.name, n.values.desired]));
  const targets = input.inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
  const shared = sharedText();
  const texts = new TextTable();
  // each node's tunnel value is read as its output arrives, so no node's routes and peer dump wait for the last
  // node's answer (issue 10): a value, or why there is none
  const arrived = new Map<string, { tunnel: TunnelValue } | string>();
  const round = await runPingRound(connections, targets, {
    signal: input.signal,
    // a run that changed nothing has its sessions already; after any change, one side of each pair speaks first.
    // Issue 10 (facts helper, a small change in the lead's engine): a run that changed nothing asks one reply per
    // pair and direction, not three. Each node still pings every peer and the gate still fails a pair that does not
    // answer before the deadline (ping keeps sending every interval until it gets the reply), but a healthy pair
    // answers in one round trip instead of two 0.2 s intervals plus one.
    ...(input.changedSoFar ? { firstContact: firstContactPairs(input.inventory) } : { count: 1 }),
    // after a change, a pair that failed is pinged once more before the gate judges it (../checks/ping-matrix.ts
    // RECHECK): new handshakes that crossed can leave a session in one direction only until WireGuard starts a new
    // one 15 s later, and without the second round relay: auto relayed such a pair (docs/ping-round.md). A run that
    // changed nothing keeps one round: its sessions are not new (and the round ahead, ./ping-ahead.ts, is replayed
    // through this same step)
    recheck: input.changedSoFar,
    // before the round (a pair whose first contact got no answer) and before that second round (a failed pair), the
    // pair's dialer clears its session with the other end, so that its first echo request starts a fresh handshake
    // instead of waiting for WireGuard's own, 15 s after the deaf end began sending (./session-reset.ts; 32-node
    // bench, 2026-12-02: the ping phase 24.0 s against a 7.2 s floor)
    ...(input.changedSoFar
      ? {
          resetSessions: (node: string, peers: readonly string[]) => {
            const config = desiredOf.get(node);
            return config ? sessionResetCommand(config, peers) : undefined;
          },
        }
      : {}),
    after: after.map((def) => ({ name: def.name, command: def.command(ctx) })),
    onAfter: (node, { after: sections, row, failure }) => {
      // A script that did not finish (timed out, killed) printed no routes or peers: reading the missing sections as
      // empty would report every route missing and no peer at all, which is false (seen at 32 nodes on a loaded host,
      // 2026-11-30: "edge-1 is not a peer with its key" while home-1 pinged edge-1). Its pings are in the matrix.
      if (failure !== undefined) {
        arrived.set(node, `${failure}: its routes and handshakes after the pings were not read`);
        return;
      }
      const routes = readFact(FACTS.interfaceRoutes, sections, ctx).map(shared);
      const peers = new LivePeerTable(readFact(FACTS.peers, sections, ctx).peers, texts, shared);
      const now = readFact(FACTS.now, sections, ctx);
      arrived.set(node, { tunnel: tunnelValue(routes, peers, now, row) });
    },
  });
  const values = new Map<string, { tunnel: TunnelValue }>();
  const errors = new Map<string, string>();
  for (const { node } of input.nodes) {
    const value = arrived.get(node.name);
    if (value === undefined) errors.set(node.name, round.errors.get(node.name) ?? 'the ping matrix did not run');
    else if (typeof value === 'string') errors.set(node.name, value);
    else values.set(node.name, value);
  }
  return { values, errors, matrix: round.matrix };
}

export { sharedText } from '../checks/live-peers.js';

/** A node's tunnel value with its peers kept as a LivePeerTable: `peers` an own, enumerable field read from it. */
function tunnelValue(routes: string[], table: LivePeerTable, now: number | undefined, row: TunnelValue['row']): TunnelValue {
  return {
    routes,
    get peers() {
      return table.peers();
    },
    ...(now !== undefined ? { now } : {}),
    row,
  };
}

/** The ping-matrix check of one node: every cell of its row answered. */
export function pingMatrixRow(node: string, row: Record<string, MatrixCell>): CheckResult {
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
