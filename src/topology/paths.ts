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

/** Nodes that can relay a–b: public, not a or b, not `relay: never`, a direct path to both. Inventory order. */
export function relayCandidates(inventory: Inventory, a: Node, b: Node): Node[] {
  return inventory.nodes.filter(
    (r) =>
      r !== a &&
      r !== b &&
      isPublic(inventory, r) &&
      relayModeOf(inventory, r) !== 'never' &&
      pairCanConnect(inventory, a, r) &&
      pairCanConnect(inventory, b, r),
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

interface PairInput {
  inventory: Inventory;
  a: Node;
  b: Node;
  load: Map<string, number>;
  options: PlanPathsOptions;
}

/** Where the deciding `relay: never` is written: a's, b's (each only if the node sets it itself), else the mesh's. */
function neverAt(inventory: Inventory, a: Node, b: Node): RelayRefusal {
  for (const node of [a, b]) if (node.relay === 'never') return { node: node.name };
  void inventory;
  return { mesh: true };
}

function planPair({ inventory, a, b, load, options }: PairInput): PairPath {
  const modes = [relayModeOf(inventory, a), relayModeOf(inventory, b)];
  // relay: auto moved the pair to a relay when its direct handshake failed at a gate (src/engine/fallback.ts)
  const fellBack = modes.every((m) => m === 'auto') && (inventory.mesh.fallbackRelays?.includes(pairKey(a.name, b.name)) ?? false);
  const direct = pairCanConnect(inventory, a, b) && !fellBack;
  const never = modes.includes('never');
  const always = !never && modes.includes('always') && !isPublic(inventory, a) && !isPublic(inventory, b);
  if (direct && !always) return { kind: 'direct', why: whyDirect(inventory, a, b) };
  const noDirect = direct
    ? undefined
    : fellBack
      ? `their direct handshake failed at the gate of an earlier up (relay: auto; an up moves them back once it works)`
      : whyNoDirectPath(inventory, a, b);
  if (never) {
    const at = neverAt(inventory, a, b);
    const who = 'node' in at ? `on ${at.node}` : 'on the mesh';
    return { kind: 'none', why: `${noDirect}, and relay: never (${who}) forbids a relay`, refusedBy: at };
  }
  const candidates = relayCandidates(inventory, a, b);
  if (candidates.length === 0)
    return direct
      ? { kind: 'direct', why: `${whyDirect(inventory, a, b)} (relay: always, but no public node can relay this pair)` }
      : { kind: 'none', why: `${noDirect}, and no public node with a direct path to both can relay it` };
  const named = [namedRelayOf(inventory, a), namedRelayOf(inventory, b)].find(
    (name) => name !== undefined && candidates.some((c) => c.name === name),
  );
  const relay = named !== undefined ? candidates.find((c) => c.name === named)! : pickRelay(candidates, a, b, load, options);
  load.set(relay.name, (load.get(relay.name) ?? 0) + 1);
  const how = named !== undefined ? `relayed via ${relay.name} (named in the inventory)` : `relayed via ${relay.name}`;
  const alwaysOn = [a, b].filter((n) => relayModeOf(inventory, n) === 'always').map((n) => n.name);
  return direct
    ? {
        kind: 'relayed',
        via: relay.name,
        directExists: true,
        why: `relay: always on ${alwaysOn.join(' and ')}: ${how} (a direct path exists)`,
      }
    : { kind: 'relayed', via: relay.name, directExists: false, why: `${noDirect}: ${how}` };
}

/** Every pair's path, in inventory order; relays picked pair by pair in that order (so the spread is stable). */
export function planPaths(inventory: Inventory, options: PlanPathsOptions = {}): MeshPaths {
  const load = new Map<string, number>();
  const pairs: PairPlan[] = [];
  inventory.nodes.forEach((a, i) => {
    for (const b of inventory.nodes.slice(i + 1)) pairs.push({ a: a.name, b: b.name, path: planPair({ inventory, a, b, load, options }) });
  });
  return { pairs };
}

/** The path between two nodes, in either order; undefined for a node paired with itself or an unknown name. */
export function pathBetween(paths: MeshPaths, x: string, y: string): PairPath | undefined {
  return paths.pairs.find((p) => (p.a === x && p.b === y) || (p.a === y && p.b === x))?.path;
}

/** The pairs relayed through `relay`, in inventory order. */
export function pairsRelayedBy(paths: MeshPaths, relay: string): PairPlan[] {
  return paths.pairs.filter((p) => p.path.kind === 'relayed' && p.path.via === relay);
}

/** The nodes `node` reaches through `relay` (the other end of each of its pairs relayed there). */
export function relayedPeersVia(paths: MeshPaths, node: string, relay: string): string[] {
  return pairsRelayedBy(paths, relay)
    .filter((p) => p.a === node || p.b === node)
    .map((p) => (p.a === node ? p.b : p.a));
}

/** Short words for a path: "direct", "relayed via p-1", "none". */
export const describePathKind = (path: PairPath): string =>
  path.kind === 'relayed' ? `relayed via ${path.via}` : path.kind === 'direct' ? 'direct' : 'none';
