/**
 * Who can dial whom over the underlay. Pure rules, shared by validation, config rendering, the lab and checks.
 *
 * - Inside one site (nat or lan) nodes dial each other's LAN address.
 * - A public node is dialled at its address from anywhere.
 * - A node in a nat site is dialled from outside at the site's public IP and the node's forwarded port; at its
 *   `publicHost` (a DNS name, kept as a name in the config) when the site has one.
 * - Anything else (a lan site from outside, a nat node without a forward, a carrier NAT site) cannot be dialled:
 *   no Endpoint, the peer has to dial in, and WireGuard roams to the address it came from.
 * - Anywhere but inside one nat or lan site, when both nodes have a public IPv6 address (`address6`), each dials the other at
 *   [address6]:listenPort, ahead of the IPv4 rules: IPv6 has no NAT, so the listen port is reached as it is, and
 *   two NATed sites without forwards connect directly. (The site router's stateful IPv6 firewall, which most home
 *   routers have, lets the answers in once the node has sent out: keepalive stays as it is, see keepaliveFor.)
 * - A node's own `endpoint` (inventory) wins over all of these, for every peer, as WireKube's endpoint annotation.
 *
 * The port a peer dials is the one the dialler's packets arrive at: the router's forwardedPort, which it maps to
 * the node's listenPort (they may differ); never the listenPort of a node behind NAT.
 */
import type { Inventory, Node, Site } from '../inventory/types.js';
import { publicAddressOf, siteOf } from '../inventory/types.js';

export interface Endpoint {
  host: string;
  port: number;
}

/** host:port; an IPv6 literal goes in brackets, as WireGuard writes and expects it. */
export const formatEndpoint = (endpoint: Endpoint) =>
  endpoint.host.includes(':') ? `[${endpoint.host}]:${endpoint.port}` : `${endpoint.host}:${endpoint.port}`;

/** The address `from` uses to reach `to`, or undefined when `to` cannot be dialled from where `from` is. */
export function endpointFor(inventory: Inventory, from: Node, to: Node): Endpoint | undefined {
  if (to.endpoint) return { host: to.endpoint.host, port: to.endpoint.port };
  const toSite = siteOf(inventory, to);
  if (from.site === to.site && toSite.kind !== 'public') return { host: to.address, port: to.listenPort };
  const v6 = ipv6EndpointFor(from, to);
  if (v6) return v6;
  switch (toSite.kind) {
    case 'public':
      return { host: to.address, port: to.listenPort };
    case 'nat':
      return to.forwardedPort === undefined ? undefined : { host: publicAddressOf(toSite), port: to.forwardedPort };
    case 'lan':
      return undefined;
  }
}

/**
 * [to.address6]:to.listenPort when both nodes have a public IPv6 address, else undefined. Inside one nat or lan site
 * the LAN address is used instead (endpointFor checks that first): the LAN is the shorter way.
 */
export function ipv6EndpointFor(from: Node, to: Node): Endpoint | undefined {
  return from.address6 !== undefined && to.address6 !== undefined ? { host: to.address6, port: to.listenPort } : undefined;
}

/** True when `from` dials `to` over IPv6 (the endpoint endpointFor gives is an IPv6 literal). */
export const dialsOverIpv6 = (inventory: Inventory, from: Node, to: Node): boolean =>
  endpointFor(inventory, from, to)?.host.includes(':') === true;

/** Nodes behind NAT (nat or lan sites) keep their mapping open towards peers outside their site. */
export function isBehindNat(site: Site): boolean {
  return site.kind !== 'public';
}

/**
 * PersistentKeepalive from `from` towards `to`, or undefined for none. The same over IPv6: a node in a nat or lan
 * site sits behind its router's stateful IPv6 firewall (RFC 6092's recommended default, what most home routers do:
 * inbound new flows dropped, answers to outbound ones let in), whose UDP pinhole closes after a few minutes of silence
 * like a NAT mapping; the keepalive keeps it open, so peers can keep reaching the node. A public node keeps none.
 */
export function keepaliveFor(inventory: Inventory, from: Node, to: Node): number | undefined {
  const seconds = inventory.mesh.persistentKeepalive;
  if (seconds <= 0 || from.site === to.site) return undefined;
  return isBehindNat(siteOf(inventory, from)) ? seconds : undefined;
}

/** A pair can form a session when at least one side can dial the other. */
export function pairCanConnect(inventory: Inventory, a: Node, b: Node): boolean {
  return endpointFor(inventory, a, b) !== undefined || endpointFor(inventory, b, a) !== undefined;
}

/**
 * Who speaks first in a pair. When both ends of a fresh pair send a handshake initiation at the same moment, each
 * answers the other's and drops its own, and both wait REKEY_TIMEOUT (5 s) to retry; in the lab that happened on a
 * LAN pair twice in a row. So the ping matrix first lets one side of every pair dial alone: the side that can
 * dial, preferring the NATed one (it keeps the mapping open anyway), then inventory order.
 */
export function firstContactDialer(inventory: Inventory, a: Node, b: Node): Node | undefined {
  const aDials = endpointFor(inventory, a, b) !== undefined;
  const bDials = endpointFor(inventory, b, a) !== undefined;
  if (aDials !== bDials) return aDials ? a : b;
  if (!aDials) return undefined;
  if (keepaliveFor(inventory, b, a) !== undefined && keepaliveFor(inventory, a, b) === undefined) return b;
  return a;
}

/** Every pair once, as { from: dialer, to: the other }, in inventory order. */
export function firstContactPairs(inventory: Inventory): Array<{ from: string; to: string }> {
  const pairs: Array<{ from: string; to: string }> = [];
  inventory.nodes.forEach((a, i) => {
    for (const b of inventory.nodes.slice(i + 1)) {
      const dialer = firstContactDialer(inventory, a, b);
      if (dialer) pairs.push({ from: dialer.name, to: dialer === a ? b.name : a.name });
    }
  });
  return pairs;
}
