/**
 * The verify phase of `up`, in one round trip per node: the ping matrix over all nodes at once, and in the same
 * script, after the pings have provoked handshakes, the routes on the interface and the peers' latest handshakes.
 * After a run that changed something, one round before it lets one side of each pair speak first (two handshake
 * initiations that cross make both ends wait REKEY_TIMEOUT for a retry).
 */
import { runPingRound, type MatrixCell } from '../checks/ping-matrix.js';
import { FACTS, readFact } from '../facts/definitions.js';
import { firstContactPairs } from '../topology/endpoints.js';
import type { CheckResult, MeshStepInput, MeshStepOutput, TunnelValue } from './types.js';
import type { LivePeer } from '../render/wgdump.js';

/** Runs the ping matrix; provides each node's `tunnel` (routes, handshakes, its matrix row) and the whole matrix. */
export async function runPingMatrix(input: MeshStepInput<'desired'>): Promise<MeshStepOutput<'tunnel'>> {
  // the same fact definitions verify reads after its pings (../facts/definitions.ts): one command, one parser each
  const ctx = { interface: input.inventory.mesh.interface, listenPort: 0 };
  const after = [FACTS.interfaceRoutes, FACTS.peers, FACTS.now];
  const connections = new Map(input.nodes.map((n) => [n.node.name, n.connection]));
  const targets = input.inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));
  const round = await runPingRound(connections, targets, {
    signal: input.signal,
    // a run that changed nothing has its sessions already; after any change, one side of each pair speaks first.
    // Issue 10 (facts helper, a small change in the lead's engine): a run that changed nothing asks one reply per
    // pair and direction, not three. Each node still pings every peer and the gate still fails a pair that does not
    // answer before the deadline (ping keeps sending every interval until it gets the reply), but a healthy pair
    // answers in one round trip instead of two 0.2 s intervals plus one.
    ...(input.changedSoFar ? { firstContact: firstContactPairs(input.inventory) } : { count: 1 }),
    after: after.map((def) => ({ name: def.name, command: def.command(ctx) })),
  });
  const values = new Map<string, { tunnel: TunnelValue }>();
  const errors = new Map<string, string>();
  const shared = sharedText();
  for (const { node } of input.nodes) {
    const sections = round.after.get(node.name);
    const row = round.matrix.cells[node.name] ?? {};
    const failure = round.errors.get(node.name);
    if (!sections) {
      errors.set(node.name, failure ?? 'the ping matrix did not run');
      continue;
    }
    // A script that did not finish (timed out, killed) printed no routes or peers: reading the missing sections as
    // empty would report every route missing and no peer at all, which is false (seen at 32 nodes on a loaded host,
    // 2026-11-30: "edge-1 is not a peer with its key" while home-1 pinged edge-1). Its pings are in the matrix.
    if (failure !== undefined) {
      errors.set(node.name, `${failure}: its routes and handshakes after the pings were not read`);
      continue;
    }
    const routes = readFact(FACTS.interfaceRoutes, sections, ctx).map(shared);
    const peers = readFact(FACTS.peers, sections, ctx).peers.map((peer) => sharedPeer(peer, shared));
    const now = readFact(FACTS.now, sections, ctx);
    values.set(node.name, { tunnel: { routes, peers, ...(now !== undefined ? { now } : {}), row } });
  }
  return { values, errors, matrix: round.matrix };
}

/**
 * One string object per distinct text (issue 10), for values many nodes hold alike: a ping round's routes and peers
 * (here), the desired configs' endpoints and AllowedIPs (./registry.ts), a phase's check evidence (./runner.ts).
 * Peer N's key, /32 and route line appear on N-1 nodes, and each parsed one is a slice that holds its node's whole
 * output: at 1,000 nodes ~2e6 slices kept ~200 MB of outputs alive until the run's end. Shared, they hold none.
 * `list`: one frozen array per distinct list of texts.
 */
export function sharedText(): ((text: string) => string) & { list(texts: string[]): string[] } {
  const seen = new Map<string, string>();
  const lists = new Map<string, string[]>();
  const one = (text: string): string => {
    const known = seen.get(text);
    if (known !== undefined) return known;
    // a flat copy of its own, so the string kept does not hold the output it was cut from
    const own = Buffer.from(text, 'utf8').toString('utf8');
    seen.set(own, own);
    return own;
  };
  /** one frozen array per distinct list (a peer's AllowedIPs are the same list on every node that has it) */
  const list = (texts: string[]): string[] => {
    // one text (a peer's own /32, the usual list) is its own key: no joined copy per lookup
    const key = texts.length === 1 ? texts[0]! : `\n${texts.join('\n')}`;
    let known = lists.get(key);
    if (!known) {
      known = Object.freeze(texts.map(one)) as string[];
      lists.set(key, known);
    }
    return known;
  };
  return Object.assign(one, { list });
}

/** `peer` with its texts shared (sharedText): the same values, in the same fields. */
function sharedPeer(peer: LivePeer, shared: ReturnType<typeof sharedText>): LivePeer {
  peer.publicKey = shared(peer.publicKey);
  if (peer.endpoint !== undefined) peer.endpoint = shared(peer.endpoint);
  peer.allowedIps = shared.list(peer.allowedIps);
  return peer;
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
