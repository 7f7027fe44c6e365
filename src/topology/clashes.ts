/**
 * Issue 8, kind 3: a WireGuard interface that is not the mesh's (a VPN client's wg0, say) is judged by what it
 * actually clashes with, not by being there. Pure: the mesh's footprint on one node in, the node's WireGuard facts
 * (../facts/definitions.ts, wireguardInterfaceDetails) in, one verdict out. The baseline check
 * `no-foreign-wireguard` (src/engine/registry.ts) is this verdict.
 *
 * A clash is one of:
 * - name: a WireGuard interface, or /etc/wireguard/IFACE.conf, with the mesh's own name that meshctl did not make
 *   (taking it over is issue 9's import, not this check's);
 * - port: it listens on the node's mesh listen port;
 * - address: one of its addresses overlaps the mesh network (or is the node's overlay address);
 * - route: a route via it, or a peer's AllowedIPs on it, overlaps the mesh network or a mesh peer's AllowedIPs.
 * A default route (0.0.0.0/0, a full-tunnel VPN) is not a clash: every mesh route is more specific and wins by
 * longest-prefix match (wg-quick's own full-tunnel rules keep main-table routes with a prefix first).
 */
import { cidrsOverlap, parseCidr, type Cidr } from '../net/ipv4.js';
import type { WireGuardInterfaceFacts } from '../facts/definitions.js';

/** What the mesh will put on one node (from the inventory). */
export interface MeshFootprint {
  /** the mesh's WireGuard interface name */
  interface: string;
  /** the node's UDP listen port */
  listenPort: number;
  /** the overlay network, CIDR */
  network: string;
  /** the node's overlay address (no prefix) */
  overlayIp: string;
  /** the AllowedIPs of the node's mesh peers, CIDRs */
  peerAllowedIps: string[];
}

/** What the node has (from NodeFacts). */
export interface WireGuardObserved {
  /** `wg show interfaces` */
  wireguardInterfaces: string[];
  /** per-interface facts; undefined when not probed */
  details?: WireGuardInterfaceFacts[];
  /** *.conf names in /etc/wireguard */
  configs: string[];
  /** every network interface name */
  interfaces: string[];
  /** /etc/wireguard/MESHIFACE.conf: whether it exists and whether meshctl wrote it */
  ownConfig: { exists: boolean; managedByMeshctl: boolean };
}

export type ClashKind = 'name' | 'port' | 'address' | 'route' | 'unreadable';

/** One reason a foreign interface is in the mesh's way, in words (`text`). */
export interface Clash {
  interface: string;
  kind: ClashKind;
  text: string;
}

export interface ForeignWireGuardVerdict {
  clashes: Clash[];
  /** foreign WireGuard interfaces that clash with nothing, e.g. "wg0 (port 51820, 10.66.0.0/24)" */
  harmless: string[];
}

const cidrOf = (text: string): Cidr | undefined => parseCidr(text, { strict: false });

/** The mesh's own blocks a foreign address or route must not overlap, each with its name in a message. */
function meshBlocks(mesh: MeshFootprint): Array<{ cidr: Cidr; what: string }> {
  const blocks: Array<{ cidr: Cidr; what: string }> = [];
  const network = cidrOf(mesh.network);
  if (network) blocks.push({ cidr: network, what: `the mesh network ${mesh.network}` });
  for (const allowed of mesh.peerAllowedIps) {
    const cidr = cidrOf(allowed);
    if (cidr && !(network && cidr.first >= network.first && cidr.last <= network.last))
      blocks.push({ cidr, what: `a mesh peer's AllowedIPs ${allowed}` });
  }
  return blocks;
}

/** How a foreign interface's address clashes, or undefined. The node's own overlay address is named as such. */
function addressClash(mesh: MeshFootprint, address: string): string | undefined {
  const cidr = cidrOf(address);
  if (!cidr) return undefined;
  const ip = address.split('/')[0];
  if (ip === mesh.overlayIp) return `holds this node's overlay address ${mesh.overlayIp}`;
  const hit = meshBlocks(mesh).find((b) => cidrsOverlap(b.cidr, cidr));
  return hit ? `address ${address} overlaps ${hit.what}` : undefined;
}

/** How a route (or AllowedIPs entry) via a foreign interface clashes, or undefined. */
function routeClash(mesh: MeshFootprint, destination: string, source: 'route' | 'AllowedIPs'): string | undefined {
  const cidr = cidrOf(destination);
  if (!cidr || cidr.prefix === 0) return undefined;
  const hit = meshBlocks(mesh).find((b) => cidrsOverlap(b.cidr, cidr));
  return hit ? `${source === 'route' ? 'routes' : 'has AllowedIPs'} ${destination}, overlapping ${hit.what}` : undefined;
}

/** Every clash of one foreign interface (not the mesh's name) with the mesh. */
export function clashesOf(mesh: MeshFootprint, foreign: WireGuardInterfaceFacts): Clash[] {
  const clash = (kind: ClashKind, text: string): Clash => ({ interface: foreign.name, kind, text: `${foreign.name} ${text}` });
  const found: Clash[] = [];
  if (foreign.listenPort === mesh.listenPort) found.push(clash('port', `listens on UDP ${mesh.listenPort}, the mesh's port`));
  for (const address of foreign.addresses) {
    const text = addressClash(mesh, address);
    if (text) found.push(clash('address', text));
  }
  const routeTexts = new Set<string>();
  for (const route of foreign.routes) routeTexts.add(routeClash(mesh, route, 'route') ?? '');
  for (const allowed of foreign.allowedIps) routeTexts.add(routeClash(mesh, allowed, 'AllowedIPs') ?? '');
  for (const text of routeTexts) if (text) found.push(clash('route', text));
  return found;
}

/** "wg0 (port 51820, 10.66.0.0/24)": the interface with its port and networks, for the pass note. */
export function describeForeign(foreign: WireGuardInterfaceFacts): string {
  const networks = foreign.addresses.map((a) => {
    const cidr = cidrOf(a);
    return cidr ? `${cidr.network}/${cidr.prefix}` : a;
  });
  const parts = [foreign.listenPort !== undefined ? `port ${foreign.listenPort}` : 'no port', ...new Set(networks)];
  return `${foreign.name} (${parts.join(', ')})`;
}

/** The mesh's own name taken by something meshctl did not make (kept from the first baseline: issue 9 imports it). */
function nameClashes(mesh: MeshFootprint, observed: WireGuardObserved): Clash[] {
  const iface = mesh.interface;
  if (observed.ownConfig.exists && !observed.ownConfig.managedByMeshctl)
    return [{ interface: iface, kind: 'name', text: `/etc/wireguard/${iface}.conf (not written by meshctl)` }];
  if (!observed.ownConfig.exists && observed.interfaces.includes(iface))
    return [{ interface: iface, kind: 'name', text: `interface ${iface} (no config file)` }];
  return [];
}

/**
 * Judges every WireGuard interface on a node against the mesh. A foreign interface whose facts are missing (not
 * probed, or gone between the two reads) cannot be judged and counts as a clash of kind 'unreadable': refusing is
 * the safe side. Config files in /etc/wireguard with other names are never a clash (they do nothing until started).
 */
export function judgeForeignWireGuard(mesh: MeshFootprint, observed: WireGuardObserved): ForeignWireGuardVerdict {
  const clashes = nameClashes(mesh, observed);
  const harmless: string[] = [];
  for (const name of observed.wireguardInterfaces.filter((i) => i !== mesh.interface)) {
    const facts = observed.details?.find((d) => d.name === name);
    if (!facts) {
      clashes.push({ interface: name, kind: 'unreadable', text: `interface ${name} (its port, addresses and routes could not be read)` });
      continue;
    }
    const found = clashesOf(mesh, facts);
    if (found.length > 0) clashes.push(...found);
    else harmless.push(describeForeign(facts));
  }
  return { clashes, harmless };
}
