/**
 * Where a node's dialling peers' datagrams come from, as the node (and its firewall) sees them: the questions
 * ./verdict.ts is asked for a node. Pure rules over the inventory (../topology/endpoints.ts decides who dials whom).
 */
import type { Inventory, Node } from '../inventory/types.js';
import { siteOf } from '../inventory/types.js';
import { dialsOverIpv6, endpointFor } from '../topology/endpoints.js';

/**
 * The source address `from`'s datagrams carry when they reach `to`: its own address inside one site or from a public
 * site, its site's public IP from behind a NAT router (masquerade); undefined when not known (a lan site's way out).
 */
export function apparentSource(inventory: Inventory, from: Node, to: Node): string | undefined {
  if (dialsOverIpv6(inventory, from, to) && from.address6 !== undefined) return from.address6; // IPv6: no NAT on the way
  if (from.site === to.site) return from.address;
  const site = siteOf(inventory, from);
  switch (site.kind) {
    case 'public':
      return from.address;
    case 'nat':
      // a site named by publicHost has a dynamic address: the inventory's publicIp may be out of date
      return site.publicHost ? undefined : site.publicIp;
    case 'lan':
      return undefined;
  }
}

/**
 * The nodes that dial `to` (endpointFor) with the source each arrives from (undefined: not known); `ipv6` marks
 * those that dial it over IPv6 (their datagrams pass the node's IPv6 ruleset, not the IPv4 one).
 */
export function dialersOf(inventory: Inventory, to: Node): Array<{ node: Node; source: string | undefined; ipv6: boolean }> {
  return inventory.nodes
    .filter((from) => from.name !== to.name && endpointFor(inventory, from, to) !== undefined)
    .map((node) => ({ node, source: apparentSource(inventory, node, to), ipv6: dialsOverIpv6(inventory, node, to) }));
}
