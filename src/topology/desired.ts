/**
 * The desired WireGuard state of every node: a full mesh, one /32 per peer, endpoints and keepalive from the dial
 * rules in ./endpoints.ts. Pure: inventory + public keys in, plain values out. Rendering (src/render/wgquick.ts)
 * and verification (src/render/compare.ts) both start from these values, so they cannot disagree.
 *
 * Validation of the inventory (unreachable nodes, duplicate addresses) is src/inventory's job; this module assumes
 * a valid inventory and still renders every pair, also one that cannot connect (it gets no Endpoint), so that the
 * config stays a full mesh and `verify` reports the pair instead of it silently vanishing.
 *
 * Relayed pairs (./paths.ts): for A–B relayed via R, A has no [Peer] for B and B's /32 rides on A's [Peer] for R
 * (AllowedIPs), and the other way round on B; R keeps its ordinary peers for A and B (their /32s already route
 * there) and forwards between them on the WireGuard interface only (`relay`, rendered by ../render/relay.ts).
 */
import type { Inventory, Node } from '../inventory/types.js';
import { firstByName, siteOf } from '../inventory/types.js';
import { MeshctlError } from '../errors.js';
import { wireguardPaths } from '../remote/wireguard.js';
import { endpointFor, formatEndpoint, isBehindNat, keepaliveFor } from './endpoints.js';
import { pairsRelayedBy, pathKind, planPaths, relayedPeersVia, type MeshPaths } from './paths.js';

export interface DesiredPeer {
  /** inventory node name of the peer; rendered as a `# name` comment, WireGuard itself only knows the key */
  name: string;
  publicKey: string;
  /**
   * the peer's overlay address as a /32, first; for a relay peer, then the /32 of every node this node reaches
   * through it (its relayed pairs, inventory order)
   */
  allowedIps: string[];
  /** 'host:port', absent when the peer cannot be dialled from this node (it dials in, WireGuard roams to it) */
  endpoint?: string;
  persistentKeepalive?: number;
  /**
   * A NAT sits on the path between this node and the peer (the pair spans sites and either end's site is nat/lan),
   * so the source port of the peer's packets may be rewritten and its live endpoint port may differ from
   * `endpoint`. The NAT can be this node's own router: when its outbound mapping to the peer already holds the
   * peer's reply tuple, conntrack rewrites the port of the peer's inbound flow. Not rendered; used by verify.
   */
  throughNat: boolean;
  /**
   * What a NAT on the path can legitimately change in the peer's LIVE endpoint (absent: nothing, the live endpoint
   * must be `endpoint`). 'address': the peer is behind a NAT (its site is nat/lan, this node elsewhere), whose router
   * rewrites the source address and port of the peer's packets, and WireGuard roams to that mapping. 'port': only
   * this node is behind a NAT (the peer is public): its router never changes the peer's address, but may rewrite the
   * source PORT of the peer's inbound flow when it clashes with this node's own outbound mapping (see throughNat).
   * Never set for an IPv6 endpoint (no NAT). Used by up's live comparison (../steps/live-endpoint.ts) and debug.
   */
  natRoams?: 'address' | 'port';
}

export interface DesiredNodeConfig {
  node: string;
  /** WireGuard interface, e.g. wg0 */
  interface: string;
  /** this node's own public key, as learned from the node; verify compares it with `wg show IFACE public-key` */
  publicKey: string;
  /** overlay address with /32: routes to peers come from their AllowedIPs, not from a subnet on the interface */
  address: string;
  listenPort: number;
  mtu: number;
  /** where the node's private key lives; generated there, never read by meshctl */
  privateKeyPath: string;
  /** sorted by name (plain code-unit order, independent of locale) so output is stable */
  peers: DesiredPeer[];
  /**
   * Present when this node relays pairs of other nodes (inventory order): it then forwards IPv4 between peers of
   * its WireGuard interface, and nothing else (../render/relay.ts renders the PostUp/PreDown lines that do it).
   */
  relay?: { pairs: Array<{ a: string; b: string }> };
}

/** `/etc/wireguard/<iface>.key`: the conventional place, next to <iface>.conf. */
export const privateKeyPathFor = (iface: string) => wireguardPaths(iface).privateKey;

/** A WireGuard key is 32 bytes in base64: 43 significant characters, the last one carrying 4 zero bits, then '='. */
const WIREGUARD_KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;
export const looksLikeWireGuardKey = (text: string): boolean => WIREGUARD_KEY.test(text);

/** How many node names a message names in one list before "and N more" (the details name them all). */
const SHOWN_NAMES = 20;
const shortList = (names: readonly string[]): string =>
  names.length <= SHOWN_NAMES ? names.join(', ') : `${names.slice(0, SHOWN_NAMES).join(', ')} and ${names.length - SHOWN_NAMES} more`;
/** A problem's line cut into lines of SHOWN_NAMES names at most (the details; each shown line is cut at 2,000 characters). */
const inLines = (line: string): string[] => {
  const [head, rest] = line.split(': ', 2) as [string, string?];
  if (rest === undefined) return [line];
  const names = rest.split(', ');
  if (names.length <= SHOWN_NAMES) return [line];
  const out: string[] = [];
  for (let i = 0; i < names.length; i += SHOWN_NAMES)
    out.push(`${i === 0 ? `${head}: ` : '  '}${names.slice(i, i + SHOWN_NAMES).join(', ')}${i + SHOWN_NAMES < names.length ? ',' : ''}`);
  return out;
};

/**
 * Some nodes' public keys are missing, malformed or shared; lists every affected node at once: in the message up to
 * SHOWN_NAMES names per problem, in `details` all of them.
 */
export class PublicKeyProblemError extends MeshctlError {
  constructor(
    readonly missing: string[],
    readonly malformed: string[],
    readonly duplicated: string[][],
  ) {
    const all = (names: readonly string[]) => names.join(', ');
    const problems = (list: (names: readonly string[]) => string) => [
      ...(missing.length ? [`no public key for: ${list(missing)}`] : []),
      ...(malformed.length ? [`not a WireGuard public key (44 base64 characters) for: ${list(malformed)}`] : []),
      // Cloned machines often share /etc/wireguard: one key on two nodes makes WireGuard merge them into one peer.
      ...duplicated.map((names) => `one public key shared by: ${list(names)} (cloned key files? remove them and run again)`),
    ];
    // the problems in the message itself: a step's failure line shows only the message (Q9 F-dupkey-msg: "public keys
    // are not usable" on every node, and which nodes and why printed nowhere); there each list is cut at
    // SHOWN_NAMES, as every shown text is cut at 2,000 characters (RV6 F7: 400 cloned nodes' names ended in "(N
    // characters more not shown)"), and the details (printed a line per SHOWN_NAMES names) name every node
    super(
      `cannot build the WireGuard configs: public keys are not usable: ${problems(shortList).join('; ')}`,
      'stop',
      problems(all).flatMap(inLines),
    );
    this.name = 'PublicKeyProblemError';
  }
}

const byCodeUnits = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

function checkPublicKeys(nodeNames: readonly string[], publicKeys: ReadonlyMap<string, string>): void {
  const missing = nodeNames.filter((name) => !publicKeys.has(name));
  const malformed = nodeNames.filter((name) => publicKeys.has(name) && !looksLikeWireGuardKey(publicKeys.get(name)!));
  const namesByKey = new Map<string, string[]>();
  for (const name of nodeNames) {
    const key = publicKeys.get(name);
    if (key !== undefined) namesByKey.set(key, [...(namesByKey.get(key) ?? []), name]);
  }
  const duplicated = [...namesByKey.values()].filter((names) => names.length > 1);
  if (missing.length || malformed.length || duplicated.length) throw new PublicKeyProblemError(missing, malformed, duplicated);
}

/**
 * Per inventory value, built once (issue 10): its planned paths (nodes by name: firstByName). desiredNodeConfig
 * runs once per node in up's config step and its checks: re-planning all N(N-1)/2 pairs on each call made N
 * configs cost O(N^3), and a name lookup by scan in each relayed peer O(N) more. Inventories are values (a changed
 * one, e.g. with fallback relays, is a new object), so a WeakMap keyed by the object is safe; the cache is still
 * dropped when its nodes or mesh object is replaced.
 */
interface Derived {
  nodes: readonly Node[];
  mesh: Inventory['mesh'];
  paths?: MeshPaths;
  /** a node's overlay /32, one frozen list of it (the AllowedIPs of a peer reached directly), by node name */
  own?: Map<string, { cidr: string; list: readonly string[] }>;
  /** the distinct desired peers made so far, by peer name (sharedPeer) */
  peers?: Map<string, DesiredPeer[]>;
}
const derived = new WeakMap<Inventory, Derived>();

function derivedOf(inventory: Inventory): Derived {
  const cached = derived.get(inventory);
  if (cached && cached.nodes === inventory.nodes && cached.mesh === inventory.mesh) return cached;
  const fresh: Derived = { nodes: inventory.nodes, mesh: inventory.mesh };
  derived.set(inventory, fresh);
  return fresh;
}

/** planPaths(inventory), planned once per inventory value. */
function pathsOf(inventory: Inventory): MeshPaths {
  const d = derivedOf(inventory);
  d.paths ??= planPaths(inventory);
  return d.paths;
}

function nodeNamed(inventory: Inventory, name: string): Node {
  const node = firstByName(inventory.nodes, name);
  if (!node) throw new MeshctlError(`no node named ${name} in ${inventory.source}`);
  return node;
}

/** The overlay /32 of the node named `name`, and a frozen one-entry list of it, made once per inventory. */
function ownCidr(inventory: Inventory, name: string): { cidr: string; list: readonly string[] } {
  const d = derivedOf(inventory);
  d.own ??= new Map();
  let own = d.own.get(name);
  if (!own) {
    const cidr = `${nodeNamed(inventory, name).overlayIp}/32`;
    own = { cidr, list: Object.freeze([cidr]) };
    d.own.set(name, own);
  }
  return own;
}

/** How many distinct desired peers per peer name sharedPeer keeps to share (more are made fresh: relays' lists). */
const SHARED_VARIANTS = 16;

/**
 * One frozen object per distinct desired peer across the inventory's configs (issue 10): peer P is in N-1 configs,
 * alike in all but a few (its endpoint, keepalive and NAT flag depend on the viewer's site; a relay's AllowedIPs on
 * the viewer), and every node's `desired` is kept for the run: 1e6 objects at 1,000 nodes, ~80 MB. Values, so a
 * shared one reads the same; frozen, so no config's change can show in another.
 */
function sharedPeer(inventory: Inventory, fresh: DesiredPeer): DesiredPeer {
  const d = derivedOf(inventory);
  d.peers ??= new Map();
  let variants = d.peers.get(fresh.name);
  if (!variants) {
    variants = [];
    d.peers.set(fresh.name, variants);
  }
  const same = (v: DesiredPeer) =>
    v.publicKey === fresh.publicKey &&
    v.endpoint === fresh.endpoint &&
    v.persistentKeepalive === fresh.persistentKeepalive &&
    v.throughNat === fresh.throughNat &&
    v.natRoams === fresh.natRoams &&
    v.allowedIps.length === fresh.allowedIps.length &&
    v.allowedIps.every((cidr, i) => cidr === fresh.allowedIps[i]);
  const known = variants.find(same);
  if (known) return known;
  Object.freeze(fresh.allowedIps);
  if (variants.length < SHARED_VARIANTS) variants.push(Object.freeze(fresh));
  return fresh;
}

function desiredPeer(inventory: Inventory, self: Node, peer: Node, publicKey: string, paths: MeshPaths): DesiredPeer {
  const endpoint = endpointFor(inventory, self, peer);
  const persistentKeepalive = keepaliveFor(inventory, self, peer);
  const relayed = relayedPeersVia(paths, self.name, peer.name);
  const own = ownCidr(inventory, peer.name);
  const peerBehindNat = isBehindNat(siteOf(inventory, peer));
  const throughNat = peer.site !== self.site && (peerBehindNat || isBehindNat(siteOf(inventory, self)));
  const natRoams = throughNat && !endpoint?.host.includes(':') ? (peerBehindNat ? 'address' : 'port') : undefined;
  return sharedPeer(inventory, {
    name: peer.name,
    publicKey,
    allowedIps: relayed.length ? [own.cidr, ...relayed.map((name) => ownCidr(inventory, name).cidr)] : (own.list as string[]),
    ...(endpoint ? { endpoint: formatEndpoint(endpoint) } : {}),
    ...(persistentKeepalive !== undefined ? { persistentKeepalive } : {}),
    throughNat,
    ...(natRoams ? { natRoams } : {}),
  });
}

/**
 * The other nodes whose overlay /32 none of `config`'s peers carries in its AllowedIPs (inventory order): nodes
 * `config.node` has no route to. The design's invariant is that this is empty for every node (a full mesh: each
 * other node directly, or through the relay of their pair); relay: auto once broke it (a pair kept a relay whose
 * leg to one end had fallen back to another relay). Pure; O(peers' AllowedIPs + nodes).
 */
export function unroutedNodes(inventory: Inventory, config: Pick<DesiredNodeConfig, 'node' | 'peers'>): string[] {
  const routed = new Set(config.peers.flatMap((p) => p.allowedIps));
  return inventory.nodes.filter((n) => n.name !== config.node && !routed.has(`${n.overlayIp}/32`)).map((n) => n.name);
}

/** A designed config leaves some nodes without a route (unroutedNodes): a planner fault, stopped before anything is applied. */
export class UnroutedDesignError extends MeshctlError {
  constructor(
    readonly node: string,
    readonly unrouted: string[],
  ) {
    super(`internal planning fault: ${node}'s designed config has no route (AllowedIPs) to ${unrouted.join(', ')}`, 'stop', [
      'no [Peer] of it carries their /32, directly or through a relay; nothing was applied. Please report this with the inventory and the state file.',
    ]);
    this.name = 'UnroutedDesignError';
  }
}

function buildNodeConfig(inventory: Inventory, self: Node, publicKeys: ReadonlyMap<string, string>, paths: MeshPaths): DesiredNodeConfig {
  const iface = inventory.mesh.interface;
  // a peer reached through a relay has no [Peer] of its own: its /32 rides on the relay's
  const peers = inventory.nodes
    .filter((peer) => peer.name !== self.name && pathKind(paths, self.name, peer.name) !== 'relayed')
    .map((peer) => desiredPeer(inventory, self, peer, publicKeys.get(peer.name)!, paths))
    .sort((a, b) => byCodeUnits(a.name, b.name));
  // the full-mesh invariant, checked on every config made: a config that drops a node is never rendered
  const unrouted = unroutedNodes(inventory, { node: self.name, peers });
  if (unrouted.length) throw new UnroutedDesignError(self.name, unrouted);
  const relayed = pairsRelayedBy(paths, self.name).map(({ a, b }) => ({ a, b }));
  return {
    node: self.name,
    interface: iface,
    publicKey: publicKeys.get(self.name)!,
    address: `${self.overlayIp}/32`,
    listenPort: self.listenPort,
    mtu: inventory.mesh.mtu,
    privateKeyPath: privateKeyPathFor(iface),
    peers,
    ...(relayed.length ? { relay: { pairs: relayed } } : {}),
  };
}

/**
 * The desired config of one node. Needs the public keys of every node in the mesh (its peers' for the [Peer]
 * blocks, its own for verify); throws PublicKeyProblemError naming every node whose key is missing or unusable.
 */
export function desiredNodeConfig(inventory: Inventory, nodeName: string, publicKeys: ReadonlyMap<string, string>): DesiredNodeConfig {
  const self = nodeNamed(inventory, nodeName);
  checkPublicKeys(
    inventory.nodes.map((n) => n.name),
    publicKeys,
  );
  return buildNodeConfig(inventory, self, publicKeys, pathsOf(inventory));
}

/** The desired config of every node, in inventory order. Same key checks as desiredNodeConfig, done once. */
export function desiredMesh(inventory: Inventory, publicKeys: ReadonlyMap<string, string>): DesiredNodeConfig[] {
  checkPublicKeys(
    inventory.nodes.map((n) => n.name),
    publicKeys,
  );
  const paths = pathsOf(inventory);
  return inventory.nodes.map((self) => buildNodeConfig(inventory, self, publicKeys, paths));
}
