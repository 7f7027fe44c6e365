/**
 * Q4 item 3: a NAT site's public address moved under a running mesh, and the inventory still has the old one. Peers
 * that dial the site's forwards dial `nat.publicIp`, which no longer reaches it; the site's own nodes keep their
 * sessions to the public nodes alive from their end (keepalive), and WireGuard roams each such peer's endpoint to
 * where the authenticated packets now come from: the new address. So the evidence is already in every run's facts:
 * the live endpoints (`wg show IFACE dump`) that nodes outside the site hold for the site's nodes.
 *
 * A sighting is taken only where it says where the node's packets come from:
 * - the observer is outside the site (inside it, endpoints are LAN addresses), and its latest handshake with the node
 *   is at most REJECT_AFTER_TIME (180 s, WireGuard's paper section 6.1) old: a session that can still carry packets;
 * - the live endpoint is not the one the observer's wg-quick file dials (that one is set by the file, not learned
 *   from the node's packets), or the file dials none (learned only); except the file's own endpoint at the site's
 *   `publicIp` (its forward): WireGuard sets a peer's endpoint to the source of every authenticated packet (handshake
 *   or data), so a fresh handshake with the endpoint still there shows the node's packets do come from the
 *   inventory's address. That is a sighting at the inventory's address (RV4 F2.1: with it left out, one laptop away
 *   was the only sighting of its site, "agreed", and the site was taken as moved), unless another observer sees the
 *   same node elsewhere: that handshake may predate the move (up to 180 s), and the node's packets now come from
 *   elsewhere;
 * - its host is an IPv4 address outside the site's LAN and not the node's own address: an IPv6 endpoint says nothing
 *   about the IPv4 `publicIp` (a dual-stack node may be seen over both), a LAN address is a path inside a routed
 *   network.
 * Only sites of kind `nat` with a `publicIp` and without a `publicHost` are judged: a site named by DNS is dialled by
 * name and followed by the re-resolve timer (../render/reresolve.ts), and a node with its own `endpoint` in the
 * inventory is dialled there, not at the site's address. A carrier-NAT site is judged, but its address is dialled by
 * nobody (no forward can reach it), so callers only warn for it, as NAT discovery does for any site without forwards,
 * and `up` does not run its probes for it (RV4 F2.4: a carrier's pool may hand out another address at any run).
 *
 * Judged per site, not per node (RV4 F2.1, 2026-12-02): a node that roamed through another NAT (a laptop away from
 * home, a node leaving by a second uplink) is seen at another address too, and NAT discovery sent from it finds that
 * address. So:
 * - a site is "moved" only when its sightings read one other address and none reads the inventory's (`agree`);
 * - a site with some node seen at the inventory's address is not moved; its nodes seen elsewhere are roamed nodes
 *   (roamedSightings, describeRoamed): `up` does not run its probes for them, and warns naming each;
 * - when the probes ran, a node whose NAT discovery finds another address while another node of its site finds the
 *   inventory's is a roamed node too (judgeRoamedNode): a warning naming it, never the advice to change
 *   `nat.publicIp` (which would move every pair that dials the site's forwards to an address without them).
 * `up` does not STOP on the sightings alone but runs its underlay probes (NAT discovery from the node's listen port
 * is the judge: ../engine/underlay-change.ts), and debug names a moved address as the cause only when they agree.
 */
import type { Inventory, Node, Site } from '../inventory/types.js';
import { isIpv4, parseCidr, cidrContains } from '../net/ipv4.js';
import type { LivePeer } from '../render/wgdump.js';
import { splitEndpoint } from '../render/drift.js';
import { REJECT_AFTER_TIME_S } from '../remote/wireguard.js';

/** What one node holds: its live peers, its clock, and the [Peer] entries of its wg-quick file (key-less). */
export interface EndpointView {
  node: string;
  /** the node's clock, Unix seconds, when `peers` were read; without it no handshake age can be judged */
  now?: number;
  peers: readonly LivePeer[];
  /** the wg-quick file's peers (PublicKey, AllowedIPs with the peer's own /32 first, Endpoint); absent: no file */
  configPeers?: readonly { publicKey?: string; allowedIps: readonly string[]; endpoint?: string }[];
}

/** One live endpoint that a node outside the site holds for one of the site's nodes. */
export interface AddressSighting {
  /** who holds it */
  observer: string;
  /** the site's node it is for */
  node: string;
  /** `ip:port` as `wg show` prints it */
  endpoint: string;
  address: string;
  /** seconds since the latest handshake, by the observer's clock */
  age: number;
}

/** A NAT site seen at a public address other than its `nat.publicIp`. */
export interface MovedAddress {
  site: string;
  /** the inventory's nat.publicIp */
  inventoryIp: string;
  /** the other address most sightings read (the first in observer order on a tie) */
  seen: string;
  /** sightings of `seen` */
  sightings: AddressSighting[];
  /** sightings at any other address, the inventory's included: with none, every sighting agrees on `seen` */
  otherSightings: AddressSighting[];
  /** every sighting of the site reads `seen` */
  agree: boolean;
  /** some node of the site has a forwardedPort: peers dial the inventory's address (a wrong one breaks pairs) */
  forwarded: boolean;
}

/** The sites whose public address can be judged from live endpoints (see the module doc), by name. */
export function judgedSites(inventory: Inventory): Map<string, Extract<Site, { kind: 'nat' }> & { publicIp: string }> {
  const sites = new Map<string, Extract<Site, { kind: 'nat' }> & { publicIp: string }>();
  for (const site of inventory.sites)
    if (site.kind === 'nat' && site.publicIp !== undefined && site.publicHost === undefined)
      sites.set(site.name, site as Extract<Site, { kind: 'nat' }> & { publicIp: string });
  return sites;
}

/**
 * Every NAT site that nodes outside it see at an address other than its nat.publicIp, by their live endpoints with a
 * fresh handshake (the module doc says which endpoints count), in inventory order; [] when none. `views`: what each
 * node holds (a node absent from them observes nothing). Pure; never throws.
 */
export function movedPublicAddresses(inventory: Inventory, views: readonly EndpointView[]): MovedAddress[] {
  const sites = judgedSites(inventory);
  if (sites.size === 0) return [];
  const byName = new Map(inventory.nodes.map((n) => [n.name, n]));
  const byOverlay = new Map(inventory.nodes.map((n) => [`${n.overlayIp}/32`, n]));
  const sightings = new Map<string, AddressSighting[]>();
  for (const view of views) {
    const observer = byName.get(view.node);
    if (!observer || view.now === undefined || !view.configPeers) continue;
    // the file's peers that can be sightings, by key (issue 10: no map of every live peer on every node)
    const candidates = new Map<string, NonNullable<EndpointView['configPeers']>[number]>();
    for (const entry of view.configPeers) if (entry.publicKey !== undefined) candidates.set(entry.publicKey, entry);
    for (const peer of view.peers) {
      const entry = candidates.get(peer.publicKey);
      if (!entry || !peer.endpoint || peer.latestHandshake === undefined) continue;
      const age = view.now - peer.latestHandshake;
      if (age > REJECT_AFTER_TIME_S) continue;
      const first = entry.allowedIps[0];
      const node = first === undefined ? undefined : byOverlay.get(first);
      if (!node || node.site === observer.site || node.endpoint !== undefined) continue;
      const site = sites.get(node.site);
      if (!site) continue;
      const address = splitEndpoint(peer.endpoint)?.host;
      // the file's own endpoint counts only at the site's publicIp (the module doc: evidence the address still works)
      if (peer.endpoint === entry.endpoint && address !== site.publicIp) continue;
      if (address === undefined || !isIpv4(address) || address === node.address || inLan(site.lan, address)) continue;
      const list = sightings.get(site.name) ?? [];
      list.push({ observer: observer.name, node: node.name, endpoint: peer.endpoint, address, age: Math.max(0, age) });
      sightings.set(site.name, list);
    }
  }
  const moved: MovedAddress[] = [];
  for (const site of sites.values()) {
    // a node seen elsewhere too has left the inventory's address: its sightings there are from before (a handshake
    // up to REJECT_AFTER_TIME old, made before the site moved or the laptop left) and are not evidence for the site
    const all = sightings.get(site.name) ?? [];
    const elsewhere = new Set(all.filter((s) => s.address !== site.publicIp).map((s) => s.node));
    const seen = all.filter((s) => s.address !== site.publicIp || !elsewhere.has(s.node));
    const counts = new Map<string, number>();
    for (const s of seen) if (s.address !== site.publicIp) counts.set(s.address, (counts.get(s.address) ?? 0) + 1);
    if (counts.size === 0) continue;
    const top = [...counts].reduce((best, next) => (next[1] > best[1] ? next : best))[0];
    const at = seen.filter((s) => s.address === top);
    const other = seen.filter((s) => s.address !== top);
    moved.push({
      site: site.name,
      inventoryIp: site.publicIp,
      seen: top,
      sightings: at,
      otherSightings: other,
      agree: other.length === 0,
      forwarded: inventory.nodes.some((n: Node) => n.site === site.name && n.forwardedPort !== undefined),
    });
  }
  return moved;
}

/**
 * The sightings of `moved`'s site at the inventory's address (its `publicIp`): with any, the site has not moved, and
 * its nodes seen elsewhere are roamed nodes (the module doc).
 */
export const sightingsAtInventoryAddress = (moved: MovedAddress): AddressSighting[] =>
  moved.otherSightings.filter((s) => s.address === moved.inventoryIp);

/**
 * The sightings of nodes of `moved`'s site seen at another address while some node of the site is seen at the
 * inventory's (roamed nodes: a laptop away, a second uplink), by node name; empty when none is seen at the inventory's
 * address (then the site may have moved: the probes judge it).
 */
export function roamedSightings(moved: MovedAddress): Map<string, AddressSighting[]> {
  const roamed = new Map<string, AddressSighting[]>();
  if (sightingsAtInventoryAddress(moved).length === 0) return roamed;
  // (movedPublicAddresses keeps no sighting at the inventory's address of a node seen elsewhere)
  for (const s of [...moved.sightings, ...moved.otherSightings])
    if (s.address !== moved.inventoryIp) roamed.set(s.node, [...(roamed.get(s.node) ?? []), s]);
  return roamed;
}

/** The words every roamed node's warning holds (describeRoamed), by which isRoamedWarning knows one. */
export const ROAMED_CLAUSE = 'away from the site (a laptop) or leaving by a second uplink';

/**
 * One node of a site that is not moved, seen (or found by NAT discovery) elsewhere: `a-1 is seen at 198.18.7.7, not
 * at site a's 203.0.113.10 where p-1 sees a-2 and a-3 (handshakes 10 s old): away from the site (a laptop) or leaving
 * by a second uplink; its own sessions follow it (WireGuard roams), but a peer that dials it at its forward reaches it
 * only once it is back; nat.publicIp stays`. `where`: the other address (and how it was seen); `home`: who is at the
 * inventory's address (a clause).
 */
export const describeRoamed = (node: string, site: string, inventoryIp: string, where: string, home: string): string =>
  `${node} ${where}, not at site ${site}'s ${inventoryIp} where ${home}: ${ROAMED_CLAUSE}; its own sessions follow it (WireGuard roams), but a peer that dials it at its forward reaches it only once it is back; nat.publicIp stays`;

/**
 * Whether a check's message (the baseline's nat-mapping or forward-reaches-node, ../engine/registry.ts) names a roamed
 * node (describeRoamed): what `plan` shows of the baseline gate, which it does not print otherwise (Q6/Q7: only `up`'s
 * gate showed it).
 */
export const isRoamedWarning = (check: { status: string; message: string }): boolean =>
  check.status === 'warn' && check.message.includes(ROAMED_CLAUSE);

/**
 * The roamed nodes of the sites in `moved` (roamedSightings), node name -> a warning for it (describeRoamed).
 */
export function roamedWarnings(moved: readonly MovedAddress[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of moved)
    for (const [node, list] of roamedSightings(m))
      out.set(
        node,
        describeRoamed(
          node,
          m.site,
          m.inventoryIp,
          `is seen at ${[...new Set(list.map((s) => s.address))].join(', ')} (${describeSightings(list)})`,
          describeWitnesses(sightingsAtInventoryAddress(m)),
        ),
      );
  return out;
}

/** What judgeRoamedNode needs of the run's NAT discovery, for one node of a `nat` site with a publicIp. */
export interface SiteDiscovery {
  node: string;
  site: string;
  /** the site's nat.publicIp */
  inventoryIp: string;
  /** the address the node's own NAT discovery found (undefined: none, or the observers disagree) */
  found?: string;
  /** the site's other nodes whose NAT discovery found `inventoryIp` */
  atInventoryAddress: readonly string[];
}

/**
 * A node's `nat-mapping` fail (its NAT discovery found another public address) judged with its site (RV4 F2.1): when
 * another node of the site found the inventory's address, the site has not moved and this node is a roamed one: a
 * warning naming it (describeRoamed), not a STOP advising a new nat.publicIp. Any other verdict is returned as it is.
 */
export function judgeRoamedNode<V extends Verdict>(verdict: V, discovery: SiteDiscovery | undefined): V {
  if (!discovery || verdict.status !== 'fail' || discovery.found === undefined || discovery.found === discovery.inventoryIp) return verdict;
  if (discovery.atInventoryAddress.length === 0) return verdict;
  const home = `${discovery.atInventoryAddress.join(', ')} ${discovery.atInventoryAddress.length === 1 ? 'finds' : 'find'} it`;
  return {
    ...verdict,
    status: 'warn',
    message: `site ${discovery.site}: ${describeRoamed(discovery.node, discovery.site, discovery.inventoryIp, `leaves through ${discovery.found} (NAT discovery)`, home)}`,
  };
}

const inLan = (lan: string, address: string): boolean => {
  const cidr = parseCidr(lan, { strict: false });
  return cidr !== undefined && cidrContains(cidr, address);
};

/** How many sightings a description names before it says "and N more". */
const NAMED = 3;

/**
 * Who sees the site where, in one clause: `p-1 sees a-1 at 203.0.113.99:51820 (handshake 12 s ago); p-2 sees a-2 at
 * 203.0.113.99:51820 (handshake 40 s ago); and 2 more`.
 */
export function describeSightings(sightings: readonly AddressSighting[]): string {
  const named = sightings
    .slice(0, NAMED)
    .map((s) => `${s.observer} sees ${s.node} at ${s.endpoint} (handshake ${s.age} s ago)`)
    .join('; ');
  return sightings.length > NAMED ? `${named}; and ${sightings.length - NAMED} more` : named;
}

const names = (list: readonly string[]): string => {
  const unique = [...new Set(list)];
  return unique.length <= 1 ? (unique[0] ?? '') : `${unique.slice(0, -1).join(', ')} and ${unique.at(-1)}`;
};

/**
 * The sightings in a short clause: who sees which nodes, and how fresh: `p-1 and p-2 see a-1, a-2 and a-3 (handshakes
 * 5-40 s old)`. describeSightings lists each one.
 */
export function describeWitnesses(sightings: readonly AddressSighting[]): string {
  const ages = sightings.map((s) => s.age);
  const low = Math.min(...ages);
  const high = Math.max(...ages);
  const fresh = sightings.length === 1 ? `handshake ${low} s old` : `handshakes ${low === high ? low : `${low}-${high}`} s old`;
  const observers = new Set(sightings.map((s) => s.observer));
  return `${names(sightings.map((s) => s.observer))} ${observers.size === 1 ? 'sees' : 'see'} ${names(sightings.map((s) => s.node))} (${fresh})`;
}

/**
 * The sightings that are not at `moved.seen`, per address: `ctb-edge-1 sees ms-1 and wk-2 (handshakes 20-21 s old) at
 * 203.0.113.10 (the inventory's)`; '' when every sighting agrees.
 */
export function describeOtherSightings(moved: Pick<MovedAddress, 'otherSightings' | 'inventoryIp'>): string {
  const byAddress = new Map<string, AddressSighting[]>();
  for (const s of moved.otherSightings) byAddress.set(s.address, [...(byAddress.get(s.address) ?? []), s]);
  return [...byAddress]
    .map(([address, list]) => `${describeWitnesses(list)} at ${address}${address === moved.inventoryIp ? " (the inventory's)" : ''}`)
    .join('; ');
}

/** The inventory change that follows the site to `moved.seen`, or to a dynamic-DNS name (README: nat.publicHost). */
export const movedAddressFix = (moved: Pick<MovedAddress, 'site' | 'seen'>): string =>
  `if site ${moved.site}'s public address changed, set sites.${moved.site}.nat.publicIp: ${moved.seen} (an address that keeps changing: nat.publicHost, a dynamic-DNS name) and run meshctl up again`;

/**
 * One sentence for an operator: the site, the address the inventory has, the one the nodes see, who saw it and the
 * fix; e.g. `site a's public address seems to have moved: the inventory says nat.publicIp 203.0.113.10, p-1 and p-2
 * see a-1 and a-2 (handshakes 5-40 s old) at 203.0.113.99; fix: ...`.
 */
export function describeMovedAddress(moved: MovedAddress): string {
  const mixed = moved.agree ? '' : `, while ${describeOtherSightings(moved)}`;
  return `site ${moved.site}'s public address seems to have moved: the inventory says nat.publicIp ${moved.inventoryIp}, ${describeWitnesses(moved.sightings)} at ${moved.seen}${mixed}; fix: ${movedAddressFix(moved)}`;
}

/** The part of a check result judgeMovedAddress reads and returns (../engine/types.ts CheckResult). */
export interface Verdict {
  id: string;
  status: 'pass' | 'warn' | 'fail';
  message: string;
  evidence?: string[];
}

/**
 * A node's `nat-mapping` verdict (NAT discovery, ../checks/nat-discovery.ts) with the live endpoints' sightings of its
 * site (`moved`, absent: the verdict as it is). NAT discovery is the judge, as it sends from the node's own listen
 * port: its fail (another public address) gets who else sees it there; its pass (the inventory's address: the
 * sightings were a roam through another path, e.g. a second uplink) stays a pass with the sightings as evidence; a
 * verdict it could not give (a warning: no public node, no perl, no datagram back) falls back to the sightings: a
 * fail where peers dial the site's forwards and every sighting agrees, else a warning.
 */
export function judgeMovedAddress<V extends Verdict>(verdict: V, moved: MovedAddress | undefined): V {
  if (!moved) return verdict;
  const line = `live endpoints: ${describeSightings(moved.sightings)}${moved.agree ? '' : `; ${describeSightings(moved.otherSightings)}`}`;
  const evidence = [...(verdict.evidence ?? []), line];
  if (verdict.status === 'pass')
    return {
      ...verdict,
      evidence: [
        ...evidence,
        `the probe found the inventory's address: the live endpoints at ${moved.seen} are a roam through another path`,
      ],
    };
  if (verdict.status === 'fail')
    return {
      ...verdict,
      message: `${verdict.message}; on the running mesh ${describeWitnesses(moved.sightings)} at ${moved.seen}`,
      evidence,
    };
  return {
    ...verdict,
    status: moved.forwarded && moved.agree ? 'fail' : 'warn',
    message: `${describeMovedAddress(moved)} (NAT discovery could not tell: ${verdict.message})`,
    evidence,
  };
}

/** What movedFromChecklists reads of one node's verify/debug checklist (../checks/probes.ts NodeChecklist). */
export interface ChecklistView {
  now?: number;
  peers: readonly LivePeer[];
  /** the parsed wg-quick file; absent: the node has none (it observes nothing) */
  config?: { peers: EndpointView['configPeers'] & object };
}

/**
 * movedPublicAddresses over verify's or debug's checklists (node name -> checklist of a reached node): the same
 * sightings as `up` reads from its facts. For verify (a cold start to the old address can name the move) and debug.
 */
export function movedFromChecklists(inventory: Inventory, checklists: ReadonlyMap<string, ChecklistView>): MovedAddress[] {
  const views: EndpointView[] = [...checklists].flatMap(([node, cl]) =>
    cl.config ? [{ node, ...(cl.now !== undefined ? { now: cl.now } : {}), peers: cl.peers, configPeers: cl.config.peers }] : [],
  );
  return movedPublicAddresses(inventory, views);
}
