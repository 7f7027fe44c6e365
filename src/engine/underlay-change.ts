/**
 * Finding 19 (a new user's test): does the inventory change the underlay a running mesh uses? The baseline's underlay
 * probes (../checks/underlay-probe.ts: the port-forward probe and NAT discovery) are skipped when every node already
 * runs its interface, its handshakes being the evidence (./registry.ts). That evidence is about the endpoints the
 * nodes dial NOW: when the inventory moves a forward (a node's forwardedPort, the site's public address, a node's
 * address or listen port), `up` rewrites the configs to endpoints nobody has tried, the pings still pass (the NATed
 * side keeps its session alive from its own end, and WireGuard roams to it), and only verify's cold-start check finds
 * the new forward broken. So the probes are skipped only when the underlay the nodes hold is the one the inventory
 * designs.
 *
 * "Changed" is read from what the nodes hold, never from the local state (it may be lost, or from another machine):
 * - each node's wg-quick file (the facts' `config.text`, secret lines already removed on the node): for every [Peer]
 *   whose first AllowedIPs entry is an inventory node's overlay /32 (meshctl writes the peer's own /32 first), the
 *   Endpoint line against the endpoint the inventory designs for that pair (../topology/endpoints.ts endpointFor,
 *   formatted as the renderer writes it);
 * - each node's listen port (the live interface's, else its file's) against the inventory's: a NAT router's forward
 *   maps to it;
 * - a node that runs the interface without a wg-quick file of its own to compare (none, or none readable): its
 *   endpoints are unknown, so the probes run.
 * Peers the file lacks (a node being added) are not compared here: such a node has no live interface yet, and the
 * probes run for that reason already.
 */
import type { NodeFacts } from '../facts/node-facts.js';
import type { Inventory, Node } from '../inventory/types.js';
import { parseWgQuickConfig } from '../render/wgquick.js';
import { endpointFor, formatEndpoint } from '../topology/endpoints.js';
import {
  describeOtherSightings,
  describeWitnesses,
  type EndpointView,
  judgedSites,
  type MovedAddress,
  movedPublicAddresses,
} from '../topology/moved-address.js';

/** The first evidence line of a probe check when the probes ran on a mesh that runs, before the reason (./registry.ts). */
export const UNDERLAY_CHANGED = 'probed because the inventory changes the underlay the running mesh dials: ';

/** What a probe check's message ends with when the probes ran on a mesh that runs (./registry.ts). */
export const UNDERLAY_CHANGED_NOTE = ' (probed: the inventory changes what the running mesh dials)';

/**
 * The first evidence line of a probe check when the probes ran on a running mesh whose inventory is unchanged but whose
 * live endpoints see a NAT site at another public address (Q4 item 3: movedAddresses), before who saw it.
 */
export const ADDRESS_MOVED =
  "probed because the running mesh's live endpoints see a site at another public address than its nat.publicIp: ";

/** What a probe check's message ends with when the probes ran for that reason (ADDRESS_MOVED). */
export const ADDRESS_MOVED_NOTE = ' (probed: the running mesh sees a site at another public address)';

/** The plan's heading for the probes run for that reason (../ui/plan-view.ts renderUnderlayNote). */
export const ADDRESS_MOVED_HEADING = 'the running mesh sees a site at another public address than the inventory';

/**
 * What a probe check carries, as data, when the probes ran on a mesh that runs (./registry.ts): `why` (what the
 * inventory changes: describeUnderlayChanges, or who sees which site where: describeMovedAddresses) and the check's
 * own `message` before UNDERLAY_CHANGED_NOTE (or ADDRESS_MOVED_NOTE) was added to it; `heading`, when set, is why
 * the probes ran in the plan's words (else: the inventory changes what the running mesh dials). The plan's underlay
 * note (../ui/plan-view.ts) is drawn from these, never parsed back out of the text.
 */
export interface UnderlayChangedNote {
  why: string;
  message: string;
  heading?: string;
}

/** How many differences a reason names before it says "and N more". */
const NAMED = 3;

/**
 * What the inventory changes in the underlay that `nodes` (the run's, with their facts) run now: one line per
 * difference, in inventory order (e.g. `ctb-edge-1 dials ms-1 at 203.0.113.10:51821, the inventory says
 * 203.0.113.10:51823`); empty when every node's endpoints and listen port are as the inventory designs. Nodes
 * without a live interface are not compared (the probes run for them anyway). Pure; never throws.
 */
export function underlayChanges(inventory: Inventory, nodes: readonly { node: Node; values: { facts: NodeFacts } }[]): string[] {
  return reviewUnderlay(inventory, nodes).changes;
}

/**
 * underlayChanges and, from the same single parse of each node's file (issue 10: at 1,000 nodes one parse of every
 * file is seconds of CPU), the endpoint views movedAddresses reads (only the [Peer]s that can be sightings: nodes of
 * judged NAT sites outside the node's own site). Pure; never throws.
 */
export function reviewUnderlay(
  inventory: Inventory,
  nodes: readonly { node: Node; values: { facts: NodeFacts } }[],
): { changes: string[]; views: EndpointView[] } {
  const byOverlay = new Map(inventory.nodes.map((n) => [`${n.overlayIp}/32`, n]));
  const judged = judgedSites(inventory);
  const file = `${inventory.mesh.interface}.conf`;
  const changes: string[] = [];
  const views: EndpointView[] = [];
  for (const { node, values } of nodes) {
    const { facts } = values;
    if (facts.live === undefined) continue;
    if (!facts.config.exists || facts.config.text === undefined) {
      changes.push(`${node.name} runs ${inventory.mesh.interface} without a ${file} to compare its endpoints with`);
      continue;
    }
    const parsed = parseWgQuickConfig(facts.config.text);
    if (judged.size > 0)
      views.push({
        node: node.name,
        ...(facts.now !== undefined ? { now: facts.now } : {}),
        peers: facts.peers,
        configPeers: parsed.peers.filter((peer) => {
          const to = peer.allowedIps[0] === undefined ? undefined : byOverlay.get(peer.allowedIps[0]);
          return to !== undefined && to.site !== node.site && judged.has(to.site);
        }),
      });
    const port = facts.live.listenPort ?? parsed.interface?.listenPort;
    if (port !== undefined && port !== node.listenPort)
      changes.push(`${node.name} listens on UDP ${port}, the inventory says ${node.listenPort}`);
    for (const peer of parsed.peers) {
      const to = peer.allowedIps[0] === undefined ? undefined : byOverlay.get(peer.allowedIps[0]);
      if (!to || to.name === node.name) continue;
      const designed = endpointFor(inventory, node, to);
      const want = designed ? formatEndpoint(designed) : undefined;
      if (want === peer.endpoint) continue;
      changes.push(
        `${node.name} dials ${to.name} ${peer.endpoint ? `at ${peer.endpoint}` : 'at no endpoint'}, the inventory says ${want ?? 'no endpoint (it dials in)'}`,
      );
    }
  }
  return { changes, views };
}

/** `changes` (underlayChanges) in one line: the first few, then how many more. */
export function describeUnderlayChanges(changes: readonly string[]): string {
  const named = changes.slice(0, NAMED).join('; ');
  return changes.length > NAMED ? `${named}; and ${changes.length - NAMED} more` : named;
}

/**
 * Q4 item 3: the NAT sites that the run's nodes outside them see at another public address than nat.publicIp, read
 * from each node's facts (its live peers with their endpoints and latest handshakes, its clock, and its key-less
 * wg-quick file): ../topology/moved-address.ts says which endpoints count. Nodes without a live interface or a file
 * observe nothing. Pure; never throws.
 */
export function movedAddresses(inventory: Inventory, nodes: readonly { node: Node; values: { facts: NodeFacts } }[]): MovedAddress[] {
  return movedPublicAddresses(inventory, reviewUnderlay(inventory, nodes).views);
}

/** `moved` (movedAddresses) in one line: per site, the inventory's address, the one seen, and who saw it. */
export function describeMovedAddresses(moved: readonly MovedAddress[]): string {
  return moved
    .map(
      (m) =>
        `site ${m.site}: the inventory says ${m.inventoryIp}, ${describeWitnesses(m.sightings)} at ${m.seen}${m.agree ? '' : `, while ${describeOtherSightings(m)}`}`,
    )
    .join('; ');
}
