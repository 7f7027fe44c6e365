/**
 * The I/O half of verify (and of debug's evidence): runs the checklist probe on every node at once (one round trip
 * each), learns the public keys, builds the design with desiredMesh, then runs the ping + path-MTU round (one more
 * round trip each, all nodes at once) which ends with a second peer dump, to see the handshakes the pings caused.
 */
import { createHash } from 'node:crypto';
import type { Inventory } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { REKEY_AFTER_TIME_S } from '../remote/wireguard.js';
import { desiredMesh, type DesiredNodeConfig } from '../topology/desired.js';
import { firstContactPairs } from '../topology/endpoints.js';
import type { LivePeer } from '../render/wgdump.js';
import { FACTS, readFact, type FactContext } from '../facts/definitions.js';
import { checklistProbe, sectionScript, splitSections, type NodeChecklist } from './probes.js';
import { runPingRound, type Matrix, type PingTarget } from './ping-matrix.js';
import type { VerifyFacts } from './verify.js';
import { runColdStart, type ColdStartResult, type UdpCounters } from './cold-start.js';

export interface CollectOptions {
  /** also run the ping matrix (default true) */
  ping?: boolean;
  /** probe the path MTU of every pair (default true) */
  pathMtu?: boolean;
  /** ping deadline in seconds (default 7) */
  deadlineSeconds?: number;
  /** read firewall rules too (debug) */
  firewall?: boolean;
  signal?: AbortSignal;
}

export interface Collected extends VerifyFacts {
  /** the keys the design was built with, by node (public keys only) */
  publicKeys: Map<string, string>;
  timings: { checklistMs: number; pingMs: number; coldStartMs?: number };
}

/**
 * The public keys verify may show (../remote/redact.ts redacts every other key-shaped value): the keys the design was
 * built with (stand-ins included), each node's live and verified-file public key, and its live peers' keys (a key
 * the kernel holds as a peer is public by the protocol).
 */
export function knownPublicKeys(collected: Pick<Collected, 'publicKeys' | 'checklists'>): Set<string> {
  const known = new Set(collected.publicKeys.values());
  for (const cl of collected.checklists.values()) {
    for (const key of [cl.livePublicKey, cl.filePublicKey, ...cl.peers.map((p) => p.publicKey)]) if (key) known.add(key);
  }
  return known;
}

/** A stand-in key for a node whose key could not be learned: key-shaped, unique per node, never a real key. */
export function placeholderKey(node: string): string {
  return createHash('sha256').update(`meshctl-unknown-key:${node}`).digest('base64');
}

/** The facts read again right after the ping round: the handshakes the pings caused, against the node's clock. */
const AFTER_PING_FACTS = [FACTS.now, FACTS.peers] as const;
/** Only the interface matters to the after-ping facts; the listen port is per node and unused by them. */
const factContext = (inventory: Inventory): FactContext => ({ interface: inventory.mesh.interface, listenPort: 0 });

export const pingTargets = (inventory: Inventory): PingTarget[] => inventory.nodes.map((n) => ({ node: n.name, ip: n.overlayIp }));

/** Learns every node's public key (live first, else the .pub file), with stand-ins for the unknown ones. */
export function publicKeysFrom(
  inventory: Inventory,
  checklists: Map<string, NodeChecklist>,
): { keys: Map<string, string>; unknown: Set<string> } {
  const keys = new Map<string, string>();
  const unknown = new Set<string>();
  const seen = new Set<string>();
  for (const node of inventory.nodes) {
    const cl = checklists.get(node.name);
    let key = cl?.livePublicKey ?? cl?.filePublicKey;
    // one key on two nodes (cloned key files) would make the design unusable: the second one counts as unknown
    if (key !== undefined && seen.has(key)) key = undefined;
    if (key === undefined) {
      key = placeholderKey(node.name);
      unknown.add(key);
    }
    seen.add(key);
    keys.set(node.name, key);
  }
  return { keys, unknown };
}

export async function runChecklists(
  inventory: Inventory,
  connections: Map<string, Connection>,
  options: { firewall?: boolean; signal?: AbortSignal } = {},
): Promise<{ checklists: Map<string, NodeChecklist>; unreachable: Map<string, string> }> {
  const checklists = new Map<string, NodeChecklist>();
  const unreachable = new Map<string, string>();
  await Promise.all(
    inventory.nodes.map(async (node) => {
      const connection = connections.get(node.name);
      if (!connection) return;
      const probe = checklistProbe({
        interface: inventory.mesh.interface,
        listenPort: node.listenPort,
        peerIps: inventory.nodes.filter((p) => p.name !== node.name).map((p) => p.overlayIp),
        ...(options.firewall ? { firewall: true } : {}),
      });
      try {
        const result = await connection.run(probe.script, { timeoutMs: 30_000, ...(options.signal ? { signal: options.signal } : {}) });
        checklists.set(node.name, probe.parse(result.stdout));
      } catch (error) {
        unreachable.set(node.name, (error as Error)?.message ?? String(error));
      }
    }),
  );
  return { checklists, unreachable };
}

export async function collectVerify(
  inventory: Inventory,
  connections: Map<string, Connection>,
  failures: Map<string, Error>,
  options: CollectOptions = {},
): Promise<Collected> {
  const started = Date.now();
  const { checklists, unreachable } = await runChecklists(inventory, connections, options);
  for (const [node, error] of failures) unreachable.set(node, error.message);
  const checklistMs = Date.now() - started;

  const { keys, unknown } = publicKeysFrom(inventory, checklists);
  const desired = new Map<string, DesiredNodeConfig>(desiredMesh(inventory, keys).map((d) => [d.node, d]));

  // before the pings: their tunnel traffic would blur the receivers' UDP counters
  let coldStart: ColdStartResult | undefined;
  if (options.ping !== false) {
    const reachable = new Map([...connections].filter(([name]) => !unreachable.has(name)));
    const initial = new Map<string, UdpCounters>();
    for (const [name, cl] of checklists) if (cl.udpCounters) initial.set(name, cl.udpCounters);
    coldStart = await runColdStart(inventory, reachable, { initial, ...(options.signal ? { signal: options.signal } : {}) });
  }

  let matrix: Matrix | undefined;
  const afterPing = new Map<string, { now?: number; peers: LivePeer[] }>();
  const pingStarted = Date.now();
  if (options.ping !== false) {
    const reachable = new Map([...connections].filter(([name]) => !unreachable.has(name)));
    const firstContact = pairsWithoutSession(inventory, checklists, keys);
    const round = await runPingRound(reachable, pingTargets(inventory), {
      ...(firstContact.length ? { firstContact } : {}),
      ...(options.pathMtu !== false ? { mtu: inventory.mesh.mtu } : {}),
      ...(options.deadlineSeconds !== undefined ? { deadlineSeconds: options.deadlineSeconds } : {}),
      // the same fact definitions as the checklist's (and up's): read again after the pings
      after: AFTER_PING_FACTS.map((def) => ({ name: def.name, command: def.command(factContext(inventory)) })),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    matrix = round.matrix;
    for (const [node, sections] of round.after) {
      const now = readFact(FACTS.now, sections, factContext(inventory));
      afterPing.set(node, {
        ...(now !== undefined ? { now } : {}),
        peers: readFact(FACTS.peers, sections, factContext(inventory)).peers,
      });
    }
  }
  return {
    inventory,
    desired,
    unknownKeys: unknown,
    checklists,
    unreachable,
    ...(matrix ? { matrix } : {}),
    afterPing,
    ...(coldStart ? { coldStart } : {}),
    publicKeys: keys,
    timings: { checklistMs, pingMs: Date.now() - pingStarted, ...(coldStart ? { coldStartMs: coldStart.ms } : {}) },
  };
}

// re-exported for debug, which composes its own scripts from the same building blocks
export { sectionScript, splitSections };

/** A session this fresh needs no first contact: WireGuard rekeys every REKEY_AFTER_TIME while traffic flows. */
const SESSION_FRESH_SECONDS = REKEY_AFTER_TIME_S;

/**
 * The first-contact pairs (see runPingRound) whose dialer shows no fresh handshake with the other side: on a healthy
 * mesh none, so verify pays no extra round trip.
 */
export function pairsWithoutSession(
  inventory: Inventory,
  checklists: Map<string, NodeChecklist>,
  keys: Map<string, string>,
): Array<{ from: string; to: string }> {
  return firstContactPairs(inventory).filter(({ from, to }) => {
    const checklist = checklists.get(from);
    const peer = checklist?.peers.find((p) => p.publicKey === keys.get(to));
    const at = peer?.latestHandshake ?? 0;
    return !(checklist?.now && at > 0 && checklist.now - at < SESSION_FRESH_SECONDS);
  });
}
