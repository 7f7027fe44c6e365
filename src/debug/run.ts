/**
 * `meshctl debug`: gathers two-ended evidence for each failing pair (or the one named), optionally captures packets
 * at both ends while it provokes traffic from the sender, and classifies each pair with ./classify.ts.
 * It never changes the mesh: the only things it creates on a node are its capture files, which it deletes.
 */
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { assertPrivateParent, ownPrivateDir, writePrivateFile } from '../local/files.js';
import { join } from 'node:path';
import type { Inventory, Node } from '../inventory/types.js';
import { siteOf } from '../inventory/types.js';
import type { Connection } from '../transport/types.js';
import { endpointFor } from '../topology/endpoints.js';
import { MeshctlError } from '../errors.js';
import { safeText } from '../ui/safe-text.js';
import { collectVerify, knownPublicKeys, type Collected } from '../checks/collect.js';
import { redactDeep } from '../remote/redact.js';
import { evaluateVerify, withStateKeys, type Check } from '../checks/verify.js';
import { desiredMesh } from '../topology/desired.js';
import type { Matrix } from '../checks/ping-matrix.js';
import {
  cleanupCaptureScript,
  countPackets,
  markerWasSent,
  parseStartCapture,
  parseStopCapture,
  provokeScript,
  startCaptureScript,
  stopCaptureScript,
  type CaptureCounts,
  type CaptureHandle,
} from './capture.js';
import { classifyPair, type Diagnosis, type PairEvidence, type SideEvidence } from './classify.js';
import { pathBetween, planPaths, type MeshPaths } from '../topology/paths.js';
import { splitSections } from '../checks/probes.js';
import { readInventoryFile } from '../inventory/load.js';
import { movedFromChecklists, type MovedAddress } from '../topology/moved-address.js';

export interface DebugOptions {
  pair?: [string, string];
  node?: string;
  tcpdump: boolean;
  /** capture / provocation length */
  seconds: number;
  signal?: AbortSignal;
  /** where the bundle folder goes (default: cwd) */
  outDir?: string;
  /** told what is going on (stderr lines) */
  progress?: (line: string) => void;
  /**
   * the public keys of the local state (`<inventory>.state.json`, ../state/record.ts statePublicKeys), by node; read
   * only when an unreached node's key is unknown, so its peers' entries are judged with the key the last `up` saw
   * (as verify does: ../checks/verify.ts withStateKeys)
   */
  stateKeys?: () => ReadonlyMap<string, string>;
}

export interface PairCapture {
  sender: string;
  receiver: string;
  marker: string;
  markerSent: boolean;
  counts: Record<string, CaptureCounts>;
  /** captured packets as tcpdump printed them, per node (first lines) */
  packets: Record<string, string[]>;
  /** local pcap files, relative to the bundle */
  files: string[];
  errors: Record<string, string>;
  /** capture processes still alive after the stop (should be empty) */
  leftovers: Record<string, number[]>;
}

export interface DebugReport {
  version: 1;
  inventory: string;
  startedAt: string;
  /** every cause found on each pair examined, in runbook order (several per pair; one 'healthy' when none) */
  diagnoses: Diagnosis[];
  captures: PairCapture[];
  /** the verify checks the pairs were chosen from */
  failingChecks: Check[];
  matrix: Matrix | null;
  /** local bundle folder (with --tcpdump) */
  bundle?: string;
  /**
   * the pairs asked about (or found failing) that are relayed: each examined as its legs (relayLegs), so a cause is
   * headed by a leg; this says which pair it stands for, through which relay and why (Q4 item 7c: the report never
   * said that b-1 <-> c-1 goes through p-1)
   */
  relayed?: RelayedPair[];
}

/** A relayed pair of a debug run: its ends, the relay, the plan's reason (PairPath.why without "relayed via R"), and the legs examined. */
export interface RelayedPair {
  pair: [string, string];
  via: string;
  why: string;
  legs: Array<[string, string]>;
}

/**
 * Of `pairs`, those `paths` relays, with their relay, reason and legs (relayLegs), in order. A pair relay: auto
 * moved to a relay after a failed handshake reads as such: the plan's reason says so (the local state's
 * fallbackRelays are in the inventory debug plans from).
 */
export function relayedPairsOf(inventory: Inventory, pairs: Array<[string, string]>, paths: MeshPaths): RelayedPair[] {
  return pairs.flatMap(([a, b]) => {
    const path = pathBetween(paths, a, b);
    if (path?.kind !== 'relayed') return [];
    // the reason without its own ": relayed via R" (the line that shows it names the relay)
    const why = path.why.replace(/: relayed via \S+$/, '');
    return [{ pair: [a, b] as [string, string], via: path.via, why, legs: relayLegs(inventory, [[a, b]], paths) }];
  });
}

/**
 * The relayed pairs whose relay fails verify's relay check (forwarding off on the mesh interface, its rule missing):
 * one diagnosis each, at the relay. Each leg can be healthy while the relay drops every packet of the pair (Q7:
 * forwarding off on p-1, every b-1 -> c-1 ping lost, and debug said both legs were HEALTHY). `checks`: verify's.
 */
export function relayDiagnoses(relayed: readonly RelayedPair[], checks: readonly Check[]): Diagnosis[] {
  return relayed.flatMap((r) =>
    checks
      .filter((c) => c.node === r.via && c.id === 'relay' && c.status === 'fail')
      .map((c) => ({
        sender: r.pair[0],
        receiver: r.pair[1],
        cause: 'relay-not-forwarding' as const,
        node: r.via,
        summary: `${r.via} ${c.message}`,
        explanation: `${r.pair.join(' and ')} reach each other only through ${r.via}, which must forward between its peers on the mesh interface: each leg may shake hands and answer while the pair's own packets are dropped at the relay`,
        fix: `meshctl up sets the relay's forwarding and its rule back on ${r.via}'s running interface (the relay's PostUp lines, no restart); by hand, the relay's evidence below says what is missing`,
        evidence: c.evidence,
      })),
  );
}

/** verify's per-pair checks whose failure makes a pair worth debugging (cold-start: finding 20, a one-way pair) */
const PAIR_IDS = new Set(['ping', 'path-mtu', 'handshake', 'peers', 'allowed-ips', 'endpoint', 'route', 'cold-start']);

/**
 * A relayed pair (../topology/paths.ts) has no tunnel of its own to examine: its two legs, each end with the relay,
 * are examined instead (once each, in order). A leg that is itself relayed (a design the planner no longer makes, but
 * a state written by an older meshctl can hold it: Q4 saw b-2 <-> c-1 via p-2 while b-2 <-> p-2 went via p-1, and
 * debug crashed on the leg b-2/p-2, which has no designed peer) is expanded the same way, down to direct tunnels;
 * a relay already on the way is not expanded again (no loop). Other pairs stay as they are. `paths`: the plan to
 * follow (default: the inventory's).
 */
export function relayLegs(
  inventory: Inventory,
  pairs: Array<[string, string]>,
  paths: MeshPaths = planPaths(inventory),
): Array<[string, string]> {
  const seen = new Set<string>();
  const out: Array<[string, string]> = [];
  const expand = (a: string, b: string, through: ReadonlySet<string>): Array<[string, string]> => {
    const path = pathBetween(paths, a, b);
    if (path?.kind !== 'relayed' || through.has(path.via)) return [[a, b]];
    const next = new Set([...through, path.via]);
    return [...expand(a, path.via, next), ...expand(path.via, b, next)];
  };
  for (const [a, b] of pairs) {
    for (const [x, y] of expand(a, b, new Set([a, b]))) {
      const key = [x, y].sort().join('\u0000');
      if (!seen.has(key)) out.push([x, y]);
      seen.add(key);
    }
  }
  return out;
}

/** Unordered pairs with a failing check between them (or a failing node-level check on one of them). */
export function failingPairs(inventory: Inventory, checks: Check[], onlyNode?: string): Array<[string, string]> {
  const names = inventory.nodes.map((n) => n.name);
  const key = (a: string, b: string) => [a, b].sort().join('\u0000');
  const bad = new Set<string>();
  const badNodes = new Set(checks.filter((c) => c.status === 'fail' && c.peer === undefined && c.id !== 'config-drift').map((c) => c.node));
  for (const c of checks) if (c.status === 'fail' && c.peer && PAIR_IDS.has(c.id) && names.includes(c.peer)) bad.add(key(c.node, c.peer));
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < names.length; i++)
    for (let j = i + 1; j < names.length; j++) {
      const a = names[i]!;
      const b = names[j]!;
      if (onlyNode && a !== onlyNode && b !== onlyNode) continue;
      if (bad.has(key(a, b)) || badNodes.has(a) || badNodes.has(b)) pairs.push([a, b]);
    }
  return pairs;
}

/**
 * Who sends: the side that dials the other through a NAT port-forward (that exercises the forward), else a side
 * that can dial the other at all, else the order given.
 */
export function chooseSender(inventory: Inventory, a: Node, b: Node, keepOrder = false): [Node, Node] {
  const dials = (x: Node, y: Node) => endpointFor(inventory, x, y) !== undefined;
  const viaForward = (x: Node, y: Node) => {
    const site = siteOf(inventory, y);
    return site.kind === 'nat' && x.site !== y.site && dials(x, y);
  };
  if (keepOrder) return dials(a, b) || !dials(b, a) ? [a, b] : [b, a];
  if (viaForward(a, b)) return [a, b];
  if (viaForward(b, a)) return [b, a];
  return dials(a, b) || !dials(b, a) ? [a, b] : [b, a];
}

/** movedOf's answer per collection (every pair of one debug run reads the same mesh). */
const movedPerCollection = new WeakMap<Collected, MovedAddress[]>();

/**
 * The NAT sites the whole mesh's live endpoints see at another public address than nat.publicIp (Q4 item 3:
 * ../topology/moved-address.ts), from every reached node's checklist: its peers, clock and parsed wg-quick file.
 */
export function movedOf(collected: Collected): MovedAddress[] {
  const cached = movedPerCollection.get(collected);
  if (cached) return cached;
  const moved = movedFromChecklists(collected.inventory, collected.checklists);
  movedPerCollection.set(collected, moved);
  return moved;
}

export function pairEvidence(collected: Collected, sender: string, receiver: string, extraSides: string[] = []): PairEvidence {
  const sides: Record<string, SideEvidence> = {};
  for (const name of [sender, receiver, ...extraSides]) {
    const cl = collected.checklists.get(name);
    const after = collected.afterPing?.get(name);
    sides[name] = {
      node: name,
      reached: !!cl && !collected.unreachable.has(name),
      ...(collected.unreachable.has(name) ? { error: collected.unreachable.get(name)! } : {}),
      ...(cl ? { checklist: cl } : {}),
      ...(after ? { peersAfter: after.peers, ...(after.now !== undefined ? { now: after.now } : {}) } : {}),
    };
  }
  const m = collected.matrix;
  const coldStart = collected.coldStart?.directions.filter(
    (d) => (d.from === sender && d.to === receiver) || (d.from === receiver && d.to === sender),
  );
  const moved = movedOf(collected);
  return {
    inventory: collected.inventory,
    desired: collected.desired,
    ...(collected.unknownKeys?.size ? { unknownKeys: collected.unknownKeys } : {}),
    sender,
    receiver,
    sides,
    ...(moved.length ? { moved } : {}),
    ...(m?.cells[sender]?.[receiver] ? { forward: m.cells[sender]![receiver]! } : {}),
    ...(m?.cells[receiver]?.[sender] ? { backward: m.cells[receiver]![sender]! } : {}),
    ...(m ? { matrix: m } : {}),
    ...(coldStart?.length ? { coldStart } : {}),
    ...(collected.coldStart ? { coldStartRun: { roundTrips: collected.coldStart.roundTrips, ms: collected.coldStart.ms } } : {}),
  };
}

async function capturePair(
  inventory: Inventory,
  connections: Map<string, Connection>,
  sender: Node,
  receiver: Node,
  options: DebugOptions,
  bundle: string,
): Promise<PairCapture> {
  const rSite = siteOf(inventory, receiver);
  const sSite = siteOf(inventory, sender);
  const others =
    rSite.kind === 'public'
      ? []
      : inventory.nodes.filter((n) => n.site === receiver.site && n.name !== receiver.name && n.name !== sender.name);
  const capNodes = [sender, receiver, ...others].filter((n) => connections.has(n.name));
  const marker = `meshctl-debug-${randomBytes(3).toString('hex')}`;
  const result: PairCapture = {
    sender: sender.name,
    receiver: receiver.name,
    marker,
    markerSent: false,
    counts: {},
    packets: {},
    files: [],
    errors: {},
    leftovers: {},
  };
  const handles = new Map<string, CaptureHandle>();
  const stopped = new Set<string>();
  const signalOpt = options.signal ? { signal: options.signal } : {};
  try {
    await Promise.all(
      capNodes.map(async (n) => {
        const r = await connections
          .get(n.name)!
          .run(startCaptureScript(n.listenPort, options.seconds), { timeoutMs: 20_000, ...signalOpt });
        const parsed = parseStartCapture(n.name, r.stdout);
        if ('pid' in parsed) handles.set(n.name, parsed);
        else {
          if (parsed.handle) handles.set(n.name, parsed.handle);
          result.errors[n.name] = parsed.error;
        }
      }),
    );
    options.progress?.(`capturing on ${[...handles.keys()].join(', ')}; ${sender.name} sends to ${receiver.name} for ${options.seconds}s`);
    const endpoint = endpointFor(inventory, sender, receiver);
    const provoke = await connections.get(sender.name)!.run(
      provokeScript({
        overlayIp: receiver.overlayIp,
        ...(endpoint ? { endpoint } : {}),
        marker,
        seconds: options.seconds,
        mtu: inventory.mesh.mtu,
      }),
      { timeoutMs: (options.seconds + 20) * 1000, ...signalOpt },
    );
    result.markerSent = markerWasSent(splitSections(provoke.stdout).get('marker')?.body ?? '');
    // the pcaps hold the overlay's plaintext: the bundle is the operator's alone
    ownPrivateDir(bundle);
    await Promise.all(
      [...handles.values()].map(async (h) => {
        // no abort signal here: stopping and deleting must happen even after Ctrl-C
        const r = await connections.get(h.node)!.run(stopCaptureScript(h), { timeoutMs: 60_000 });
        const stoppedCapture = parseStopCapture(r.stdout);
        if (stoppedCapture.complete) stopped.add(h.node);
        result.packets[h.node] = stoppedCapture.packets.slice(0, 200);
        result.leftovers[h.node] = stoppedCapture.leftovers;
        const senderAddresses = [sender.address, ...(sSite.kind === 'nat' && sSite.publicIp ? [sSite.publicIp] : [])];
        const receiverAddresses = [receiver.address, ...(rSite.kind === 'nat' && rSite.publicIp ? [rSite.publicIp] : [])];
        result.counts[h.node] = countPackets(stoppedCapture.packets, {
          senderAddresses,
          receiverAddresses,
          senderOverlay: sender.overlayIp,
          receiverOverlay: receiver.overlayIp,
          markerLength: marker.length,
          iface: inventory.mesh.interface,
        });
        if (stoppedCapture.pcap) {
          const file = `${h.node}--${sender.name}-to-${receiver.name}.pcap`;
          await writePrivateFile(join(bundle, file), stoppedCapture.pcap);
          result.files.push(file);
        }
      }),
    );
  } finally {
    // always: kill and delete whatever was not stopped cleanly (also after Ctrl-C or a failed step)
    await Promise.allSettled(
      [...handles.values()]
        .filter((h) => !stopped.has(h.node))
        .map((h) => connections.get(h.node)!.run(cleanupCaptureScript(h), { timeoutMs: 15_000 })),
    );
  }
  return result;
}

/**
 * The inventory file's text, against which suggested inventory changes are validated (./inventory-fix.ts);
 * undefined when it can no longer be read (then no inventory change is suggested).
 */
function inventoryTextOf(inventory: Inventory): string | undefined {
  try {
    return readInventoryFile(inventory.source);
  } catch {
    return undefined;
  }
}

export async function runDebug(
  inventory: Inventory,
  connections: Map<string, Connection>,
  failures: Map<string, Error>,
  options: DebugOptions,
): Promise<DebugReport> {
  const startedAt = new Date();
  const names = new Set(inventory.nodes.map((n) => n.name));
  for (const n of [...(options.pair ?? []), ...(options.node ? [options.node] : [])]) {
    if (!names.has(n)) throw new MeshctlError(`no node named ${n} in ${inventory.source}`);
  }
  // where the bundle will go, judged before any capture runs (the pcaps hold the overlay's plaintext)
  if (options.tcpdump && existsSync(options.outDir ?? process.cwd())) assertPrivateParent(options.outDir ?? process.cwd());
  options.progress?.('gathering facts and pinging all pairs');
  const gathered = await collectVerify(inventory, connections, failures, {
    firewall: true,
    ...(options.signal ? { signal: options.signal } : {}),
  });
  const collected = withStateKeys(gathered, options.stateKeys, desiredMesh);
  const checks = evaluateVerify(collected);
  const asked = options.pair ? [options.pair] : failingPairs(inventory, checks, options.node);
  const paths = planPaths(inventory);
  const pairs = relayLegs(inventory, asked, paths);
  const relayed = relayedPairsOf(inventory, asked, paths);
  const stamp = startedAt
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  const bundle = join(options.outDir ?? process.cwd(), `meshctl-debug-${stamp}`);
  const node = (name: string) => inventory.nodes.find((n) => n.name === name)!;

  const inventoryText = inventoryTextOf(inventory);
  const diagnoses: Diagnosis[] = [];
  const captures: PairCapture[] = [];
  for (const [a, b] of pairs) {
    if (options.signal?.aborted) break;
    const [sender, receiver] = chooseSender(inventory, node(a), node(b), !!options.pair);
    let capture: PairCapture | undefined;
    const rSite = siteOf(inventory, receiver);
    const extra =
      rSite.kind === 'public'
        ? []
        : inventory.nodes.filter((n) => n.site === receiver.site && n.name !== receiver.name && n.name !== sender.name).map((n) => n.name);
    const bothReached =
      connections.has(sender.name) &&
      connections.has(receiver.name) &&
      !collected.unreachable.has(sender.name) &&
      !collected.unreachable.has(receiver.name);
    if (options.tcpdump && bothReached) {
      capture = await capturePair(inventory, connections, sender, receiver, options, bundle);
      captures.push(capture);
    }
    const evidence = pairEvidence(collected, sender.name, receiver.name, extra);
    if (capture) evidence.capture = { counts: capture.counts, markerSent: capture.markerSent, errors: capture.errors };
    if (inventoryText !== undefined) evidence.inventoryText = inventoryText;
    diagnoses.push(...classifyPair(evidence));
  }
  diagnoses.push(...relayDiagnoses(relayed, checks));

  const report: DebugReport = {
    version: 1,
    inventory: inventory.source,
    startedAt: startedAt.toISOString(),
    diagnoses,
    captures,
    failingChecks: checks.filter((c) => c.status === 'fail'),
    matrix: collected.matrix ?? null,
    ...(options.tcpdump ? { bundle } : {}),
    ...(relayed.length ? { relayed } : {}),
  };
  // node content in evidence, checks and packet lines: every key-shaped value but the mesh's public keys is redacted
  return redactDeep(report, knownPublicKeys(collected));
}

export function renderDebugReport(
  report: DebugReport,
  paint: { bold: (s: string) => string; red: (s: string) => string; green: (s: string) => string; dim: (s: string) => string },
): string {
  const lines: string[] = [];
  if (report.diagnoses.length === 0) lines.push(paint.green('No failing pair: nothing to debug.'));
  // a relayed pair is examined as its legs: said first, and each leg's cause names the pair it stands for
  const legOf = new Map<string, RelayedPair>();
  for (const r of report.relayed ?? []) {
    lines.push(
      `${safeText(r.pair.join(' <-> '))} is relayed via ${safeText(r.via)} (${safeText(r.why)}): examined as its leg${r.legs.length === 1 ? '' : 's'} ${r.legs.map((l) => safeText(l.join(' <-> '))).join(' and ')}`,
    );
    for (const leg of r.legs) if (!legOf.has([...leg].sort().join(' '))) legOf.set([...leg].sort().join(' '), r);
  }
  if (report.relayed?.length) lines.push('');
  for (const shown of report.diagnoses) {
    // summaries and evidence quote node output: escaped before our colours are added (../ui/safe-text.ts)
    const dgn = {
      ...shown,
      sender: safeText(shown.sender),
      receiver: safeText(shown.receiver),
      summary: safeText(shown.summary),
      explanation: safeText(shown.explanation),
      fix: safeText(shown.fix),
      evidence: shown.evidence.map(safeText),
      ...(shown.node !== undefined ? { node: safeText(shown.node) } : {}),
    };
    const tone = dgn.cause === 'healthy' ? paint.green : paint.red;
    const ofPair = report.diagnoses.filter((x) => x.sender === shown.sender && x.receiver === shown.receiver);
    const count = ofPair.length > 1 ? ` (cause ${ofPair.indexOf(shown) + 1} of ${ofPair.length})` : '';
    const leg = legOf.get([shown.sender, shown.receiver].sort().join(' '));
    const ofRelayed = leg ? ` (leg of ${safeText(leg.pair.join(' <-> '))} via ${safeText(leg.via)})` : '';
    lines.push(
      `${paint.bold(`${dgn.sender} -> ${dgn.receiver}`)}${ofRelayed}: ${tone(dgn.cause.toUpperCase())}${dgn.node ? ` (at ${dgn.node})` : ''}${count}`,
    );
    lines.push(`  ${dgn.summary}`);
    lines.push(`  why: ${dgn.explanation}`);
    lines.push(`  fix: ${dgn.fix}`);
    for (const e of dgn.evidence) lines.push(paint.dim(`    | ${e}`));
    const cap = report.captures.find((c) => c.sender === shown.sender && c.receiver === shown.receiver);
    // the capture counts once per pair, after its last cause
    if (cap && ofPair[ofPair.length - 1] === shown) {
      for (const [n, c] of Object.entries(cap.counts)) {
        // finding 10: on the sender itself the "from SENDER" counters (datagrams that came in from it) are always 0,
        // which read as if it sent nothing: its datagrams are counted where they arrive; here what came back is shown
        const line =
          n === shown.sender
            ? `    | captured on ${safeText(n)} (the sender: its own datagrams are counted where they arrive): ${c.total} packets; from ${dgn.receiver}'s side: ${c.responsesFromReceiver} handshake responses; ICMP on wg0 ${c.icmpRepliesIn} replies in`
            : `    | captured on ${safeText(n)}: ${c.total} packets; from ${dgn.sender}: ${c.udpFromSender} UDP (${c.initiationsFromSender} handshake initiations, ${c.markers} markers); ${c.responsesToSender} handshake responses to it; ICMP on wg0 ${c.icmpRequestsIn} requests in, ${c.icmpRepliesOut} replies out`;
        lines.push(paint.dim(line));
      }
      for (const [n, err] of Object.entries(cap.errors)) lines.push(paint.dim(`    | capture on ${n}: ${safeText(err)}`));
      for (const [n, pids] of Object.entries(cap.leftovers))
        if (pids.length) lines.push(paint.red(`    | capture processes still running on ${n}: ${pids.join(' ')}`));
    }
    lines.push('');
  }
  if (report.bundle)
    lines.push(`bundle: ${report.bundle} (report.json, report.txt${report.captures.some((c) => c.files.length) ? ', pcap files' : ''})`);
  // with no failing pair there is no fix above to call a suggestion (a new user's finding Q4-7)
  lines.push(
    report.diagnoses.length
      ? 'debug changes nothing on the nodes: the fixes above are suggestions.'
      : 'debug changed nothing on the nodes.',
  );
  return `${lines.join('\n')}\n`;
}

export async function writeBundle(report: DebugReport, text: string): Promise<void> {
  if (!report.bundle) return;
  ownPrivateDir(report.bundle);
  await writePrivateFile(join(report.bundle, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  await writePrivateFile(join(report.bundle, 'report.txt'), text);
}
