/**
 * The I/O half of verify (and of debug's evidence): the pre script, the cold-start probe and the ping + path-MTU
 * round with the checklist beside the pings, on every node at once (see collectVerify), then the public keys and
 * the design (desiredMesh). The ping round ends with a second peer dump, to see the handshakes the pings caused.
 */
import { createHash } from 'node:crypto';
import type { Inventory } from '../inventory/types.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';
import { REKEY_AFTER_TIME_S } from '../remote/wireguard.js';
import { desiredMesh, type DesiredNodeConfig } from '../topology/desired.js';
import { firstContactPairs } from '../topology/endpoints.js';
import type { LivePeer } from '../render/wgdump.js';
import { FACTS, factsScript, readFact, type FactContext } from '../facts/definitions.js';
import {
  checklistProbe,
  checklistScript,
  checklistSectionNames,
  parseChecklistSections,
  sectionScript,
  splitSections,
  type ChecklistParams,
  type NodeChecklist,
} from './probes.js';
import { runPingRound, type Matrix, type PingTarget } from './ping-matrix.js';
import type { VerifyFacts } from './verify.js';
import { runColdStart, UDP_COUNTERS_FACT, type ColdStartResult, type UdpCounters } from './cold-start.js';
import { LEAN_PRE_FACTS } from './checklist-lean.js';

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
  /** each stage's own duration, ms (they overlap: see collectVerify); collectMs: the whole collection's wall time */
  timings: {
    checklistMs: number;
    pingMs: number;
    /** the pre script, all nodes (part of coldStartMs) */
    preMs?: number;
    coldStartMs?: number;
    /** the cold-start probe's round trips after the pre script (1 on a healthy mesh) */
    coldStartRoundTrips?: number;
    /** the first-contact round (part of pingMs), when a pair had no fresh session */
    firstContactMs?: number;
    collectMs: number;
  };
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

/**
 * What verify reads on every node before its cold-start probe, in one small script: the node's clock, its live
 * public key and peers (which pairs need a first contact before the pings: pairsWithoutSession) and its UDP
 * counters (the probe's "before"). Small on purpose: the ping round waits for it, the checklist does not.
 */
const PRE_FACTS = [FACTS.now, FACTS.interfacePublicKey, FACTS.interfaceListenPort, FACTS.peers, UDP_COUNTERS_FACT] as const;
/** PRE_FACTS as the pre script runs them: one `wg` for the key, port and peers, the counters read by the shell. */
const PRE_FACTS_LEAN = [
  FACTS.now,
  LEAN_PRE_FACTS.interfacePublicKey,
  LEAN_PRE_FACTS.interfaceListenPort,
  LEAN_PRE_FACTS.peers,
  LEAN_PRE_FACTS.udpCounters,
] as const;

/** One node's answer to the PRE_FACTS script. */
export interface PreFacts {
  now?: number;
  livePublicKey?: string;
  peers: LivePeer[];
  udpCounters?: UdpCounters;
}

/** Reads the PRE_FACTS script's stdout (pure). Facts that are missing are left out; `peers` is then empty. */
export function parsePreFacts(stdout: string, ctx: FactContext): PreFacts {
  const s = splitSections(stdout);
  const now = readFact(FACTS.now, s, ctx);
  const livePublicKey = readFact(FACTS.interfacePublicKey, s, ctx);
  const udpCounters = readFact(UDP_COUNTERS_FACT, s, ctx);
  // a dump that failed (no interface) prints wg's error, not peer lines: no peers then
  const dumpOk = s.get(FACTS.peers.name)?.rc === 0;
  return {
    ...(now !== undefined ? { now } : {}),
    ...(livePublicKey ? { livePublicKey } : {}),
    peers: dumpOk ? readFact(FACTS.peers, s, ctx).peers : [],
    ...(udpCounters ? { udpCounters } : {}),
  };
}

/**
 * The pre script (PRE_FACTS), ending with its own `pre-done` section (the checklist's is `done`). `shared`: the
 * shared definitions' commands (for captures that compare them with the lean ones, ./checklist-lean.ts).
 */
export const preScript = (inventory: Inventory, options: { shared?: boolean } = {}) =>
  factsScript(options.shared ? PRE_FACTS : PRE_FACTS_LEAN, factContext(inventory), 'pre-done');

/** Starts the pre script on every node; each promise resolves with its stdout (undefined when it could not run). */
function startPre(
  inventory: Inventory,
  connections: Map<string, Connection>,
  signal: AbortSignal | undefined,
): Map<string, Promise<string | undefined>> {
  const script = preScript(inventory);
  return new Map(
    [...connections].map(([node, connection]) => [
      node,
      // why it failed is the checklist's to say (same connection)
      connection.run(script, { timeoutMs: checkDeadlineMs(30_000), ...(signal ? { signal } : {}) }).then(
        (r) => r.stdout,
        () => undefined,
      ),
    ]),
  );
}

/**
 * The checklist's parameters for `node`: `withoutPre` leaves out the facts the pre script reads (PRE_FACTS), `beside`
 * ends it with its own `checklist-done` section (the ping script it runs in ends with `done`).
 */
function checklistParams(
  inventory: Inventory,
  node: string,
  options: { firewall?: boolean; withoutPre?: boolean; beside?: boolean },
): ChecklistParams {
  return {
    interface: inventory.mesh.interface,
    listenPort: inventory.nodes.find((n) => n.name === node)!.listenPort,
    peerIps: inventory.nodes.filter((p) => p.name !== node).map((p) => p.overlayIp),
    ...(options.firewall ? { firewall: true } : {}),
    ...(options.withoutPre ? { without: PRE_FACTS.map((def) => def.name) } : {}),
    ...(options.beside ? { endSection: 'checklist-done' } : {}),
  };
}

/**
 * The checklist on every node at once (one script each). `pre`, when given, is the output of each node's pre
 * script (PRE_FACTS): the checklist then leaves those facts out and is read from both outputs. A node whose
 * checklist could not run (the connection broke) is in `unreachable`, with the reason.
 */
export async function runChecklists(
  inventory: Inventory,
  connections: Map<string, Connection>,
  options: { firewall?: boolean; signal?: AbortSignal; pre?: Map<string, Promise<string | undefined>> } = {},
): Promise<{ checklists: Map<string, NodeChecklist>; unreachable: Map<string, string> }> {
  const checklists = new Map<string, NodeChecklist>();
  const unreachable = new Map<string, string>();
  const runOptions = { timeoutMs: checkDeadlineMs(30_000), ...(options.signal ? { signal: options.signal } : {}) };
  await Promise.all(
    inventory.nodes.map(async (node) => {
      const connection = connections.get(node.name);
      if (!connection) return;
      const pre = options.pre?.get(node.name);
      const probe = checklistProbe(checklistParams(inventory, node.name, { ...options, withoutPre: !!pre }));
      try {
        const result = await connection.run(probe.script, runOptions);
        // the pre script's sections first: the checklist's own `done` section is the one that counts
        // (a pre script that failed where the checklist ran is read again: rare, and the checklist needs its facts)
        const preOut = pre ? ((await pre) ?? (await connection.run(preScript(inventory), runOptions)).stdout) : '';
        checklists.set(node.name, probe.parse(`${preOut}\n${result.stdout}`));
      } catch (error) {
        unreachable.set(node.name, (error as Error)?.message ?? String(error));
      }
    }),
  );
  return { checklists, unreachable };
}

/**
 * Collects everything verify judges, in three scripts per node, one after the other on its one connection (one
 * channel open at a time, well under OpenSSH's MaxSessions 10), every node at once:
 *   1. the "pre" script (clock, live key, listen port, peers, UDP counters): the cold-start probe's counters before;
 *   2. the cold-start probe (./cold-start.ts): each node sends its bursts and watches its own counters until the
 *      bursts addressed to it arrived (one round trip on a healthy mesh);
 *   3. the ping + path-MTU round, with the checklist running beside the pings in the same script.
 * Why they wait for each other: the bursts must not leave before every receiver has read its counters (1 before 2,
 * a barrier: a burst that arrived before the read leaves its receiver short, which costs the slot rounds); the pings'
 * tunnel traffic lands in the same UDP counters and could hide a dropped burst (2 before 3). The checklist needs
 * neither: it sends no UDP, and the probes change nothing it reads but handshakes, which the after-ping dump reads
 * again anyway. It runs in 3 because the ping round is the one stretch where the nodes mostly wait (3 echo requests
 * 0.2 s apart, the DF probe beside them): in 1 it would hold back every burst, in 2 the ping round. The first-contact
 * pairs come from the pre script. A node whose checklist did not come back that way (its pre script failed, its ping
 * script did not run) gets its own checklist script afterwards, as before. Timings: each stage's own duration (they
 * overlap) and collectMs, the wall time of the whole.
 */
export async function collectVerify(
  inventory: Inventory,
  connections: Map<string, Connection>,
  failures: Map<string, Error>,
  options: CollectOptions = {},
): Promise<Collected> {
  const started = Date.now();
  const pre = options.ping !== false ? startPre(inventory, connections, options.signal) : undefined;
  const probed = pre ? await runProbes(inventory, connections, pre, options) : undefined;
  // a node whose checklist did not come back beside its pings (no pre output, its ping script did not run):
  // its own checklist script, as before (a broken connection makes it unreachable there, with the reason)
  const missing = new Map([...connections].filter(([node]) => !probed?.checklists.has(node)));
  const alone = missing.size
    ? await runChecklists(inventory, missing, options)
    : { checklists: new Map<string, NodeChecklist>(), unreachable: new Map<string, string>() };
  const checklists = new Map<string, NodeChecklist>();
  for (const node of inventory.nodes) {
    const cl = probed?.checklists.get(node.name) ?? alone.checklists.get(node.name);
    if (cl) checklists.set(node.name, cl);
  }
  const unreachable = alone.unreachable;
  const checklistMs = Date.now() - started;
  for (const [node, error] of failures) unreachable.set(node, error.message);

  const { keys, unknown } = publicKeysFrom(inventory, checklists);
  const desired = new Map<string, DesiredNodeConfig>(desiredMesh(inventory, keys).map((d) => [d.node, d]));
  return {
    inventory,
    desired,
    unknownKeys: unknown,
    checklists,
    unreachable,
    ...(probed ? { matrix: probed.matrix } : {}),
    afterPing: probed?.afterPing ?? new Map(),
    ...(probed ? { coldStart: probed.coldStart } : {}),
    publicKeys: keys,
    timings: {
      checklistMs,
      pingMs: probed?.pingMs ?? 0,
      ...(probed ? { preMs: probed.preMs, coldStartMs: probed.coldStart.ms, coldStartRoundTrips: probed.coldStart.roundTrips } : {}),
      ...(probed?.firstContactMs !== undefined ? { firstContactMs: probed.firstContactMs } : {}),
      collectMs: Date.now() - started,
    },
  };
}

/** The cold-start probe, then the ping + path-MTU round (see collectVerify). */
async function runProbes(
  inventory: Inventory,
  connections: Map<string, Connection>,
  preRuns: Map<string, Promise<string | undefined>>,
  options: CollectOptions,
): Promise<{
  coldStart: ColdStartResult;
  matrix: Matrix;
  afterPing: Map<string, { now?: number; peers: LivePeer[] }>;
  /** the checklists that ran beside the pings, read with their node's pre output */
  checklists: Map<string, NodeChecklist>;
  pingMs: number;
  preMs: number;
  firstContactMs?: number;
}> {
  const coldStarted = Date.now();
  const ctx = factContext(inventory);
  const pre = new Map<string, PreFacts>();
  const preOut = new Map<string, string>();
  for (const [node, run] of preRuns) {
    const stdout = await run;
    if (stdout === undefined) continue;
    pre.set(node, parsePreFacts(stdout, ctx));
    preOut.set(node, stdout);
  }
  const preMs = Date.now() - coldStarted;
  const initial = new Map<string, UdpCounters>();
  for (const [name, facts] of pre) if (facts.udpCounters) initial.set(name, facts.udpCounters);
  const probe = await runColdStart(inventory, connections, { initial, ...(options.signal ? { signal: options.signal } : {}) });
  // its duration counts the pre script too: that is the probe's first read
  const coldStart = { ...probe, ms: Date.now() - coldStarted };

  const pingStarted = Date.now();
  const firstContact = pairsWithoutSession(inventory, pre, liveKeys(inventory, pre));
  const besideParams = (node: string) => checklistParams(inventory, node, { ...options, withoutPre: true, beside: true });
  const round = await runPingRound(connections, pingTargets(inventory), {
    ...(firstContact.length ? { firstContact } : {}),
    ...(options.pathMtu !== false ? { mtu: inventory.mesh.mtu } : {}),
    ...(options.deadlineSeconds !== undefined ? { deadlineSeconds: options.deadlineSeconds } : {}),
    // the same fact definitions as the checklist's (and up's): read again after the pings
    after: AFTER_PING_FACTS.map((def) => ({ name: def.name, command: def.command(factContext(inventory)) })),
    // the checklist rides in the ping script of every node whose pre script answered (its facts complete it)
    beside: (node) => {
      if (!preOut.has(node)) return undefined;
      const params = besideParams(node);
      return { script: checklistScript(params), sections: checklistSectionNames(params) };
    },
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const checklists = new Map<string, NodeChecklist>();
  for (const [node, sections] of round.beside ?? []) {
    if (sections.size === 0) continue;
    // the pre script's sections, then the checklist's (their names do not overlap: PRE_FACTS are left out of it)
    const all = splitSections(preOut.get(node) ?? '');
    for (const [name, section] of sections) all.set(name, section);
    checklists.set(node, parseChecklistSections(all, besideParams(node)));
  }
  const afterPing = new Map<string, { now?: number; peers: LivePeer[] }>();
  for (const [node, sections] of round.after) {
    const now = readFact(FACTS.now, sections, factContext(inventory));
    afterPing.set(node, {
      ...(now !== undefined ? { now } : {}),
      peers: readFact(FACTS.peers, sections, factContext(inventory)).peers,
    });
  }
  return {
    coldStart,
    matrix: round.matrix,
    afterPing,
    checklists,
    pingMs: Date.now() - pingStarted,
    preMs,
    ...(round.firstContactMs !== undefined ? { firstContactMs: round.firstContactMs } : {}),
  };
}

/** Each node's live public key, as the pre script read it (nodes without one are left out). */
function liveKeys(inventory: Inventory, pre: Map<string, PreFacts>): Map<string, string> {
  const keys = new Map<string, string>();
  for (const node of inventory.nodes) {
    const key = pre.get(node.name)?.livePublicKey;
    if (key) keys.set(node.name, key);
  }
  return keys;
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
  checklists: ReadonlyMap<string, Pick<NodeChecklist, 'now' | 'peers'>>,
  keys: Map<string, string>,
): Array<{ from: string; to: string }> {
  // each dialer's live peers by key, built once: a scan per pair was O(N^3) over the mesh
  const byKeyOf = new Map<string, Map<string, NodeChecklist['peers'][number]>>();
  const liveByKey = (from: string) => {
    let index = byKeyOf.get(from);
    if (!index) {
      index = new Map();
      for (const p of checklists.get(from)?.peers ?? []) if (!index.has(p.publicKey)) index.set(p.publicKey, p);
      byKeyOf.set(from, index);
    }
    return index;
  };
  return firstContactPairs(inventory).filter(({ from, to }) => {
    const checklist = checklists.get(from);
    const key = keys.get(to);
    const peer = key === undefined ? undefined : liveByKey(from).get(key);
    const at = peer?.latestHandshake ?? 0;
    return !(checklist?.now && at > 0 && checklist.now - at < SESSION_FRESH_SECONDS);
  });
}
