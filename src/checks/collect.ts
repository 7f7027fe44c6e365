/**
 * The I/O half of verify (and of debug's evidence): the pre script, the cold-start probe and the ping + path-MTU
 * round with the checklist beside the pings, on every node at once (see collectVerify), then the public keys and
 * the design (desiredMesh). The ping round ends with a second peer dump, to see the handshakes the pings caused.
 */
import { createHash } from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import type { Inventory } from '../inventory/types.js';
import { checkDeadlineMs, TransportError, type Connection, type ExecResult } from '../transport/types.js';
import { rootProblem } from '../engine/root-check.js';
import { REKEY_AFTER_TIME_S } from '../remote/wireguard.js';
import { desiredMesh, type DesiredNodeConfig } from '../topology/desired.js';
import { firstContactPairs } from '../topology/endpoints.js';
import type { LivePeer, ParsedWgDump } from '../render/wgdump.js';
import { parseWgQuickConfig } from '../render/wgquick.js';
import type { Section } from '../facts/sections.js';
import { FACTS, factsScript, parseRouteGet, readFact, type FactContext, type RouteLookup } from '../facts/definitions.js';
import { ownSection, SectionStream } from '../facts/sections.js';
import {
  checklistProbe,
  checklistScript,
  checklistSectionNames,
  parseChecklist,
  parseChecklistSections,
  sectionScript,
  splitSections,
  type ChecklistParams,
  type NodeChecklist,
} from './probes.js';
import { PING_AHEAD_WAIT_S, runPingRound, type Matrix, type PingMatrixOptions, type PingTarget } from './ping-matrix.js';
import type { VerifyFacts } from './verify.js';
import {
  directionPasses,
  runColdStart,
  UDP_COUNTERS_FACT,
  type ColdStartResult,
  type DirectionResult,
  type UdpCounters,
} from './cold-start.js';
import { LEAN_PRE_FACTS } from './checklist-lean.js';
import { LivePeerTable, peersFrom, peerTableOf, RouteLookups, RouteRow, sharedText, TextTable } from './live-peers.js';
import { peersWithClock } from '../facts/lean.js';

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
  /**
   * the connections were made without the transport's root probe (ConnectOptions.probe false): verify's first script
   * proves root instead (see collectVerify); the function says whether a node's commands go through sudo
   * (../engine/root-check.ts sudoOf)
   */
  proveRoot?: (node: string) => boolean;
  /**
   * each checklist's wg-quick file is filtered and parsed when its `config` is first read, not as the checklist
   * arrives (deferConfig): verify's judging reads it only when the file's sha256 is not the design's (issue 10)
   */
  lazyConfig?: boolean;
  /**
   * the cold-start directions that pass are counted per sender as soon as the probe has ended, and only the others
   * kept (Collected.coldStart.passed; for verify's compact judging, which lists no passing check: issue 10, one or
   * two objects a pair held through the ping round and the judging, ~145 MB at 1,000 nodes)
   */
  countPasses?: boolean;
  /**
   * every node's live peers (its pre part's and checklist's dump, and the dump after the pings) and its route lookups
   * kept as numbers as they arrive (./live-peers.ts: LivePeerTable, RouteRow), read back through enumerable getters
   * as the same values, a fresh array per read (issue 10: ~2e6 live peers and ~1e6 lookups at 1,000 nodes, ~280 MB
   * as objects, held until the judging)
   */
  compact?: boolean;
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
  /** nodes whose first script did not run as root (with proveRoot): in `unreachable`, as a failed login is */
  rootFailed?: Set<string>;
}

/**
 * The public keys verify may show (../remote/redact.ts redacts every other key-shaped value): the keys the design was
 * built with (stand-ins included), each node's live and verified-file public key, and its live peers' keys (a key
 * the kernel holds as a peer is public by the protocol).
 */
export function knownPublicKeys(collected: Pick<Collected, 'publicKeys' | 'checklists'>): Set<string> {
  const known = new Set(collected.publicKeys.values());
  for (const cl of collected.checklists.values()) {
    if (cl.livePublicKey) known.add(cl.livePublicKey);
    if (cl.filePublicKey) known.add(cl.filePublicKey);
    // peers kept as numbers (CollectOptions.compact): their keys read from the table, not a LivePeer made per peer
    // only to be dropped (issue 10: ~1e6 at 1,000 nodes)
    const table = peerTableOf(cl);
    for (const key of table ? table.publicKeys() : cl.peers.map((p) => p.publicKey)) if (key) known.add(key);
  }
  return known;
}

/** A stand-in key for a node whose key could not be learned: key-shaped, unique per node, never a real key. */
export function placeholderKey(node: string): string {
  return createHash('sha256').update(`meshctl-unknown-key:${node}`).digest('base64');
}

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
  return readPre(splitSections(stdout), ctx).facts;
}

/**
 * The pre part's facts from its sections (from the pre part alone or the whole first script), with the peer dump as
 * parsed (its problems too): the checklist reads the same section, and takes this parse (parseChecklistSections).
 */
function readPre(s: Map<string, Section>, ctx: FactContext): { facts: PreFacts; dump: ParsedWgDump } {
  const dump = readFact(FACTS.peers, s, ctx);
  const now = readFact(FACTS.now, s, ctx);
  const livePublicKey = readFact(FACTS.interfacePublicKey, s, ctx);
  const udpCounters = readFact(UDP_COUNTERS_FACT, s, ctx);
  // a dump that failed (no interface) prints wg's error, not peer lines: no peers then
  const dumpOk = s.get(FACTS.peers.name)?.rc === 0;
  const facts = {
    ...(now !== undefined ? { now } : {}),
    ...(livePublicKey ? { livePublicKey } : {}),
    peers: dumpOk ? dump.peers : [],
    ...(udpCounters ? { udpCounters } : {}),
  };
  return { facts, dump };
}

/**
 * The pre script (PRE_FACTS), ending with its own `pre-done` section (the checklist's is `done`). `shared`: the
 * shared definitions' commands (for captures that compare them with the lean ones, ./checklist-lean.ts). `uid`: it
 * starts with FACTS.uid (a shell builtin's read), so that verify's first script proves root (see rootFailure).
 */
export const preScript = (inventory: Inventory, options: { shared?: boolean; uid?: boolean } = {}) =>
  factsScript([...(options.uid ? [FACTS.uid] : []), ...(options.shared ? PRE_FACTS : PRE_FACTS_LEAN)], factContext(inventory), PRE_END);

/** The section that ends the pre part of verify's first script: the pre part is in once it has come with its rc. */
const PRE_END = 'pre-done';

/**
 * Verify's first script on a node: the pre script, then the checklist without the pre script's facts, ending with
 * `checklist-done` (one channel, one round trip: the checklist starts on the node as soon as the pre part is done).
 */
export function firstScript(inventory: Inventory, node: string, options: { firewall?: boolean; uid?: boolean } = {}): string {
  return `${preScript(inventory, { uid: !!options.uid })}\n${checklistScript(checklistParams(inventory, node, { ...options, withoutPre: true, beside: true }))}`;
}

/**
 * A first script's output as read while it arrived (issue 10: no node's whole output held): its sections by name, as
 * splitSections would cut the whole, but for the route lookups (`route:IP` of a node's overlay IP, ~1,000 a node at
 * 1,000 nodes), each parsed as it came (parseRouteGet, its `dst` the inventory's own text) into `routes` by IP.
 */
export interface FirstOutput {
  /** every section but the route lookups (and the wg-quick file's, when packed) */
  sections: Map<string, Section>;
  /** with startFirst's `packConfig`: the wg-quick file's section (`conf`), deflated as it arrived (not in `sections`) */
  packed?: PackedSection;
  /** a Map, or with startFirst's `routes` a RouteRow (the lookups kept as numbers) */
  routes: Map<string, RouteLookup> | RouteRow;
}

/** One node's first script under way: its pre part resolves as soon as it was printed, the whole when it ends. */
export interface FirstRun {
  /**
   * the pre part's sections (up to and with its `pre-done` section) once that arrived, else every section when the
   * script ended without it (with the result); undefined when the script could not run (the connection broke)
   */
  pre: Promise<{ sections: Map<string, Section>; result?: ExecResult } | undefined>;
  /** the whole script: its result, or why it could not run */
  whole: Promise<ExecResult | Error>;
  /** when the whole script ended (Date.now()); the time of the call until it has */
  endedAt(): number;
}

/**
 * Starts verify's first script (firstScript) on every node. Its output is read as it arrives (RunOptions.onStdout),
 * so the pre part is in hand while the checklist still runs on the node: the cold-start probe and the ping round need
 * only the pre part, and the checklist overlaps them on its own channel (it sends no UDP, so it cannot disturb the
 * probe's counters; see collectVerify). The output is cut into sections as it arrives (SectionStream; the route
 * lookups parsed then: FirstOutput) and the transport keeps none of it (RunOptions.discardStdout): `digest` gets the
 * sections, and the result's stdout is empty.
 */
export function startFirst(
  inventory: Inventory,
  connections: Map<string, Connection>,
  options: {
    firewall?: boolean;
    uid?: boolean;
    signal?: AbortSignal;
    /**
     * what `whole` resolves to, made from the script's result and its output's sections as soon as it ended (the
     * result's stdout is empty: see above)
     */
    digest?: (node: string, result: ExecResult, output: FirstOutput) => ExecResult;
    /** the run's table of route lookups: each node's lookups kept as numbers as they arrive (a RouteRow each) */
    routes?: RouteLookups;
    /**
     * told the pre part's sections as soon as they are in (its `pre-done` came), before `pre` resolves; its peer dump's
     * section is then let go (not in `pre`'s sections, nor in the digest's): the caller has read it (issue 10: a node's
     * dump, ~0.1 MB at 1,000 nodes, was held until its whole script ended)
     */
    onPre?: (node: string, sections: Map<string, Section>) => void;
    /**
     * the wg-quick file's section deflated as soon as it arrived (FirstOutput.packed), not held as text until the
     * script ends (issue 10: ~158 kB a node at 1,000 nodes, every node's at once while their checklists stream)
     */
    packConfig?: boolean;
  } = {},
): Map<string, FirstRun> {
  // a route section's IP as the inventory writes it: the parsed lookup holds no slice of the output
  const overlayIps = new Map(inventory.nodes.map((n) => [n.overlayIp, n.overlayIp]));
  return new Map(
    [...connections].map(([node, connection]) => {
      type Pre = { sections: Map<string, Section>; result?: ExecResult } | undefined;
      let resolvePre: (value: Pre) => void = () => undefined;
      const pre = new Promise<Pre>((resolve) => (resolvePre = resolve));
      // the promise's resolver is let go once used: kept in this scope (which `endedAt` keeps to the collection's
      // end), it held the promise and so the pre part's output (issue 10: every node's, ~0.11 MB each at 1,000 nodes)
      const preDone = (value: Pre) => {
        const resolve = resolvePre;
        resolvePre = () => undefined;
        resolve(value);
      };
      const row = options.routes ? new RouteRow(options.routes, inventory.nodes.find((n) => n.name === node)?.overlayIp ?? '') : undefined;
      let output: FirstOutput | undefined = { sections: new Map(), routes: row ?? new Map() };
      let preIn = false;
      const stream = new SectionStream((section) => {
        if (!output) return;
        const ip = section.name.startsWith('route:') ? overlayIps.get(section.name.slice(6)) : undefined;
        if (options.packConfig && section.name === FACTS.configText.name) output.packed = pack(section);
        else if (ip !== undefined && row) {
          if (row.asks(ip)) row.set(parseRouteGet(ip, section));
        } else if (ip !== undefined) (output.routes as Map<string, RouteLookup>).set(ip, parseRouteGet(ip, section));
        // kept until the script ends: a copy of its own, not a slice that keeps its piece of the output
        else {
          const own = ownSection(section);
          output.sections.set(own.name, own);
        }
        if (!preIn && section.name === PRE_END && section.rc !== undefined) {
          preIn = true;
          if (options.onPre) {
            options.onPre(node, output.sections);
            output.sections.delete(FACTS.peers.name);
          }
          preDone({ sections: new Map(output.sections) });
        }
      });
      let ended: number | undefined;
      const whole = connection
        .run(firstScript(inventory, node, options), {
          timeoutMs: checkDeadlineMs(30_000),
          onStdout: (piece) => stream.write(piece),
          discardStdout: true,
          ...(options.signal ? { signal: options.signal } : {}),
        })
        .then(
          (result) => {
            ended = Date.now();
            stream.endWith(result.stdout);
            const read = output!;
            output = undefined;
            preDone({ sections: read.sections, result });
            const kept = result.stdout === '' ? result : { ...result, stdout: '' };
            return options.digest ? options.digest(node, kept, read) : kept;
          },
          (error: unknown) => {
            ended = Date.now();
            output = undefined;
            preDone(undefined);
            return error instanceof Error ? error : new Error(String(error));
          },
        );
      return [node, { pre, whole, endedAt: () => ended ?? Date.now() }] as const;
    }),
  );
}

/**
 * Why verify's first script on a node shows that its commands do not run as root, in the words of the transport's
 * root probe (../transport/ssh.ts probeRoot; ../engine/root-check.ts rootProblem), or undefined when its `uid`
 * section says 0. `stdout`: the pre part (or all) of its output, or its sections; `result`: the script's end, needed
 * only when it says something else (a sudo that refused ends before printing anything). verify connects without the
 * probe's own `id -u` round trip (issue 10) and asks this instead.
 */
export function rootFailure(
  node: string,
  target: string,
  sudo: boolean,
  stdout: string | Map<string, Section>,
  result: Pick<ExecResult, 'code' | 'stderr'>,
): string | undefined {
  const sections = typeof stdout === 'string' ? splitSections(stdout) : stdout;
  if (readFact(FACTS.uid, sections, { interface: '', listenPort: 0 }) === 0) return undefined;
  const full = { ...result, stdout: '', durationMs: 0 };
  const why = result.stderr.trim().split('\n')[0] ?? '';
  return (
    rootProblem(node, target, sudo, full) ??
    `${node} (${target}): cannot run commands as root (exit ${result.code}${why ? `: ${why}` : ''})`
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
 * Collects everything verify judges, in three scripts per node on its one connection (at most three channels open
 * at a time, well under OpenSSH's MaxSessions 10), every node at once:
 *   1. the first script (firstScript): the "pre" part (clock, live key, listen port, peers, UDP counters: the
 *      cold-start probe's counters before), then the checklist, in one script whose output is read as it arrives;
 *   2. the cold-start probe (./cold-start.ts), as soon as every node's pre part is in: each node sends its bursts
 *      and watches its own counters until the bursts addressed to it arrived (one round trip on a healthy mesh);
 *   3. the ping + path-MTU round, its channels opened while 2 runs and its scripts sent once 2 has ended (runProbes).
 * Why 1, 2 and 3 wait for each other: the bursts must not leave before every receiver has read its counters (the
 * pre part before 2, a barrier: a burst that arrived before the read leaves its receiver short, which costs the group
 * rounds); the pings' tunnel traffic lands in the same UDP counters and could hide a dropped burst (2 before 3). The
 * checklist needs neither: it sends no UDP, and the probes change nothing it reads but handshakes, which the
 * after-ping dump reads again anyway. So it runs on from the pre part, beside 2 and 3 on its own channel (issue 10:
 * beside the pings inside the ping script, under load it outlasted them and held the round's end; and the pre
 * script's channel is its channel, so the node opens no extra one). The first-contact pairs come from the pre part.
 * A node whose checklist did not come back (its first script could not run, or ended before the checklist) runs the
 * first script once more afterwards, awaited whole.
 * `proveRoot` (verify connects without the transport's root probe): the first script starts with the uid fact, and a
 * node where it does not run as root is a connection failure in the probe's words (rootFailure), left out of 2 and
 * 3 as a node that could not be connected is. Timings: each stage's own duration (they overlap) and collectMs, the
 * wall time of the whole.
 */
export async function collectVerify(
  inventory: Inventory,
  connections: Map<string, Connection>,
  failures: Map<string, Error>,
  options: CollectOptions = {},
): Promise<Collected> {
  const started = Date.now();
  if (options.ping === false) {
    const alone = await runChecklists(inventory, connections, options);
    return collected(inventory, alone.checklists, alone.unreachable, failures, undefined, {
      checklistMs: Date.now() - started,
      started,
    });
  }
  const uid = options.proveRoot !== undefined;
  const runOptions = { ...(options.firewall ? { firewall: true } : {}), uid, ...(options.signal ? { signal: options.signal } : {}) };
  // each node's checklist is read (and detached from its output) as soon as its first script ended, and the output
  // let go: held until after the probes, the outputs (~0.4 MB a node at 1,000 nodes: its wg0.conf, a route and a
  // peer line per peer) and the parsed slices of them were most of verify's heap (issue 10)
  const detach = detacher();
  const early = new Map<string, NodeChecklist>();
  // each node's peer dump is parsed once, by whichever comes first (its pre part awaited below, or its whole script
  // ended: the digest), and read by the cold-start probe's first contacts and the checklist alike (issue 10: it was
  // parsed for each, and once more after the pings, which is a new dump)
  const ctx = factContext(inventory);
  // CollectOptions.compact: the live peers and route lookups kept as numbers, in tables shared by the run
  const tables = options.compact ? { texts: new TextTable(), shared: sharedText() } : undefined;
  const ips = inventory.nodes.map((n) => n.overlayIp);
  const routeLookups = options.compact && new Set(ips).size === ips.length ? new RouteLookups(ips) : undefined;
  const preParsed = new Map<string, { facts: PreFacts; dump: ParsedWgDump; table?: LivePeerTable }>();
  const preOf = (node: string, sections: () => Map<string, Section>) => {
    let parsed = preParsed.get(node);
    if (!parsed) {
      parsed = detachPre(readPre(sections(), ctx), detach, tables);
      preParsed.set(node, parsed);
    }
    return parsed;
  };
  const first = startFirst(inventory, connections, {
    ...runOptions,
    ...(routeLookups ? { routes: routeLookups } : {}),
    // each pre part read as it arrives, and its dump's text let go then (verify's collection: CollectOptions.compact)
    ...(options.compact ? { onPre: (node: string, sections: Map<string, Section>) => void preOf(node, () => sections) } : {}),
    // the file's section deflated as it arrives, when it waits to be read (lazyConfig)
    ...(options.lazyConfig ? { packConfig: true } : {}),
    digest: (node, result, { sections, routes, packed }) => {
      const pre = preOf(node, () => sections);
      // lazyConfig: the file's section is kept apart, unread (confmeta, which comes before it, says it exists); it
      // arrived packed (deflated), and is read as text only to be parsed at once when confmeta did not come
      const lazy = options.lazyConfig && sections.has(FACTS.configMeta.name);
      if (packed && !lazy) sections.set(packed.name, unpack(packed));
      const conf = lazy ? (packed ?? pack(sections.get(FACTS.configText.name))) : undefined;
      if (lazy) sections.delete(FACTS.configText.name);
      // the peers kept as numbers: the checklist is made without them, and reads the pre part's table
      const dump = pre.table ? { peers: NO_PEERS, problems: pre.dump.problems } : pre.dump;
      const cl = checklistFrom(inventory, node, sections, options, dump, routes);
      if (!cl) return result;
      // its text goes: the parsed config is what verify judges (~150 bytes a peer, 150 MB at 1,000 nodes)
      const { configText: _text, ...parsed } = cl;
      const own = detach(parsed);
      if (conf && own.config) deferConfig(own, conf, readFact(FACTS.configMeta, sections, ctx).privateKeyLines, ctx);
      if (pre.table && own.wgAvailable) peersFrom(own, 'peers', pre.table);
      if (routes instanceof RouteRow) routesFrom(own, routes);
      early.set(node, own);
      // the pre facts' peers are the same, detached: the output goes now, not after the probes
      if (!pre.table && pre.facts.peers.length === own.peers.length) pre.facts.peers = own.peers;
      return result;
    },
  });
  const wholes = new Map([...first].map(([node, run]) => [node, { whole: run.whole, endedAt: run.endedAt }]));
  const unreachable = new Map<string, string>();
  const rootFailed = new Set<string>();
  // the pre parts (the cold-start probe's barrier), each node proving root first when asked
  const preFacts = new Map<string, PreFacts>();
  for (const [node, run] of first) {
    const pre = await run.pre;
    // a sudo that wants a password: the transport says so by throwing (../transport/ssh.ts), as its probe did
    const refused = pre === undefined && uid ? await run.whole : undefined;
    if (refused instanceof TransportError && refused.reason === 'sudo') {
      rootFailed.add(node);
      unreachable.set(node, refused.message);
    }
    if (pre === undefined) continue;
    const why = uid ? await notRoot(node, connections.get(node)!, pre, run, options.proveRoot!) : undefined;
    if (why !== undefined) {
      rootFailed.add(node);
      unreachable.set(node, why);
    } else preFacts.set(node, preOf(node, () => pre.sections).facts);
  }
  const preMs = Date.now() - started;
  // the pre parts are read: their outputs go (the runs keep only their whole scripts: wholes)
  first.clear();
  const reachable = new Map([...connections].filter(([node]) => !rootFailed.has(node)));
  const probed = await runProbes(inventory, reachable, preFacts, options, started, detach, tables);
  preFacts.clear();
  preParsed.clear();

  // the checklists, mostly in hand by now: each read from its first script's whole output (pre part included)
  const checklists = new Map<string, NodeChecklist>();
  const missing = new Map<string, Connection>();
  for (const [node, connection] of reachable) {
    await wholes.get(node)!.whole;
    const cl = early.get(node);
    if (cl) checklists.set(node, cl);
    else missing.set(node, connection);
  }
  early.clear();
  // ... else the first script once more, awaited whole (a broken connection makes the node unreachable, with the reason)
  await Promise.all(
    [...missing].map(async ([node, connection]) => {
      try {
        const result = await connection.run(firstScript(inventory, node, runOptions), {
          timeoutMs: checkDeadlineMs(30_000),
          ...(options.signal ? { signal: options.signal } : {}),
        });
        const why = uid ? rootFailure(node, connection.target, options.proveRoot!(node), result.stdout, result) : undefined;
        if (why !== undefined) unreachable.set(node, why);
        else
          checklists.set(
            node,
            parseChecklist(result.stdout, checklistParams(inventory, node, { ...options, withoutPre: true, beside: true })),
          );
      } catch (error) {
        unreachable.set(node, (error as Error)?.message ?? String(error));
      }
    }),
  );
  const checklistMs = Math.max(0, ...[...wholes.values()].map((run) => run.endedAt() - started));
  return collected(inventory, checklists, unreachable, failures, { ...probed, preMs }, { checklistMs, started }, rootFailed);
}

/**
 * The pre part's facts and peer dump (readPre's) detached from the output they were parsed from, the dump's peers
 * one array for both: the pre facts wait for every node's pre part (the cold-start probe's barrier) and then for the
 * probe, and their keys and endpoints, slices of the output, held each node's whole pre output until the probes had
 * ended (~0.11 MB a node at 1,000 nodes in bench:verify, every node's at once; issue 10).
 */
function detachPre(
  read: { facts: PreFacts; dump: ParsedWgDump },
  detach: <T>(value: T) => T,
  tables?: PeerTables,
): { facts: PreFacts; dump: ParsedWgDump; table?: LivePeerTable } {
  if (tables) {
    // the peers as numbers (CollectOptions.compact), read through getters; the checklist takes the same table
    const table = new LivePeerTable(read.dump.peers, tables.texts, tables.shared);
    const dump = peersFrom({ peers: NO_PEERS, problems: detach(read.dump.problems) }, 'peers', table);
    const facts = detach<PreFacts>({ ...read.facts, peers: NO_PEERS });
    if (read.facts.peers === read.dump.peers) peersFrom(facts, 'peers', table);
    return { facts, dump, table };
  }
  const peers = detach(read.dump.peers);
  const dump = { peers, problems: detach(read.dump.problems) };
  const facts = detach<PreFacts>({ ...read.facts, peers: [] });
  // the same position among the keys: only the value changes
  facts.peers = read.facts.peers === read.dump.peers ? peers : detach(read.facts.peers);
  return { facts, dump };
}

/**
 * `cl.routes` as an own, enumerable getter that reads `row` (a fresh array per read), in the property's place. Made
 * here, not in the digest: a closure there keeps the digest's whole scope (the node's sections) for the run.
 */
function routesFrom(cl: NodeChecklist, row: RouteRow): void {
  Object.defineProperty(cl, 'routes', { enumerable: true, configurable: true, get: () => row.lookups() });
}

/** A run's tables of texts for its LivePeerTables (CollectOptions.compact). */
interface PeerTables {
  texts: TextTable;
  shared: ReturnType<typeof sharedText>;
}

/** The place of a list kept elsewhere (a LivePeerTable, a RouteRow) until its getter is set: nothing to copy. */
const NO_PEERS: LivePeer[] = Object.freeze([]) as unknown as LivePeer[];

/**
 * A copier that makes a parsed value hold none of the output it was parsed from: every string a flat copy, one per
 * distinct text across all values it copies (a peer's key, endpoint and /32 are the same on every node that has it),
 * plain objects and arrays copied, anything else kept as it is. A string cut from a longer one is a slice that keeps
 * the whole longer one alive in V8 (from 13 characters on): verify's heap after its collection at 250 nodes held
 * 47.5 MB of whole outputs for the keys, endpoints and /32s parsed from them (bench:verify, heap snapshot).
 */
function detacher(): <T>(value: T) => T {
  const texts = new Map<string, string>();
  // short lists of strings (a peer's AllowedIPs: the same on every node that has the peer) and empty lists, one
  // frozen array per distinct content: 4 arrays per pair were a third of the objects verify held at 200 nodes
  const lists = new Map<string, readonly string[]>();
  const EMPTY: readonly never[] = Object.freeze([]);
  // what a call returned is returned as it is when given again (the pre part's peers, detached as soon as parsed, are
  // the checklist's: copied once, not twice)
  const done = new WeakSet<object>();
  const text = (s: string): string => {
    const known = texts.get(s);
    if (known !== undefined) return known;
    // shorter strings are never slices: kept as they are
    const own = s.length < 13 ? s : Buffer.from(s, 'utf8').toString('utf8');
    texts.set(own, own);
    return own;
  };
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return text(v);
    if (v === null || typeof v !== 'object') return v;
    if (done.has(v)) return v;
    if (Array.isArray(v)) {
      const n = v.length;
      if (n === 0) return EMPTY;
      let strings = n <= 4;
      for (let i = 0; strings && i < n; i++) strings = typeof v[i] === 'string';
      if (strings) {
        // a key that is the list's own text would be a slice of the output, kept by this map (text() copies it)
        const key = n === 1 ? text(v[0] as string) : v.join('\u0000');
        let shared = lists.get(key);
        if (!shared) {
          shared = Object.freeze(v.map(text));
          lists.set(key, shared);
        }
        return shared;
      }
      const out = new Array<unknown>(n);
      for (let i = 0; i < n; i++) out[i] = walk(v[i]);
      return out;
    }
    const proto = Object.getPrototypeOf(v);
    if (proto !== Object.prototype && proto !== null) return v;
    // own keys only: a plain object's prototype has no enumerable one
    const out: Record<string, unknown> = {};
    for (const k in v) out[k] = walk((v as Record<string, unknown>)[k]);
    return out;
  };
  return <T>(value: T) => {
    if (value !== null && typeof value === 'object' && done.has(value)) return value;
    const own = walk(value);
    if (own !== null && typeof own === 'object' && !Object.isFrozen(own)) done.add(own);
    return own as T;
  };
}

/** A section kept deflated (its body's UTF-8 bytes), outside V8's heap, until read (unpack). */
interface PackedSection {
  name: string;
  rc?: number;
  deflated: Buffer;
}

/**
 * `section` deflated (undefined for none). Level 1 with a 4 kB window: a wg-quick file of 1,000 peers, 158 kB, is
 * 45 kB so, in ~1.5 ms of CPU (its peers' keys are most of what is left); levels 3-6 made it no smaller.
 */
function pack(section: Section | undefined): PackedSection | undefined {
  if (!section) return undefined;
  const deflated = deflateRawSync(Buffer.from(section.body, 'utf8'), { level: 1, windowBits: 12 });
  return { name: section.name, ...(section.rc !== undefined ? { rc: section.rc } : {}), deflated };
}

/** The section `pack` packed. */
function unpack(packed: PackedSection): Section {
  const body = inflateRawSync(packed.deflated, { windowBits: 12 }).toString('utf8');
  return { name: packed.name, body, ...(packed.rc !== undefined ? { rc: packed.rc } : {}) };
}

/**
 * Makes `cl.config` the wg-quick file of section `conf` parsed when first read, as parseChecklistSections parses it
 * (FACTS.configText: secret lines dropped and key-shaped values redacted on our side too, then parseWgQuickConfig; a
 * PrivateKey line counted by confmeta marks the parsed interface), and its body let go then. Until then the body is
 * held deflated (pack), outside V8's heap (a slice would keep the node's whole output; a string copy is ~130 bytes a
 * peer of the heap that V8 grows by a multiple of, ~130 MB at 1,000 nodes; its bytes ~150 MB of RSS: issue 10).
 * Verify judges most files by their sha256 alone (./verify.ts nodeChecks), so on a converged mesh no file is
 * filtered or parsed (issue 10: ~18 ms a node of CPU at 1,000 nodes, and the parsed peers' ~180 bytes a pair).
 */
function deferConfig(cl: NodeChecklist, conf: PackedSection, privateKeyLines: number, ctx: FactContext): void {
  let pending: PackedSection | undefined = conf;
  const name = conf.name;
  let parsed: NodeChecklist['config'];
  Object.defineProperty(cl, 'config', {
    enumerable: true,
    configurable: true,
    get() {
      if (pending) {
        const section = unpack(pending);
        const text = readFact(FACTS.configText, new Map([[name, section]]), ctx) ?? '';
        pending = undefined;
        parsed = parseWgQuickConfig(text);
        if (parsed.interface && privateKeyLines > 0) parsed.interface.hasPrivateKey = true;
      }
      return parsed;
    },
  });
}

/** Why a node's first script did not run as root (rootFailure), once its pre part is in. */
async function notRoot(
  node: string,
  connection: Connection,
  pre: { sections: Map<string, Section>; result?: ExecResult },
  run: FirstRun,
  sudo: (node: string) => boolean,
): Promise<string | undefined> {
  const inHand = pre.result ?? { code: 0, stderr: '' };
  if (rootFailure(node, connection.target, sudo(node), pre.sections, inHand) === undefined) return undefined;
  // not root: the script's exit status and stderr complete the words
  const whole = pre.result ?? (await run.whole);
  if (whole instanceof Error) return whole.message;
  return rootFailure(node, connection.target, sudo(node), pre.sections, whole);
}

/**
 * A node's checklist from its first script's output, cut into sections (`dump`: its peer dump as the pre part's
 * reading parsed it; `routes`: its route lookups, parsed as they arrived: FirstOutput); undefined when no section of
 * the checklist came back.
 */
function checklistFrom(
  inventory: Inventory,
  node: string,
  sections: Map<string, Section>,
  options: CollectOptions,
  dump: ParsedWgDump,
  routes?: ReadonlyMap<string, RouteLookup> | RouteRow,
): NodeChecklist | undefined {
  const params = checklistParams(inventory, node, { ...options, withoutPre: true, beside: true });
  const came = (name: string) => sections.has(name) || (name.startsWith('route:') && !!routes?.has(name.slice(6)));
  if (!checklistSectionNames(params).some(came)) return undefined;
  return parseChecklistSections(sections, params, dump, routes);
}

/** The probes' part of collectVerify's answer. */
interface Probed {
  coldStart: ColdStartResult & { passed?: Map<string, number> };
  matrix: Matrix;
  afterPing: Map<string, { now?: number; peers: LivePeer[] }>;
  pingMs: number;
  preMs: number;
  firstContactMs?: number;
}

/** collectVerify's answer: the design from the keys learnt, the connection failures added to `unreachable`. */
function collected(
  inventory: Inventory,
  checklists: Map<string, NodeChecklist>,
  unreachable: Map<string, string>,
  failures: Map<string, Error>,
  probed: Probed | undefined,
  times: { checklistMs: number; started: number },
  rootFailed: Set<string> = new Set(),
): Collected {
  const ordered = new Map<string, NodeChecklist>();
  for (const node of inventory.nodes) {
    const cl = checklists.get(node.name);
    if (cl) ordered.set(node.name, cl);
  }
  const reasons = new Map<string, string>();
  for (const node of inventory.nodes) {
    const why = failures.get(node.name)?.message ?? unreachable.get(node.name);
    if (why !== undefined) reasons.set(node.name, why);
  }
  const { keys, unknown } = publicKeysFrom(inventory, ordered);
  const desired = new Map<string, DesiredNodeConfig>(desiredMesh(inventory, keys).map((d) => [d.node, d]));
  return {
    inventory,
    desired,
    unknownKeys: unknown,
    checklists: ordered,
    unreachable: reasons,
    ...(probed ? { matrix: probed.matrix } : {}),
    afterPing: probed?.afterPing ?? new Map(),
    ...(probed ? { coldStart: probed.coldStart } : {}),
    publicKeys: keys,
    ...(rootFailed.size ? { rootFailed } : {}),
    timings: {
      checklistMs: times.checklistMs,
      pingMs: probed?.pingMs ?? 0,
      ...(probed ? { preMs: probed.preMs, coldStartMs: probed.coldStart.ms, coldStartRoundTrips: probed.coldStart.roundTrips } : {}),
      ...(probed?.firstContactMs !== undefined ? { firstContactMs: probed.firstContactMs } : {}),
      collectMs: Date.now() - times.started,
    },
  };
}

/**
 * The cold-start probe, then the ping + path-MTU round (see collectVerify). `pre`: each node's pre part, read;
 * `preStarted`: when the pre parts were started (Date.now()).
 * The ping round's channels are opened while the probe runs and its scripts sent only once the probe has ended
 * (PingMatrixOptions.sendWhen): the pings still follow every burst and every read of the counters, but the round no
 * longer waits for its channels, login shells and sudo to start after the probe (issue 10: 0.2-0.4 s per node at 16
 * lab nodes). A probe that outlasted PING_AHEAD_WAIT_S (group rounds) lets those scripts end unrun, and the round runs
 * anew.
 */
async function runProbes(
  inventory: Inventory,
  connections: Map<string, Connection>,
  pre: Map<string, PreFacts>,
  options: CollectOptions,
  preStarted: number,
  detach: <T>(value: T) => T,
  tables?: PeerTables,
): Promise<Omit<Probed, 'preMs'>> {
  const initial = new Map<string, UdpCounters>();
  for (const [name, facts] of pre) if (facts.udpCounters) initial.set(name, facts.udpCounters);
  const firstContact = pairsWithoutSession(inventory, pre, liveKeys(inventory, pre));
  const pingOptions = {
    ...(firstContact.length ? { firstContact } : {}),
    ...(options.pathMtu !== false ? { mtu: inventory.mesh.mtu } : {}),
    ...(options.deadlineSeconds !== undefined ? { deadlineSeconds: options.deadlineSeconds } : {}),
    // the same facts as the checklist's (and up's), read again after the pings: the peers' dump and the clock from its
    // awk (peersWithClock: no `date`, issue 10)
    after: peersWithClock(inventory.mesh.interface),
    ...(options.signal ? { signal: options.signal } : {}),
    // the matrix's rows a slot per target (CollectOptions.compact)
    ...(options.compact ? { compactRows: true } : {}),
  };
  // each node's after-ping clock and peers read (and detached) as its output arrives: PingRound.after would hold
  // every node's sections until the last answered, and a section's body is a slice that pins its whole output (the
  // peer dump's: the whole ping output, 0.49 MB a node at 1,000 nodes in bench:verify, all held at the round's end;
  // issue 10)
  let afterPing = new Map<string, { now?: number; peers: LivePeer[] }>();
  const ctx = factContext(inventory);
  const onAfter: PingMatrixOptions['onAfter'] = (node, { after }) => {
    const now = readFact(FACTS.now, after, ctx);
    const peers = readFact(FACTS.peers, after, ctx).peers;
    const facts = { ...(now !== undefined ? { now } : {}), peers: tables ? NO_PEERS : detach(peers) };
    afterPing.set(node, tables ? peersFrom(facts, 'peers', new LivePeerTable(peers, tables.texts, tables.shared)) : facts);
  };
  let go: (send: boolean) => void = () => undefined;
  const gate = new Promise<boolean>((resolve) => (go = resolve));
  options.signal?.addEventListener('abort', () => go(false), { once: true });
  // the probe's scripts first: the probe is what the round waits for
  // counted as soon as it ends (countPasses): the probe's own answer (every direction, one object or two a pair) is
  // then held by nothing, where `probing` held it through the whole ping round (issue 10: ~100 MB at 1,000 nodes, seen
  // in a heap snapshot of the round at 250 nodes)
  const probing = runColdStart(inventory, connections, { initial, ...(options.signal ? { signal: options.signal } : {}) }).then((p) =>
    options.countPasses ? countedDirections(p) : p,
  );
  const aheadAt = Date.now();
  const ahead = runPingRound(connections, pingTargets(inventory), { ...pingOptions, onAfter, sendWhen: gate });
  let probe: ColdStartResult & { passed?: Map<string, number> };
  try {
    probe = await probing;
  } catch (error) {
    go(false);
    await ahead;
    throw error;
  }
  // its duration counts the pre part too: that is the probe's first read
  const coldStart = { ...probe, ms: Date.now() - preStarted };

  const pingStarted = Date.now();
  // a margin below PING_AHEAD_WAIT_S: the scripts' deadlines grew by that much from when their channels opened
  const inTime = pingStarted - aheadAt < (PING_AHEAD_WAIT_S - 5) * 1000;
  go(inTime);
  const round = inTime
    ? await ahead
    : await ahead.then(() => {
        // the round ran anew: only its own answers count
        afterPing = new Map();
        return runPingRound(connections, pingTargets(inventory), { ...pingOptions, onAfter });
      });
  return {
    coldStart,
    matrix: round.matrix,
    afterPing,
    pingMs: Date.now() - pingStarted,
    ...(round.firstContactMs !== undefined ? { firstContactMs: round.firstContactMs } : {}),
  };
}

/**
 * The probe's result with its passing directions (directionPasses) counted per sender in `passed` (in the order of
 * their first pass), the others kept in their order (CollectOptions.countPasses).
 */
function countedDirections(probe: ColdStartResult): ColdStartResult & { passed: Map<string, number> } {
  const passed = new Map<string, number>();
  const others: DirectionResult[] = [];
  for (const d of probe.directions) {
    if (directionPasses(d)) passed.set(d.from, (passed.get(d.from) ?? 0) + 1);
    else others.push(d);
  }
  return { ...probe, directions: others, passed };
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
