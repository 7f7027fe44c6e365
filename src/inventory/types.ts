/**
 * The validated, normalised inventory every other part of meshctl consumes.
 * The YAML file format (documented in README and schema/inventory.schema.json) is loaded and checked by
 * src/inventory/load.ts; nothing downstream ever sees raw YAML or needs to re-validate.
 */

/** rp_filter mode: 0 off, 1 strict, 2 loose (the design wants loose). */
export type RpFilterMode = 0 | 1 | 2;

export interface MeshSettings {
  /** WireGuard interface name, e.g. wg0 (also names /etc/wireguard/<iface>.conf and wg-quick@<iface>) */
  interface: string;
  /** overlay network in CIDR form, e.g. 172.27.15.0/24; each node gets one /32 inside it */
  network: string;
  /** default UDP listen port for every node */
  listenPort: number;
  mtu: number;
  /** PersistentKeepalive seconds, used only from a NATed node towards peers outside its site; 0 disables */
  persistentKeepalive: number;
  rpFilter: RpFilterMode;
  /** pod/service CIDRs (k3s, rke2, ...) that the overlay must not overlap */
  reservedCidrs: string[];
  /** relay policy for every node that sets none itself (absent: auto); see src/topology/paths.ts */
  relay?: RelaySetting;
  /**
   * Pairs relayed because their direct handshake failed at an `up`'s gate (relay: auto), as `pairKey` strings; kept
   * in the local state (src/state/record.ts inventoryWithFallbacks), never written in the inventory file. A later up
   * probes their direct path first and drops the pairs whose path works (src/engine/fallback.ts).
   */
  fallbackRelays?: readonly string[];
}

/**
 * Whether and through whom a pair with no direct path is relayed (src/topology/paths.ts):
 * - auto: relay only the pairs with no direct path, through a public node picked by meshctl;
 * - always: relay every pair of the node that does not include a public node, direct path or not;
 * - never: never relay the node's pairs (nor, on a public node, relay others'); an inventory where one of the
 *   node's pairs has no direct path is refused;
 * - { via }: as auto, through the named public node.
 */
export type RelaySetting = 'auto' | 'always' | 'never' | { via: string };

/**
 * A site is one underlay network segment.
 * - nat: a LAN behind a router that masquerades it and forwards UDP ports from its public IP to nodes;
 * - public: nodes hold public addresses reachable from everywhere;
 * - lan: a private LAN with no way in from outside (its nodes can still dial out to public peers).
 */
export type Site =
  | {
      name: string;
      kind: 'nat';
      lan: string;
      router: string;
      /**
       * The router's public IPv4 address; optional when `publicHost` names the site instead (a dynamic address).
       * Readers that need what peers dial use `publicAddressOf(site)`.
       */
      publicIp?: string;
      /**
       * A DNS name of the router's public address (dynamic DNS, `home.example.net`): peers dial it by name, and a
       * timer on each node that dials it re-resolves it (src/render/reresolve.ts). Wins over publicIp for dialling.
       */
      publicHost?: string;
      /**
       * true: the ISP's carrier-grade NAT (RFC 6598 shared space between it and the site's router) sits in front of
       * the router, two NATs deep; publicIp is the carrier's address and no port can be forwarded to the site.
       */
      carrier?: boolean;
      lab?: SiteLabOptions;
    }
  | { name: string; kind: 'public' }
  | { name: string; kind: 'lan'; lan: string; router?: string; lab?: SiteLabOptions };

/**
 * How the mapping of a NAT router behaves, in RFC 4787 terms: `symmetric` gives each new destination a new random
 * public port (address-and-port-dependent mapping); `port-preserving` keeps the node's source port for every
 * destination when it is free (endpoint-independent mapping, as most home routers do).
 */
export type NatMapping = 'symmetric' | 'port-preserving';

/** Settings only `meshctl lab` reads (how it builds a site's routers); up, plan and verify ignore them. */
export interface SiteLabOptions {
  /** the router's mapping behaviour (the carrier's too, for a carrier NAT site); the lab's default is symmetric */
  nat?: NatMapping;
}

/** A node's own endpoint (`host:port`, host a DNS name, IPv4 or IPv6 address): every peer dials it there. */
export interface EndpointOverride {
  host: string;
  port: number;
}

export type Become = 'none' | 'sudo';

export interface SshTarget {
  /** host name, address or ~/.ssh/config alias; defaults to the node's address */
  host: string;
  port: number;
  user: string;
  identityFile?: string;
  /** 'sudo' runs every command through `sudo -n`; 'none' needs user root */
  become: Become;
}

export interface Node {
  name: string;
  site: string;
  /** underlay address: the LAN address in a nat/lan site, the public address in a public site */
  address: string;
  /**
   * public IPv6 underlay address (global unicast, RFC 5952 text as `wg show` prints it), any site kind: peers in
   * other sites that have one too dial [address6]:listenPort, ahead of IPv4 forwards (../topology/endpoints.ts)
   */
  address6?: string;
  /** overlay address (no prefix); the node's wg address is overlayIp/32 */
  overlayIp: string;
  /** UDP port WireGuard listens on inside the node */
  listenPort: number;
  /** nat sites only: the port on the site's public IP that the router forwards to address:listenPort */
  forwardedPort?: number;
  /** stated by the inventory: wins over every computed endpoint, for every peer (WireKube's endpoint annotation) */
  endpoint?: EndpointOverride;
  /** this node's relay policy; wins over mesh.relay for the node's pairs (absent: mesh.relay, then auto) */
  relay?: RelaySetting;
  ssh: SshTarget;
}

export interface Inventory {
  /** path of the file it came from, as given by the user */
  source: string;
  mesh: MeshSettings;
  sites: Site[];
  nodes: Node[];
}

/**
 * Where peers dial a nat site: its `publicHost` (a DNS name) when given, else its `publicIp`. Display and
 * endpoints use it; an address comparison must resolve a name on a node first (never on the operator's host).
 */
export const publicAddressOf = (site: Extract<Site, { kind: 'nat' }>): string => site.publicHost ?? site.publicIp ?? '';

/** firstByName's maps, one per array (weak: an inventory dropped takes its maps with it) */
const byNameOf = new WeakMap<readonly { name: string }[], Map<string, { name: string }>>();

/**
 * The first item named `name` in `items`, as `items.find((x) => x.name === name)` would find it, but by a map
 * built once per array: siteOf and the renderer's name lookups run for every pair of nodes, and a scan there made
 * N configs O(N^3) (issue 10). Arrays are treated as values; one grown after its map was built (tests build
 * inventories by hand) is re-indexed on a miss, so a name never there costs a scan, as find did.
 */
export function firstByName<T extends { name: string }>(items: readonly T[], name: string): T | undefined {
  const hit = byNameOf.get(items)?.get(name);
  if (hit) return hit as T;
  const map = new Map<string, T>();
  for (const item of items) if (!map.has(item.name)) map.set(item.name, item);
  byNameOf.set(items, map);
  return map.get(name);
}

/** The site a node names (by firstByName: O(1) per call); throws for an unknown site, which load() rules out. */
export const siteOf = (inventory: Inventory, node: Node): Site => {
  const site = firstByName(inventory.sites, node.site);
  if (!site) throw new Error(`node ${node.name} names unknown site ${node.site}`);
  return site;
};

/** One unordered pair as a string: the two node names in code-unit order, a space between ("a-1 p-2"). */
export const pairKey = (x: string, y: string): string => (x < y ? `${x} ${y}` : `${y} ${x}`);
