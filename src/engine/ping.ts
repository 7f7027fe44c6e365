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
import type { LivePeer } from '../render/wgdump.js';

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

/**
 * One string object per distinct text (issue 10), for values many nodes hold alike: a ping round's routes and peers
 * (here) and a phase's check evidence (./runner.ts); the desired configs share whole peers (../topology/desired.ts).
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

/** Texts by number, for one round's tables (a key, endpoint or AllowedIPs list is one number per peer; 0: none). */
class TextTable {
  readonly texts: unknown[] = [undefined];
  private readonly ids = new Map<unknown, number>();
  /** the number of `text` (a string, or a list already shared: one object per distinct list) */
  id(text: unknown): number {
    if (text === undefined) return 0;
    let id = this.ids.get(text);
    if (id === undefined) {
      id = this.texts.length;
      this.texts.push(text);
      this.ids.set(text, id);
    }
    return id;
  }
}

/** The numbers kept per live peer: latest handshake (0: never), rx bytes, tx bytes, keepalive (0: off), preshared key (1: set). */
const PEER_NUMBERS = 5;

/**
 * One node's live peers after the pings, kept as numbers (issue 10): every node's are kept for the run, and as
 * objects they were 1e6 `LivePeer`s at 1,000 nodes (~100 MB); here ~60 bytes a peer. Read back (`peers`) as the
 * LivePeer values they were parsed into, field for field, in the same order.
 */
class LivePeerTable {
  /** per peer: its public key's, endpoint's and AllowedIPs list's number in `texts` */
  private readonly textIds: Uint32Array;
  private readonly numbers: Float64Array;

  constructor(
    peers: readonly LivePeer[],
    private readonly texts: TextTable,
    shared: ReturnType<typeof sharedText>,
  ) {
    this.textIds = new Uint32Array(peers.length * 3);
    this.numbers = new Float64Array(peers.length * PEER_NUMBERS);
    peers.forEach((peer, i) => {
      this.textIds[3 * i] = texts.id(shared(peer.publicKey));
      this.textIds[3 * i + 1] = texts.id(peer.endpoint === undefined ? undefined : shared(peer.endpoint));
      this.textIds[3 * i + 2] = texts.id(shared.list(peer.allowedIps));
      const at = PEER_NUMBERS * i;
      this.numbers[at] = peer.latestHandshake ?? 0;
      this.numbers[at + 1] = peer.rxBytes;
      this.numbers[at + 2] = peer.txBytes;
      this.numbers[at + 3] = peer.persistentKeepalive ?? 0;
      this.numbers[at + 4] = peer.hasPresharedKey ? 1 : 0;
    });
  }

  /**
   * The peers as LivePeer values, a fresh array per call (read it once per use: the checks of a node read it once).
   * Not cached, not even weakly: a phase's checks run in one job, and V8 keeps every WeakRef target read in a job
   * alive to its end, so all nodes' peers were held at once again (seen in a heap snapshot at 250 nodes).
   */
  peers(): LivePeer[] {
    const peers: LivePeer[] = [];
    const text = (at: number) => this.texts.texts[this.textIds[at]!];
    for (let i = 0; i < this.numbers.length / PEER_NUMBERS; i++) {
      const at = PEER_NUMBERS * i;
      const endpoint = text(3 * i + 1) as string | undefined;
      const latestHandshake = this.numbers[at]!;
      const persistentKeepalive = this.numbers[at + 3]!;
      // the fields in parseWgDumpPeers' order (src/render/wgdump.ts)
      peers.push({
        publicKey: text(3 * i) as string,
        hasPresharedKey: this.numbers[at + 4] === 1,
        ...(endpoint !== undefined ? { endpoint } : {}),
        allowedIps: text(3 * i + 2) as string[],
        ...(latestHandshake > 0 ? { latestHandshake } : {}),
        rxBytes: this.numbers[at + 1]!,
        txBytes: this.numbers[at + 2]!,
        ...(persistentKeepalive > 0 ? { persistentKeepalive } : {}),
      });
    }
    return peers;
  }
}

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
