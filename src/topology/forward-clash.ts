/**
 * Q4 item 4: a router reboot at a NAT site with forwards cut the site's nodes off from a public node for ~2.5 min.
 *
 * The mechanism (Linux netfilter, as in most home routers): a node behind the router dials a public node from its
 * listen port (flow A: node:L -> pub:P, masqueraded to publicIp:L when the router keeps source ports), while the
 * public node dials the node's forward (flow B: pub:P -> publicIp:F, DNAT to node:L). B's reply tuple is
 * node:L -> pub:P, which is A's original tuple: when A is in conntrack first, nf_nat resolves the clash by giving B's
 * packets a new source port (pub:P'), and the node's WireGuard roams the public node's endpoint to pub:P', a port
 * that lives only in the router's conntrack. After the router forgets its state (a reboot, `conntrack -F`) every
 * packet to pub:P' is lost, and the public node (no keepalive) never sends first to show the way back: only the
 * re-resolve timer (../render/reresolve.ts) sets the endpoint back, once the handshake is stale (RERESOLVE_STALE_S,
 * 180 s).
 *
 * When the forward's external port equals the node's listen port (F = L), B's first packet pub:P -> publicIp:L is
 * A's reply (a port-preserving router mapped A to publicIp:L), or A's first packet is B's reply: one flow, no clash.
 * So the inventory is warned where F != L for a node that dials a public node which dials its forward back, with the
 * fix (lab evidence: README "Router reboots and forwards").
 */
import type { Inventory, Node } from '../inventory/types.js';
import { siteOf } from '../inventory/types.js';
import { endpointFor } from './endpoints.js';
import { pathBetween, planPaths, type MeshPaths } from './paths.js';

/** A node whose forward's external port differs from its listen port while public nodes dial it and it dials them. */
export interface ForwardClash {
  node: string;
  site: string;
  publicIp: string;
  forwardedPort: number;
  listenPort: number;
  /** the public nodes that dial the forward while the node dials them (direct pairs only) */
  publicPeers: string[];
}

/**
 * The nodes of nat sites (with a publicIp, no endpoint override) whose forwardedPort differs from their listenPort
 * and that have a direct pair with a public node where both sides dial each other, in inventory order. Pure.
 */
export function forwardClashes(inventory: Inventory, paths: MeshPaths = planPaths(inventory)): ForwardClash[] {
  const publicNodes = inventory.nodes.filter((n) => siteOf(inventory, n).kind === 'public');
  const clashes: ForwardClash[] = [];
  for (const node of inventory.nodes) {
    const site = siteOf(inventory, node);
    if (site.kind !== 'nat' || site.carrier || node.forwardedPort === undefined || node.forwardedPort === node.listenPort) continue;
    if (node.endpoint !== undefined || site.publicIp === undefined) continue;
    const both = (peer: Node) =>
      pathBetween(paths, node.name, peer.name)?.kind === 'direct' &&
      endpointFor(inventory, node, peer) !== undefined &&
      endpointFor(inventory, peer, node)?.port === node.forwardedPort;
    const publicPeers = publicNodes.filter(both).map((p) => p.name);
    if (publicPeers.length === 0) continue;
    clashes.push({
      node: node.name,
      site: site.name,
      publicIp: site.publicIp,
      forwardedPort: node.forwardedPort,
      listenPort: node.listenPort,
      publicPeers,
    });
  }
  return clashes;
}

const names = (list: readonly string[]) => (list.length <= 1 ? (list[0] ?? '') : `${list.slice(0, -1).join(', ')} and ${list.at(-1)}`);

/**
 * One warning line per clash: what happens, and the fix: a forward whose external port is the node's listen port and
 * no other node's listen port in the site (measured in the lab, four sites, router:a port-preserving, 2026-12-02:
 * after `conntrack -F` in the router, a-1 with forward 41001 -> :41001 pinged p-2 again 0.8 s later, a-2 with
 * 41002 -> :51820 105 s later, when the re-resolve timer set the endpoint back).
 */
export function describeForwardClash(c: ForwardClash, inventory: Inventory): string {
  const node = inventory.nodes.find((n) => n.name === c.node)!;
  // a port-preserving router maps another node's outgoing flows from port X onto external X too: the external port
  // must be no other node's listen port (nor forward) in the site, or that node's flows take the forward's packets
  const others = inventory.nodes.filter((n) => n.site === c.site && n.name !== c.node);
  const free = (port: number) => others.every((n) => n.listenPort !== port && n.forwardedPort !== port);
  const options = [
    ...(free(c.listenPort)
      ? [`forward UDP ${c.listenPort} -> ${node.address}:${c.listenPort} and set forwardedPort: ${c.listenPort}`]
      : []),
    ...(free(c.forwardedPort)
      ? [`set ${c.node}'s listenPort: ${c.forwardedPort} and forward UDP ${c.forwardedPort} -> ${node.address}:${c.forwardedPort}`]
      : []),
  ];
  const fix = options.length
    ? `${options.join(', or ')} (the external port is the listen port, and no other node of site ${c.site} listens on it)`
    : `give ${c.node} a listenPort no other node of site ${c.site} listens on or forwards, and forward that same external port to it`;
  return (
    `${c.node}: its forward ${c.publicIp}:${c.forwardedPort} -> :${c.listenPort} has another external port than its listen port, and ${c.node} dials ${names(c.publicPeers)} while ${c.publicPeers.length === 1 ? 'it dials' : 'they dial'} that forward: ` +
    `the router's conntrack can give their packets a new source port, ${c.node} roams to it, and after a router reboot ${c.node} loses ${names(c.publicPeers)} until the re-resolve timer resets the endpoint (up to ~3.5 min); ` +
    `fix: ${fix}`
  );
}

/** The warnings validate and plan print for `inventory` (forwardClashes). */
export const forwardClashWarnings = (inventory: Inventory, paths?: MeshPaths): string[] =>
  forwardClashes(inventory, paths).map((c) => describeForwardClash(c, inventory));
