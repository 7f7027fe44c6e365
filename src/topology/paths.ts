/**
 * Every pair's path through the mesh (issue 11, relays): direct, relayed through a public node, or none. Pure:
 * inventory in, plain values out; desired state (./desired.ts), validate, verify and --graph all read it, so they
 * cannot disagree.
 *
 * A pair has a direct path when at least one side can dial the other (./endpoints.ts pairCanConnect: whatever the
 * dial rules say, including endpoint overrides, dynamic-DNS names and IPv6, which extend endpointFor). meshctl does
 * NOT punch holes (no simultaneous-open through two NATs), so two NATed nodes neither of which can be dialled have
 * no direct path whatever their NATs' mapping behaviour: such a pair needs a relay.
 *
 * Relay policy (inventory `relay:` at mesh level and per node; a node's own setting wins for its pairs):
 * - auto (default): relay only the pairs with no direct path;
 * - always: relay every pair of the node that does not include a public node (a public node is itself one of the
 *   hops a relayed path is made of, so relaying around it adds a hop and gains nothing);
 * - never: never relay the node's pairs; a pair with no direct path is then `none` and the inventory is refused
 *   (src/inventory/semantic.ts), naming every such pair. `never` beats `always` in a pair. A public node with
 *   `never` also relays nobody else's pairs.
 * - a node name (`relay: p-1`, a node in a public site): as auto, relayed pairs go through that node; in a pair
 *   whose two ends name different relays, the end that comes first in the inventory wins.
 * A relay is a node in a public site, not one of the pair, with a direct path to both ends. The automatic pick
 * spreads the pairs: the candidate with the fewest pairs so far, then inventory order (deterministic). A lower-RTT
 * pick needs measured RTTs from the relays to the nodes: `PlanPathsOptions.rttMs` is that hook (unused by the
 * commands yet: they plan from the inventory alone).
 */
import type { Inventory, Node, RelaySetting } from '../inventory/types.js';
import { pairKey, siteOf } from '../inventory/types.js';
import { endpointFor, formatEndpoint, pairCanConnect } from './endpoints.js';

export type RelayMode = 'auto' | 'always' | 'never';

/** A pair's path. `why` is one sentence for people (validate, plan, verify, --graph). */
export type PairPath =
  | { kind: 'direct'; why: string }
  /** directExists: the pair is relayed by `relay: always` although one side could dial the other */
  | { kind: 'relayed'; via: string; why: string; directExists: boolean }
  | { kind: 'none'; why: string; refusedBy?: RelayRefusal };

/** Where a `relay: never` that leaves a pair without a path is written (for the inventory problem's position). */
export type RelayRefusal = { node: string } | { mesh: true };

/** One unordered pair, `a` before `b` in inventory order. */
export interface PairPlan {
  a: string;
  b: string;
  path: PairPath;
}

export interface PlanPathsOptions {
  /**
   * Measured round trip in ms from a relay candidate to a node, when known. With it, the candidate with the lowest
   * sum to both ends is picked (ties: fewest pairs, then inventory order). Without it (the default), fewest pairs.
   */
  rttMs?: (relay: string, node: string) => number | undefined;
}

export interface MeshPaths {
  /** every pair once, in inventory order (a-1/a-2, a-1/a-3, ..., a-2/a-3, ...) */
  pairs: PairPlan[];
}

const isMode = (setting: RelaySetting | undefined): setting is RelayMode => typeof setting === 'string';

/** The node's effective mode: its own, else the mesh's, else auto (a named relay means auto). */
export function relayModeOf(inventory: Inventory, node: Node): RelayMode {
  if (isMode(node.relay)) return node.relay;
  if (node.relay) return 'auto';
  return isMode(inventory.mesh.relay) ? inventory.mesh.relay : 'auto';
}

/** The relay the node names: its own `relay: NODE`, else the mesh's, else none. */
export function namedRelayOf(inventory: Inventory, node: Node): string | undefined {
  if (node.relay && !isMode(node.relay)) return node.relay.via;
  if (isMode(node.relay)) return isMode(inventory.mesh.relay) ? undefined : inventory.mesh.relay?.via;
  return inventory.mesh.relay && !isMode(inventory.mesh.relay) ? inventory.mesh.relay.via : undefined;
}

const isPublic = (inventory: Inventory, node: Node) => siteOf(inventory, node).kind === 'public';

/** Why `node` cannot be dialled by `from` (only called when it cannot), as a predicate: "is behind NAT with no forward". */
export function whyNotDialable(inventory: Inventory, from: Node, node: Node): string {
  const site = siteOf(inventory, node);
  if (site.kind === 'lan') return `is in a LAN with no way in (site ${site.name})`;
  if (site.kind === 'nat' && site.carrier) return `is behind carrier NAT (site ${site.name}, no forward possible)`;
  if (site.kind === 'nat' && node.forwardedPort === undefined) return `is behind NAT with no forward (site ${site.name})`;
  return `cannot be dialled from ${from.name}`;
}

/** "b-1 and c-1 are both behind NAT with no forward" / "b-1 is behind NAT ... and c-1 is behind carrier NAT ...". */
export function whyNoDirectPath(inventory: Inventory, a: Node, b: Node): string {
  const aWhy = whyNotDialable(inventory, b, a).replace(/ \(site [^)]*\)$/, '');
  const bWhy = whyNotDialable(inventory, a, b).replace(/ \(site [^)]*\)$/, '');
  if (aWhy === bWhy) return `${a.name} and ${b.name} are both ${aWhy.replace(/^is /, '')}`;
  return `${a.name} ${aWhy} and ${b.name} ${bWhy}`;
}

/** "b-1 dials a-1 at 203.0.113.10:41001" (each side that can), for a pair with a direct path. */
function whyDirect(inventory: Inventory, a: Node, b: Node): string {
  const ways = [
    [a, b],
    [b, a],
  ].flatMap(([from, to]) => {
    const endpoint = endpointFor(inventory, from!, to!);
    return endpoint ? [`${from!.name} dials ${to!.name} at ${formatEndpoint(endpoint)}`] : [];
  });
  return ways.join('; ');
}

/**
 * Whether `node`'s leg to relay `r` is a direct tunnel: one side can dial the other, and the pair is not one whose
 * direct handshake failed at a gate (mesh.fallbackRelays, both ends auto: such a pair is itself relayed, so `node`
 * has no [Peer] for `r` whose AllowedIPs could carry a pair relayed through `r`; a new user saw b-2 <-> c-1 kept
 * "via p-2" after b-2 <-> p-2 fell back, and b-2's config then had no route to c-1 at all).
 */
function legUsable(inventory: Inventory, node: Node, r: Node, fallbacks: ReadonlySet<string>): boolean {
  return pairCanConnect(inventory, node, r) && !isFellBack(inventory, node, r, fallbacks);
}

/**
 * Nodes that can relay a–b: public, not a or b, not `relay: never`, a usable direct leg to both (legUsable: a
 * direct path, not a pair that fell back to a relay itself). Inventory order.
 */
export function relayCandidates(inventory: Inventory, a: Node, b: Node): Node[] {
  const fallbacks = new Set(inventory.mesh.fallbackRelays ?? []);
  return inventory.nodes.filter(
    (r) =>
      r !== a &&
      r !== b &&
      isPublic(inventory, r) &&
      relayModeOf(inventory, r) !== 'never' &&
      legUsable(inventory, a, r, fallbacks) &&
      legUsable(inventory, b, r, fallbacks),
  );
}

function pickRelay(candidates: Node[], a: Node, b: Node, load: Map<string, number>, options: PlanPathsOptions): Node {
  const rtt = (r: Node) => {
    const ra = options.rttMs?.(r.name, a.name);
    const rb = options.rttMs?.(r.name, b.name);
    return ra === undefined || rb === undefined ? Number.POSITIVE_INFINITY : ra + rb;
  };
  return candidates
    .map((r, order) => ({ r, order, rtt: rtt(r), load: load.get(r.name) ?? 0 }))
    .sort((x, y) => (x.rtt !== y.rtt ? (x.rtt < y.rtt ? -1 : 1) : x.load - y.load || x.order - y.order))[0]!.r;
}

/**
 * The relays of one planPaths run without measured RTTs, kept sorted by (pairs carried so far, inventory order):
 * the order pickRelay sorts the candidates of a pair in. Picking walks from the front to the first relay that fits
 * the pair (usually the first or the third: a pair's own ends are skipped), so a relayed pair costs O(1) instead
 * of a filter over all N nodes plus a sort of the candidates, which made planning O(N^3) with many relayed pairs
 * (issue 10). Same choice as relayCandidates + pickRelay, pair by pair.
 */
class RelayQueue {
  /** public nodes not `relay: never`, sorted by (load, order) */
  private readonly queue: Array<{ node: Node; order: number; load: number }>;
  private readonly byName = new Map<string, { node: Node; order: number; load: number }>();

  constructor(
    private readonly inventory: Inventory,
    /** mesh.fallbackRelays as pairKey strings: a relay's leg that fell back does not fit (legUsable) */
    private readonly fallbacks: ReadonlySet<string>,
  ) {
    this.queue = inventory.nodes.flatMap((node, order) =>
      isPublic(inventory, node) && relayModeOf(inventory, node) !== 'never' ? [{ node, order, load: 0 }] : [],
    );
    for (const e of this.queue) if (!this.byName.has(e.node.name)) this.byName.set(e.node.name, e);
  }

  /** relayCandidates' test for one eligible relay */
  private fits(r: Node, a: Node, b: Node): boolean {
    return r !== a && r !== b && legUsable(this.inventory, a, r, this.fallbacks) && legUsable(this.inventory, b, r, this.fallbacks);
  }

  /** The least-loaded relay that fits a–b (ties: inventory order), or undefined when none does. */
  first(a: Node, b: Node): Node | undefined {
    return this.queue.find((e) => this.fits(e.node, a, b))?.node;
  }

  /** `name` when it is a relay that fits a–b. */
  named(name: string, a: Node, b: Node): Node | undefined {
    const e = this.byName.get(name);
    return e && this.fits(e.node, a, b) ? e.node : undefined;
  }

  /** One more pair carried by `relay`: it moves behind every relay with a smaller (load, order). */
  charge(relay: Node): void {
    const entry = this.byName.get(relay.name);
    const from = entry ? this.queue.indexOf(entry) : -1; // native scan, no callback per relay
    if (from < 0) return;
    const [e] = this.queue.splice(from, 1);
    e!.load++;
    const after = (x: { load: number; order: number }) => x.load > e!.load || (x.load === e!.load && x.order > e!.order);
    let lo = from;
    let hi = this.queue.length; // binary search for the first entry after e, from where e was (all before stay before)
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (after(this.queue[mid]!)) hi = mid;
      else lo = mid + 1;
    }
    this.queue.splice(lo, 0, e!);
  }
}

interface PairInput {
  inventory: Inventory;
  a: Node;
  b: Node;
  load: Map<string, number>;
  /** set when no RTTs are given: picks in O(1) per pair (see RelayQueue) */
  queue?: RelayQueue;
  options: PlanPathsOptions;
  /** inventory.mesh.fallbackRelays as a Set of pairKey */
  fellBack: ReadonlySet<string>;
}

/** The relay of a–b by a scan of every node (with RTTs): a relay named by a or b if it fits, else pickRelay's. */
function pickScanned(inventory: Inventory, a: Node, b: Node, load: Map<string, number>, options: PlanPathsOptions) {
  const candidates = relayCandidates(inventory, a, b);
  if (candidates.length === 0) return undefined;
  const named = [namedRelayOf(inventory, a), namedRelayOf(inventory, b)].find(
    (name) => name !== undefined && candidates.some((c) => c.name === name),
  );
  return { relay: named !== undefined ? candidates.find((c) => c.name === named)! : pickRelay(candidates, a, b, load, options), named };
}

/** The same choice as pickScanned without RTTs, from the queue. */
function pickQueued(queue: RelayQueue, inventory: Inventory, a: Node, b: Node) {
  for (const name of [namedRelayOf(inventory, a), namedRelayOf(inventory, b)]) {
    const relay = name === undefined ? undefined : queue.named(name, a, b);
    if (relay) return { relay, named: name };
  }
  const relay = queue.first(a, b);
  return relay ? { relay, named: undefined } : undefined;
}

/** Where the deciding `relay: never` is written: a's, b's (each only if the node sets it itself), else the mesh's. */
function neverAt(inventory: Inventory, a: Node, b: Node): RelayRefusal {
  for (const node of [a, b]) if (node.relay === 'never') return { node: node.name };
  void inventory;
  return { mesh: true };
}

/*
 * A pair's plan as one byte (issue 10): its kind in the low two bits and the facts its `why` text is made from as
 * flags, the relay (if any) beside it. The text itself is made only when read (describe): kept for every pair, the
 * texts and path objects were ~100 MB at 1,000 nodes, held for the whole run.
 */
const KIND_MASK = 3;
const KINDS = ['direct', 'relayed', 'none'] as const;
/** relayed: the relay was named in the inventory */
const NAMED = 4;
/** the pair's direct handshake failed at an earlier gate (mesh.fallbackRelays) */
const FELL_BACK = 8;
/** relayed by `relay: always` although one side can dial the other */
const DIRECT_EXISTS = 16;
/** direct under `relay: always` because no public node can relay the pair */
const ALWAYS_UNRELAYED = 32;
/** none: a `relay: never` forbids the relay */
const NEVER = 64;

const FELL_BACK_WHY = `their direct handshake failed at the gate of an earlier up (relay: auto; an up moves them back once it works)`;

/**
 * Whether relay: auto moved a–b to a relay after a failed handshake: listed in `fallbacks` (mesh.fallbackRelays as
 * pairKey strings) and both ends in auto mode (a listed pair whose end is now `always` or `never` is planned as
 * that says). No pairKey string is made when nothing fell back (the common case at farm scale).
 */
function isFellBack(inventory: Inventory, a: Node, b: Node, fallbacks: ReadonlySet<string>, modes?: RelayMode[]): boolean {
  if (fallbacks.size === 0) return false;
  const [ma, mb] = modes ?? [relayModeOf(inventory, a), relayModeOf(inventory, b)];
  return ma === 'auto' && mb === 'auto' && fallbacks.has(pairKey(a.name, b.name));
}

function planPair({ inventory, a, b, load, queue, options, fellBack: fallbacks }: PairInput): { code: number; relay?: Node } {
  const modes = [relayModeOf(inventory, a), relayModeOf(inventory, b)];
  // relay: auto moved the pair to a relay when its direct handshake failed at a gate (src/engine/fallback.ts)
  // (no pairKey string per pair when nothing fell back: the common case at farm scale)
  const fellBack = isFellBack(inventory, a, b, fallbacks, modes);
  const direct = pairCanConnect(inventory, a, b) && !fellBack;
  const never = modes.includes('never');
  const always = !never && modes.includes('always') && !isPublic(inventory, a) && !isPublic(inventory, b);
  if (direct && !always) return { code: 0 };
  const fell = fellBack ? FELL_BACK : 0;
  if (never) return { code: 2 | NEVER | fell };
  const picked = queue ? pickQueued(queue, inventory, a, b) : pickScanned(inventory, a, b, load, options);
  if (!picked) return direct ? { code: 0 | ALWAYS_UNRELAYED } : { code: 2 | fell };
  const { relay, named } = picked;
  load.set(relay.name, (load.get(relay.name) ?? 0) + 1);
  queue?.charge(relay);
  return { code: 1 | (named !== undefined ? NAMED : 0) | (direct ? DIRECT_EXISTS : 0) | fell, relay };
}

/** The sentence of a pair's path (PairPath.why), from its plan's code: the texts planPair made before issue 10's cut. */
function whyOf(inventory: Inventory, a: Node, b: Node, code: number, relay: string | undefined): string {
  const kind = KINDS[code & KIND_MASK]!;
  if (kind === 'direct')
    return code & ALWAYS_UNRELAYED
      ? `${whyDirect(inventory, a, b)} (relay: always, but no public node can relay this pair)`
      : whyDirect(inventory, a, b);
  const noDirect = () => (code & FELL_BACK ? FELL_BACK_WHY : whyNoDirectPath(inventory, a, b));
  if (kind === 'none') {
    if (!(code & NEVER)) return `${noDirect()}, and no public node with a direct path to both can relay it`;
    const at = neverAt(inventory, a, b);
    const who = 'node' in at ? `on ${at.node}` : 'on the mesh';
    return `${noDirect()}, and relay: never (${who}) forbids a relay`;
  }
  const how = code & NAMED ? `relayed via ${relay} (named in the inventory)` : `relayed via ${relay}`;
  if (!(code & DIRECT_EXISTS)) return `${noDirect()}: ${how}`;
  const alwaysOn = [a, b].filter((n) => relayModeOf(inventory, n) === 'always').map((n) => n.name);
  return `relay: always on ${alwaysOn.join(' and ')}: ${how} (a direct path exists)`;
}

/**
 * A pair's path as a value; `why` is made when first read (an own, enumerable accessor: JSON, spreads and deep
 * comparisons see it as the plain field it was).
 */
function describe(inventory: Inventory, a: Node, b: Node, code: number, relay: string | undefined): PairPath {
  let text: string | undefined;
  const why = () => (text ??= whyOf(inventory, a, b, code, relay));
  const kind = KINDS[code & KIND_MASK]!;
  if (kind === 'direct')
    return {
      kind,
      get why() {
        return why();
      },
    };
  if (kind === 'relayed')
    return {
      kind,
      via: relay!,
      directExists: (code & DIRECT_EXISTS) !== 0,
      get why() {
        return why();
      },
    };
  return {
    kind,
    get why() {
      return why();
    },
    ...(code & NEVER ? { refusedBy: neverAt(inventory, a, b) } : {}),
  };
}

/**
 * What planPaths keeps (issue 10): one byte per pair (planPair's code) in the order of the pairs, the relays of the
 * relayed pairs, and lookups by name; a pair's PairPath is made when asked for. Pair (i, j), i < j in inventory
 * order, is number i*n - i*(i+1)/2 + (j-i-1).
 */
interface CompactPaths {
  inventory: Inventory;
  nodes: readonly Node[];
  /** node name -> its first index in inventory order */
  at: Map<string, number>;
  codes: Uint8Array;
  /** pair number -> relay node index, for relayed pairs */
  via: Map<number, number>;
  /** relay name -> its pairs as (number, i, j) triples, flat, inventory order */
  relayedBy: Map<string, number[]>;
  /** `${relay} ${node}` -> the other ends of node's pairs relayed by relay, inventory order */
  reachedVia: Map<string, string[]>;
  /** the materialized pairs while someone holds them (MeshPaths.pairs) */
  pairs?: WeakRef<PairPlan[]>;
}

const compactPlans = new WeakMap<MeshPaths, CompactPaths>();
const pairNumber = (n: number, i: number, j: number) => i * n - (i * (i + 1)) / 2 + (j - i - 1);

/**
 * Every pair's path, in inventory order; relays picked pair by pair in that order (so the spread is stable), the
 * pairs of `mesh.fallbackRelays` last (see inside).
 */
export function planPaths(inventory: Inventory, options: PlanPathsOptions = {}): MeshPaths {
  const load = new Map<string, number>();
  const nodes = inventory.nodes;
  const n = nodes.length;
  // a Set, not the array's includes: one lookup per pair (issue 10: nothing beyond O(pairs) here)
  const fellBack = new Set(inventory.mesh.fallbackRelays ?? []);
  const queue = options.rttMs ? undefined : new RelayQueue(inventory, fellBack);
  const compact: CompactPaths = {
    inventory,
    nodes,
    at: new Map(),
    codes: new Uint8Array((n * (n - 1)) / 2),
    via: new Map(),
    relayedBy: new Map(),
    reachedVia: new Map(),
  };
  nodes.forEach((node, i) => {
    if (!compact.at.has(node.name)) compact.at.set(node.name, i);
  });
  const indexOfNode = new Map(nodes.map((node, i) => [node, i]));
  const push = <T>(map: Map<string, T[]>, key: string, value: T) => {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  };
  const plan = (i: number, j: number, p: number) => {
    const { code, relay } = planPair({ inventory, a: nodes[i]!, b: nodes[j]!, load, options, fellBack, ...(queue ? { queue } : {}) });
    compact.codes[p] = code;
    if (relay) compact.via.set(p, indexOfNode.get(relay)!);
  };
  // the pairs relay: auto moved to a relay after a failed handshake are planned after all the others, so they take
  // what relay capacity is left and never move another pair to another relay: the inventory's pairs keep the relays
  // they have without fallbacks, and a fallback (or its return to direct) changes only its own ends and its relay
  // (a new user saw two other relayed pairs swap relays, three more nodes changed, when one pair fell back)
  const deferred: number[] = [];
  for (let i = 0, p = 0; i < n; i++)
    for (let j = i + 1; j < n; j++, p++) {
      if (isFellBack(inventory, nodes[i]!, nodes[j]!, fellBack)) deferred.push(i, j, p);
      else plan(i, j, p);
    }
  for (let k = 0; k < deferred.length; k += 3) plan(deferred[k]!, deferred[k + 1]!, deferred[k + 2]!);
  // the lookups in inventory order, whatever order the relays were picked in
  for (let i = 0, p = 0; i < n; i++) {
    const a = nodes[i]!;
    for (let j = i + 1; j < n; j++, p++) {
      const via = compact.codes[p]! & 1 ? compact.via.get(p) : undefined;
      if (via === undefined) continue;
      const relay = nodes[via]!;
      const b = nodes[j]!;
      push(compact.relayedBy, relay.name, p);
      compact.relayedBy.get(relay.name)!.push(i, j);
      push(compact.reachedVia, `${relay.name} ${a.name}`, b.name);
      push(compact.reachedVia, `${relay.name} ${b.name}`, a.name);
    }
  }
  const paths = {} as MeshPaths;
  // the pairs as values, made when read (validate, --graph, reports); the lookups below do not need them
  Object.defineProperty(paths, 'pairs', { get: () => materialize(compact), enumerable: true });
  compactPlans.set(paths, compact);
  return paths;
}

/** The pair plan of pair number p, (i, j). */
function planOf(c: CompactPaths, p: number, i: number, j: number): PairPlan {
  const a = c.nodes[i]!;
  const b = c.nodes[j]!;
  const code = c.codes[p]!;
  const relay = code & 1 ? c.nodes[c.via.get(p)!]!.name : undefined;
  return { a: a.name, b: b.name, path: describe(c.inventory, a, b, code, relay) };
}

/** MeshPaths.pairs of a compact plan: one array while anyone holds it (a loop over `paths.pairs` reads one). */
function materialize(c: CompactPaths): PairPlan[] {
  const held = c.pairs?.deref();
  if (held) return held;
  const n = c.nodes.length;
  const pairs: PairPlan[] = [];
  for (let i = 0, p = 0; i < n; i++) for (let j = i + 1; j < n; j++, p++) pairs.push(planOf(c, p, i, j));
  c.pairs = new WeakRef(pairs);
  return pairs;
}

/** The pair number of x and y in a compact plan, -1 when there is none (no object made: pathKind runs per pair). */
function pairAt(c: CompactPaths, x: string, y: string): number {
  const xi = c.at.get(x);
  const yi = c.at.get(y);
  if (xi === undefined || yi === undefined || xi === yi) return -1;
  return xi < yi ? pairNumber(c.nodes.length, xi, yi) : pairNumber(c.nodes.length, yi, xi);
}

/**
 * Lookups into one MeshPaths, built once per pairs array on first use (issue 10): a path by pair, the pairs a relay
 * carries, and per (relay, node) the nodes reached through it. A scan of all N(N-1)/2 pairs per lookup made
 * rendering N configs O(N^4) (1,000 nodes: 5e11 steps). MeshPaths is a plain value nobody mutates; the cache is
 * still dropped when its pairs array is replaced or changes length. (A plan made by planPaths has its compact
 * lookups instead: these are for a MeshPaths made by hand.)
 */
interface PathIndex {
  pairs: readonly PairPlan[];
  length: number;
  /**
   * the path of each pair under its ends in pairKey order (the smaller name first): a lookup compares two names
   * and builds no string (a pairKey per lookup was N^2 strings for a matrix or N configs)
   */
  byPair: Map<string, Map<string, PairPath>>;
  relayedBy: Map<string, PairPlan[]>;
  /** `${relay} ${node}` -> the other ends of node's pairs relayed by relay, inventory order */
  reachedVia: Map<string, string[]>;
}

const pathIndexes = new WeakMap<MeshPaths, PathIndex>();

function indexOf(paths: MeshPaths): PathIndex {
  const cached = pathIndexes.get(paths);
  if (cached && cached.pairs === paths.pairs && cached.length === paths.pairs.length) return cached;
  const index: PathIndex = {
    pairs: paths.pairs,
    length: paths.pairs.length,
    byPair: new Map(),
    relayedBy: new Map(),
    reachedVia: new Map(),
  };
  const push = <T>(map: Map<string, T[]>, key: string, value: T) => {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  };
  for (const p of paths.pairs) {
    const aFirst = p.a < p.b; // names are strings: Math.min does not apply
    const low = aFirst ? p.a : p.b;
    const high = aFirst ? p.b : p.a;
    let byHigh = index.byPair.get(low);
    if (!byHigh) {
      byHigh = new Map();
      index.byPair.set(low, byHigh);
    }
    // the first plan of a pair wins, as the scan it replaces found the first
    if (!byHigh.has(high)) byHigh.set(high, p.path);
    if (p.path.kind !== 'relayed') continue;
    push(index.relayedBy, p.path.via, p);
    push(index.reachedVia, `${p.path.via} ${p.a}`, p.b);
    push(index.reachedVia, `${p.path.via} ${p.b}`, p.a);
  }
  pathIndexes.set(paths, index);
  return index;
}

/**
 * The path between two nodes, in either order; undefined for a node paired with itself or an unknown name. O(1).
 * Of a plan made by planPaths, a value made per call (its `why` made when read): a caller that needs only the kind
 * of many pairs asks pathKind, which makes nothing.
 */
export function pathBetween(paths: MeshPaths, x: string, y: string): PairPath | undefined {
  if (x === y) return undefined;
  const c = compactPlans.get(paths);
  if (c) {
    const p = pairAt(c, x, y);
    if (p < 0) return undefined;
    const xi = c.at.get(x)!;
    const yi = c.at.get(y)!;
    return planOf(c, p, Math.min(xi, yi), Math.max(xi, yi)).path;
  }
  return x < y ? indexOf(paths).byPair.get(x)?.get(y) : indexOf(paths).byPair.get(y)?.get(x);
}

/** pathBetween(paths, x, y)?.kind, without making the path (issue 10: desired configs ask it for every pair). O(1). */
export function pathKind(paths: MeshPaths, x: string, y: string): PairPath['kind'] | undefined {
  const c = compactPlans.get(paths);
  if (!c) return pathBetween(paths, x, y)?.kind;
  const p = pairAt(c, x, y);
  return p < 0 ? undefined : KINDS[c.codes[p]! & KIND_MASK];
}

/**
 * The pairs of one kind, in inventory order (MeshPaths.pairs filtered by kind, without making the other pairs:
 * the inventory check asks for the pairs with no path on every load, issue 10).
 */
export function pairsOfKind(paths: MeshPaths, kind: PairPath['kind']): PairPlan[] {
  const c = compactPlans.get(paths);
  if (!c) return paths.pairs.filter((p) => p.path.kind === kind);
  const code = KINDS.indexOf(kind);
  const n = c.nodes.length;
  const out: PairPlan[] = [];
  for (let i = 0, p = 0; i < n; i++)
    for (let j = i + 1; j < n; j++, p++) if ((c.codes[p]! & KIND_MASK) === code) out.push(planOf(c, p, i, j));
  return out;
}

/**
 * The pairs that are not direct (relayed or none), in inventory order, and how many pairs there are of each kind: what
 * plan's text shows below the plan (src/commands/plan.ts). No direct pair's path is made (its `why` reads endpoints
 * and formats a sentence): at 1,000 nodes that is 499,500 pairs, nearly all direct (issue 10).
 */
export function notDirectPairs(paths: MeshPaths): { pairs: PairPlan[]; counts: Record<PairPath['kind'], number> } {
  const counts = { direct: 0, relayed: 0, none: 0 };
  const c = compactPlans.get(paths);
  const pairs: PairPlan[] = [];
  if (!c) {
    for (const p of paths.pairs) {
      counts[p.path.kind]++;
      if (p.path.kind !== 'direct') pairs.push(p);
    }
    return { pairs, counts };
  }
  const n = c.nodes.length;
  for (let i = 0, p = 0; i < n; i++)
    for (let j = i + 1; j < n; j++, p++) {
      const kind = KINDS[c.codes[p]! & KIND_MASK]!;
      counts[kind]++;
      if (kind !== 'direct') pairs.push(planOf(c, p, i, j));
    }
  return { pairs, counts };
}

/** The pairs relayed through `relay`, in inventory order (a fresh array). */
export function pairsRelayedBy(paths: MeshPaths, relay: string): PairPlan[] {
  const c = compactPlans.get(paths);
  if (!c) return [...(indexOf(paths).relayedBy.get(relay) ?? [])];
  const triples = c.relayedBy.get(relay) ?? [];
  const out: PairPlan[] = [];
  for (let k = 0; k < triples.length; k += 3) out.push(planOf(c, triples[k]!, triples[k + 1]!, triples[k + 2]!));
  return out;
}

/** The nodes `node` reaches through `relay` (the other end of each of its pairs relayed there; a fresh array). */
export function relayedPeersVia(paths: MeshPaths, node: string, relay: string): string[] {
  const c = compactPlans.get(paths);
  return [...((c ? c.reachedVia : indexOf(paths).reachedVia).get(`${relay} ${node}`) ?? [])];
}

/** Short words for a path: "direct", "relayed via p-1", "none". */
export const describePathKind = (path: PairPath): string =>
  path.kind === 'relayed' ? `relayed via ${path.via}` : path.kind === 'direct' ? 'direct' : 'none';

/**
 * The relayed pairs of `inventory` as a map from `a\u0000b` (inventory order) to the relay: what renderMatrix
 * (src/checks/ping-matrix.ts) takes to mark relayed cells.
 */
export function relayedPairs(inventory: Inventory): Map<string, string> {
  const relayed = new Map<string, string>();
  const c = compactPlans.get(planPaths(inventory))!;
  // the relayed pairs only, in inventory order (relayedBy lists each relay's in that order)
  const all: number[][] = [...c.relayedBy.values()].flatMap((triples) =>
    Array.from({ length: triples.length / 3 }, (_, k) => triples.slice(3 * k, 3 * k + 3)),
  );
  for (const [p, i, j] of all.sort((x, y) => x[0]! - y[0]!))
    relayed.set(`${c.nodes[i!]!.name}\u0000${c.nodes[j!]!.name}`, c.nodes[c.via.get(p!)!]!.name);
  return relayed;
}
