/**
 * The debug playbook as a pure decision function: two-ended evidence about one pair in, every cause found out, each
 * with an explanation and a suggested fix (printed, never applied).
 *
 * It is a table of small rules (RULES), each `evidence -> the causes it sees`, read in the order of the runbook:
 * can the pair connect at all by the inventory, can both ends be examined, is the tunnel there, are the keys,
 * the live peers and AllowedIPs right, are the routes right, do datagrams arrive (and where), then what happens
 * inside the tunnel (handshake fine but ping fails, large packets lost). Every rule runs, so a pair with two faults
 * gets both named. Two kinds of rule:
 * - a specific rule names a fault it can see directly (a DROP rule, a missing route, a peer absent from `wg show`);
 * - a symptom rule infers a cause from a symptom alone (no handshake, pings lost) and speaks only when no cause
 *   found so far explains that symptom (EXPLAINS), so that it never contradicts the evidence of a specific one.
 * A suggested inventory change is only offered after the real inventory validation accepted the patched file
 * (./inventory-fix.ts); when none would validate, the rule says so and suggests the fix outside the inventory.
 */
import type { Inventory, Node, Site } from '../inventory/types.js';
import { publicAddressOf, siteOf } from '../inventory/types.js';
import type { DesiredNodeConfig, DesiredPeer } from '../topology/desired.js';
import type { LivePeer } from '../render/wgdump.js';
import { endpointFor, formatEndpoint, pairCanConnect } from '../topology/endpoints.js';
import type { NodeChecklist } from '../checks/probes.js';
import type { MatrixCell, Matrix } from '../checks/ping-matrix.js';
import type { CaptureCounts } from './capture.js';
import { arrivedAtClosedPort, directionPasses, judgeDirection, type DirectionResult } from '../checks/cold-start.js';
import { describeWgError, REJECT_AFTER_TIME_S, REKEY_AFTER_TIME_S, REKEY_TIMEOUT_S, wireguardPaths } from '../remote/wireguard.js';
import { judgeLiveEndpoint } from '../steps/live-endpoint.js';
import { icmpDropOnIfaceRules, udpDropRules } from '../facts/definitions.js';
import { syncconfKeepingKeyCommand } from '../render/systemd.js';
import { checkInventoryPatch, describePatch, type InventoryPatch } from './inventory-fix.js';
import {
  describeOtherSightings,
  describeWitnesses,
  describeMovedAddress,
  movedAddressFix,
  type MovedAddress,
} from '../topology/moved-address.js';

export const CAUSES = [
  'unconnectable',
  'node-unreachable',
  'service-down',
  'interface-missing',
  'no-private-key',
  'wrong-public-key',
  'peer-missing-live',
  'allowed-ips',
  'missing-route',
  'listen-port',
  'wrong-lan-endpoint',
  'wrong-endpoint',
  'firewall-udp',
  'forward-misdirected',
  'public-address-moved',
  'relay-not-forwarding',
  'cold-start-blocked',
  'no-udp-arriving',
  'no-handshake-answer',
  'no-handshake',
  'rp-filter',
  'firewall-icmp',
  'handshake-ok-ping-fails',
  'mtu',
  'not-designed',
  'healthy',
] as const;
export type CauseId = (typeof CAUSES)[number];

export interface SideEvidence {
  node: string;
  reached: boolean;
  error?: string;
  checklist?: NodeChecklist;
  /** peer dump read after the pings, and the node's clock then */
  peersAfter?: LivePeer[];
  now?: number;
}

export interface PairEvidence {
  inventory: Inventory;
  /**
   * The inventory file's text. Inventory changes are suggested only after they validate against it; without it
   * no inventory change is suggested.
   */
  inventoryText?: string;
  desired: Map<string, DesiredNodeConfig>;
  /** the side whose traffic is provoked (it dials the receiver) */
  sender: string;
  receiver: string;
  /** sender, receiver, and (with captures) the other nodes of the receiver's site */
  sides: Record<string, SideEvidence>;
  /** sender -> receiver and receiver -> sender pings (with path MTU) */
  forward?: MatrixCell;
  backward?: MatrixCell;
  /** the whole matrix, for context (e.g. the edge works while two nodes of one site fail) */
  matrix?: Matrix;
  /**
   * verify's cold-start probe (../checks/cold-start.ts) for the directions of this pair (a side that dials the other),
   * when it ran: a pair that works now may still be one-way (only its other side can start a session)
   */
  coldStart?: DirectionResult[];
  /** verify's cold-start probe as a whole, when it ran: its sequential round trips and its duration, ms */
  coldStartRun?: { roundTrips: number; ms: number };
  /** per captured node, when --tcpdump ran */
  capture?: { counts: Record<string, CaptureCounts>; markerSent: boolean; errors?: Record<string, string> };
  /**
   * NAT sites that nodes outside them see at another public address than nat.publicIp, by the whole mesh's live
   * endpoints (../topology/moved-address.ts; Q4 item 3): a forward dialled at the old address reaches nothing
   */
  moved?: MovedAddress[];
  /**
   * the stand-in public keys of the design (../checks/collect.ts placeholderKey): nodes whose key could not be
   * learned (unreached, no key file, no state). A peer entry is never judged against one: the stand-in is no key
   * any node has, and "PublicKey = <stand-in>" would break a working tunnel (Q9 F-debug-placeholder)
   */
  unknownKeys?: ReadonlySet<string>;
}

export interface Diagnosis {
  sender: string;
  receiver: string;
  cause: CauseId;
  /** the node where the fault sits, when it is on one node */
  node?: string;
  summary: string;
  explanation: string;
  /** what to do: printed, never applied */
  fix: string;
  /** the inventory change the fix consists of, when it has one: it validated before it was suggested */
  inventoryPatch?: InventoryPatch[];
  evidence: string[];
}

/**
 * How old a latest handshake may be and still show that handshakes work NOW, after debug's pings (the peers' dump
 * read after them): REKEY_AFTER_TIME plus three REKEY_TIMEOUT retries, 135 s (as wireguard-tools'
 * contrib/reresolve-dns). The WireGuard paper (Donenfeld, section 6.2 "Transport Message Limits", the timers of
 * section 6.1, ../remote/wireguard.ts): the initiator of a session starts a new handshake when it sends with keys
 * older than REKEY_AFTER_TIME, so pings that pass both ways leave a handshake younger than that; an older one is from
 * before (Q3: a handshake 142 s old from before an endpoint was broken read as "the peers shake hands").
 */
export const HANDSHAKE_WORKS_NOW_S = REKEY_AFTER_TIME_S + 3 * REKEY_TIMEOUT_S;
/** Without debug's pings (no dump after them) a quiet session lives on for REJECT_AFTER_TIME: up to that. */
const HANDSHAKE_FRESH_UNPINGED_S = REJECT_AFTER_TIME_S;

// the firewall rules are judged by the facts layer (one definition for up's baseline, verify and debug)
export { icmpDropOnIfaceRules, udpDropRules };

/** What a pair shows: no handshake, pings lost, large packets lost. */
type Symptom = 'handshake' | 'ping' | 'mtu';

/**
 * The symptoms each cause accounts for. A cause that stops the handshake also stops pings and large packets; one
 * that stops packets inside a working tunnel explains pings and large packets, not the handshake.
 */
const EXPLAINS: Record<CauseId, readonly Symptom[]> = {
  unconnectable: ['handshake', 'ping', 'mtu'],
  'node-unreachable': ['handshake', 'ping', 'mtu'],
  'service-down': ['handshake', 'ping', 'mtu'],
  'interface-missing': ['handshake', 'ping', 'mtu'],
  'no-private-key': ['handshake', 'ping', 'mtu'],
  'wrong-public-key': ['handshake', 'ping', 'mtu'],
  'peer-missing-live': ['handshake', 'ping', 'mtu'],
  // its peers dial a port nothing listens on: a session starts only when the node dials out (they roam to it)
  'listen-port': ['handshake', 'ping', 'mtu'],
  'wrong-lan-endpoint': ['handshake', 'ping', 'mtu'],
  'wrong-endpoint': ['handshake', 'ping', 'mtu'],
  'firewall-udp': ['handshake', 'ping', 'mtu'],
  'forward-misdirected': ['handshake', 'ping', 'mtu'],
  // the legs shake hands; what the relay does not forward is every packet of the pair
  'relay-not-forwarding': ['ping', 'mtu'],
  // the dialling side's packets go to the old address: no handshake can start from that side
  'public-address-moved': ['handshake', 'ping', 'mtu'],
  // a latent fault: the pair works now (the other side dialled out), so it explains no symptom of today's pings
  'cold-start-blocked': [],
  'no-udp-arriving': ['handshake', 'ping', 'mtu'],
  'no-handshake-answer': ['handshake', 'ping', 'mtu'],
  'no-handshake': ['handshake', 'ping', 'mtu'],
  'allowed-ips': ['ping', 'mtu'],
  'missing-route': ['ping', 'mtu'],
  'rp-filter': ['ping', 'mtu'],
  'firewall-icmp': ['ping', 'mtu'],
  'handshake-ok-ping-fails': ['ping', 'mtu'],
  mtu: ['mtu'],
  // not judged at all: the pair has no designed tunnel (notDesigned)
  'not-designed': [],
  healthy: [],
};

/** One end of the pair as seen from itself: its design entry for the other end. */
interface End {
  self: string;
  other: string;
  want: DesiredPeer;
}

/** The evidence with the questions every rule asks answered once. */
export interface PairContext {
  e: PairEvidence;
  inv: Inventory;
  iface: string;
  S: string;
  R: string;
  sNode: Node;
  rNode: Node;
  /** sender's end first */
  ends: [End, End];
  /** ping lines every diagnosis carries */
  base: string[];
  /** the handshake line plus `base` */
  ev: string[];
  handshakeOk: boolean;
  pingFails: boolean;
  /** the node could be examined (logged in, checklist read) */
  reached(n: string): boolean;
  /** the node's interface exists and `wg` can talk to it */
  tunnel(n: string): boolean;
  cl(n: string): NodeChecklist;
  livePeers(n: string): LivePeer[];
  keyOwner(key: string): string | undefined;
  make(
    cause: CauseId,
    node: string | undefined,
    text: { summary: string; explanation: string; fix: string },
    evidence: string[],
  ): Diagnosis;
}

/** A rule: the causes it sees in the evidence (none: []); `found` holds what the earlier rules named. */
export interface Rule {
  name: string;
  find(c: PairContext, found: readonly Diagnosis[]): Diagnosis[];
}

const nodeOf = (inv: Inventory, name: string): Node => inv.nodes.find((n) => n.name === name)!;

const pingLine = (label: string, cell?: MatrixCell) =>
  cell
    ? `ping ${label}: ${cell.received}/${cell.transmitted} answered${cell.rttMs !== undefined ? `, ${cell.rttMs} ms` : ''}${cell.pmtu ? `; largest DF payload ${cell.pmtu.largest}/${cell.pmtu.expected}` : ''}`
    : `ping ${label}: not run`;

const explained = (found: readonly Diagnosis[], symptom: Symptom) => found.some((d) => EXPLAINS[d.cause].includes(symptom));

/**
 * What the capture shows of the tunnel, preferred over handshake ages: when the receiver was captured while the
 * sender pinged it and saw no WireGuard datagram from it (the marker aside), no echo request on the interface and no
 * handshake either way, the tunnel carries nothing now, whatever a past handshake says. The words for it, or
 * undefined when the capture saw the tunnel work or did not run at the receiver.
 */
function captureShowsNoTunnel(e: PairEvidence): string | undefined {
  const at = e.capture?.counts[e.receiver];
  if (!at) return undefined;
  const back = e.capture!.counts[e.sender];
  const wireguard = at.udpFromSender - at.markers;
  if (
    wireguard > 0 ||
    at.icmpRequestsIn > 0 ||
    at.responsesToSender > 0 ||
    (back?.responsesFromReceiver ?? 0) > 0 ||
    (back?.icmpRepliesIn ?? 0) > 0
  )
    return undefined;
  return `the capture on ${e.receiver} saw no WireGuard datagram from ${e.sender} and no echo request on the tunnel while ${e.sender} pinged it: the tunnel carries nothing now`;
}

function context(e: PairEvidence): PairContext {
  const inv = e.inventory;
  const S = e.sender;
  const R = e.receiver;
  const side = (n: string) => e.sides[n];
  const reached = (n: string) => !!side(n)?.reached && !!side(n)?.checklist;
  const cl = (n: string) => side(n)!.checklist!;
  const tunnel = (n: string) => reached(n) && cl(n).iface.exists && cl(n).wgAvailable;
  const livePeers = (n: string): LivePeer[] => {
    const s = side(n);
    return s?.peersAfter?.length ? s.peersAfter : (s?.checklist?.peers ?? []);
  };
  const wantOf = (self: string, other: string) => e.desired.get(self)!.peers.find((p) => p.name === other)!;
  const ends: [End, End] = [
    { self: S, other: R, want: wantOf(S, R) },
    { self: R, other: S, want: wantOf(R, S) },
  ];
  const age = (end: End) => {
    const peer = livePeers(end.self).find((p) => p.publicKey === end.want.publicKey);
    const now = side(end.self)?.now ?? side(end.self)?.checklist?.now;
    if (!peer?.latestHandshake || now === undefined) return undefined;
    return Math.max(0, now - peer.latestHandshake);
  };
  const ageS = age(ends[0]);
  const ageR = age(ends[1]);
  const limit = (n: string) => (side(n)?.peersAfter?.length ? HANDSHAKE_WORKS_NOW_S : HANDSHAKE_FRESH_UNPINGED_S);
  const fresh = (a: number | undefined, n: string) => a !== undefined && a < limit(n);
  const base = [pingLine(`${S} -> ${R}`, e.forward), pingLine(`${R} -> ${S}`, e.backward)];
  const seen = (a: number | undefined, n: string) =>
    a === undefined ? 'never' : `${a}s ago${fresh(a, n) ? '' : ` (older than ${limit(n)} s: no evidence of a session now)`}`;
  const tunnelDead = captureShowsNoTunnel(e);
  const hsLine = `latest handshake: ${S} sees ${R} ${seen(ageS, S)}, ${R} sees ${S} ${seen(ageR, R)}${tunnelDead ? `; but ${tunnelDead}` : ''}`;
  return {
    e,
    inv,
    iface: inv.mesh.interface,
    S,
    R,
    sNode: nodeOf(inv, S),
    rNode: nodeOf(inv, R),
    ends,
    base,
    ev: [hsLine, ...base],
    handshakeOk: !tunnelDead && (fresh(ageS, S) || fresh(ageR, R)),
    pingFails: (!!e.forward && !e.forward.ok) || (!!e.backward && !e.backward.ok),
    reached,
    tunnel,
    cl,
    livePeers,
    keyOwner: (key) => inv.nodes.find((n) => e.desired.get(n.name)?.publicKey === key)?.name,
    make: (cause, node, text, evidence) => ({
      sender: S,
      receiver: R,
      cause,
      ...(node ? { node } : {}),
      summary: text.summary,
      explanation: text.explanation,
      fix: text.fix,
      evidence,
    }),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// The inventory itself

/** Why `from` cannot dial `to` by the inventory's rules (../topology/endpoints.ts), or undefined when it can. */
function whyCannotDial(inv: Inventory, from: Node, to: Node): string | undefined {
  if (endpointFor(inv, from, to)) return undefined;
  const site = siteOf(inv, to);
  if (site.kind === 'lan') return `${to.name} is in site ${site.name}, a lan site with no way in from outside it`;
  if (site.kind === 'nat') return `${to.name} has no forwardedPort on the router of site ${site.name} (${publicAddressOf(site)})`;
  return `${to.name} cannot be dialled from ${from.name}`;
}

/** A forwardedPort for `node` that no other node of its site uses: its listen port, else the next free one. */
function freeForwardedPort(inv: Inventory, node: Node): number {
  const used = new Set(inv.nodes.filter((n) => n.site === node.site && n !== node).map((n) => n.forwardedPort));
  let port = node.listenPort;
  while (used.has(port) && port < 65535) port++;
  return port;
}

/** The validated forwardedPort patches that make the pair connect, one per side that can take one. */
function forwardFixes(c: PairContext): Array<{ node: Node; site: Extract<Site, { kind: 'nat' }>; patch: InventoryPatch }> {
  const text = c.e.inventoryText;
  if (text === undefined) return [];
  const out: Array<{ node: Node; site: Extract<Site, { kind: 'nat' }>; patch: InventoryPatch }> = [];
  for (const node of [c.rNode, c.sNode]) {
    const site = siteOf(c.inv, node);
    if (site.kind !== 'nat' || node.forwardedPort !== undefined) continue;
    const patch = { path: ['nodes', node.name, 'forwardedPort'], value: freeForwardedPort(c.inv, node) };
    const checked = checkInventoryPatch(text, c.inv.source, [patch]);
    if (!checked.ok) continue;
    const n = (name: string) => nodeOf(checked.inventory, name);
    if (pairCanConnect(checked.inventory, n(c.S), n(c.R))) out.push({ node, site, patch });
  }
  return out;
}

const unconnectable: Rule = {
  name: 'unconnectable',
  find(c) {
    if (pairCanConnect(c.inv, c.sNode, c.rNode)) return [];
    const fixes = forwardFixes(c);
    const first = fixes[0];
    const fix = first
      ? `${fixes
          .map(
            (f) =>
              `Give ${f.node.name} a port-forward: set ${describePatch(f.patch)} in ${c.inv.source} (the inventory validates with it) and forward UDP ${publicAddressOf(f.site)}:${f.patch.value} -> ${f.node.address}:${f.node.listenPort} on the router of site ${f.site.name}`,
          )
          .join('; or: ')}; then re-run meshctl up.`
      : `No forwardedPort can fix this pair in ${c.inv.source}${c.e.inventoryText === undefined ? ' (the inventory text was not available to check a change)' : ''}: give one of the two sites a way in (a router port-forward, declared as a nat site with its publicIp and the node's forwardedPort) or move one node to a public site, then check the result with meshctl validate.`;
    return [
      c.make(
        'unconnectable',
        undefined,
        {
          summary: `the inventory gives ${c.S} and ${c.R} no way to reach each other`,
          explanation: `Neither side can dial the other: ${whyCannotDial(c.inv, c.sNode, c.rNode)}, and ${whyCannotDial(c.inv, c.rNode, c.sNode)}. So neither has an Endpoint for the other, no handshake is ever sent between them and no datagram is sent to be lost: nothing on the nodes or the path is at fault (meshctl validate lists this pair as one that will not connect).`,
          fix,
        },
        [
          `inventory: ${c.S} -> ${c.R}: ${whyCannotDial(c.inv, c.sNode, c.rNode)}`,
          `inventory: ${c.R} -> ${c.S}: ${whyCannotDial(c.inv, c.rNode, c.sNode)}`,
          ...c.ev,
        ],
      ),
    ].map((d) => (first ? { ...d, inventoryPatch: [first.patch] } : d));
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Can both ends be examined, is the tunnel there

/**
 * Finding 26: why meshctl could not log in to `n`, from the transport's message (../transport/ssh.ts classify), as a
 * summary and a fix a user acts on; the transport's words stay in the explanation.
 */
function sshFailure(n: string, error: string | undefined): { summary: string; fix: string } {
  const again = 'then run debug again (the pair can only be judged from both ends)';
  if (error === undefined)
    return { summary: `${n} could not be reached over SSH`, fix: `Check that ${n} is up and reachable over SSH, ${again}.` };
  if (/connection refused/i.test(error))
    return {
      summary: `nothing accepts SSH on ${n} (connection refused): its sshd is stopped, or listens on another port`,
      fix: `On ${n}'s console: systemctl start ssh (or sshd), or set ssh.port in the inventory to the port it listens on; ${again}.`,
    };
  if (/timed out|host unreachable/i.test(error))
    return {
      summary: `${n} does not answer on its SSH port (${/unreachable/i.test(error) ? 'host unreachable' : 'timed out'})`,
      fix: `Check that ${n} is running and its address is right in the inventory, and that no firewall on the way drops SSH; ${again}.`,
    };
  if (/authentication|permission denied|sudo/i.test(error))
    return {
      summary: `${n} answers SSH but refuses meshctl's login`,
      fix: `Check the user and key meshctl logs in with (ssh.user in the inventory, ~/.ssh/config, ssh-agent) and that the user has root or passwordless sudo on ${n}; ${again}.`,
    };
  // before the changed-key case below: an unknown key (or one that could not be recorded) needs trusting, not a
  // known_hosts repair (the transport's messages, src/transport/ssh.ts hostKeyFailure and the accept-new recorder)
  if (/host key not known|could not record the host key/i.test(error))
    return {
      summary: `${n}'s SSH host key is not known yet`,
      fix: `Compare ${n}'s host key with the node's own (the message above says how), then add it to known_hosts or run debug again with --accept-new to trust and record it.`,
    };
  if (/host key/i.test(error))
    return {
      summary: `${n}'s SSH host key is not the one known for it`,
      fix: `Check why ${n}'s host key differs (a reinstalled node, or another machine at its address); if it is right, update known_hosts; ${again}.`,
    };
  return { summary: `${n} could not be reached over SSH`, fix: `Check that ${n} is up and reachable over SSH, ${again}.` };
}

const nodeUnreachable: Rule = {
  name: 'node-unreachable',
  find: (c) =>
    [c.S, c.R]
      .filter((n) => !c.reached(n))
      .map((n) => {
        const error = c.e.sides[n]?.error;
        return c.make(
          'node-unreachable',
          n,
          {
            ...sshFailure(n, error),
            explanation: `meshctl could not log in to ${n} (${error ?? 'no connection'}), so only one end of the pair can be examined: nothing is known of ${n}'s tunnel, which may well be up.`,
          },
          c.base,
        );
      }),
};

const tunnelMissing: Rule = {
  name: 'tunnel',
  find(c) {
    const paths = wireguardPaths(c.iface);
    return [c.S, c.R]
      .filter((n) => c.reached(n) && !c.tunnel(n))
      .map((n) => {
        const cl = c.cl(n);
        const evidence = [
          `ip addr: ${cl.iface.error ?? (cl.iface.exists ? `${c.iface} exists` : 'missing')}`,
          `wg: ${cl.wgError ? describeWgError(cl.wgError, c.iface) : 'ok'}`,
          `service: ${cl.service.systemd ? `${paths.service} ${cl.service.active ?? '?'} (${cl.service.enabled ?? '?'})` : 'no systemd'}`,
          ...c.base,
        ];
        if (cl.service.systemd && cl.service.active !== 'active')
          return c.make(
            'service-down',
            n,
            {
              summary: `${paths.service} is not running on ${n}`,
              explanation: `The service is ${cl.service.active ?? 'not active'} on ${n}, so ${c.iface} does not exist there and no peer can reach it.`,
              fix: `On ${n}: systemctl enable --now ${paths.service} (and journalctl -u ${paths.service} if it fails to start).`,
            },
            evidence,
          );
        return c.make(
          'interface-missing',
          n,
          {
            summary: `${c.iface} does not exist on ${n}`,
            explanation: `${n} has no ${c.iface} interface${cl.service.systemd ? ` although ${paths.service} reports ${cl.service.active}` : ' and no systemd to keep it up'}.`,
            fix: `On ${n}: wg-quick up ${c.iface}; check ${paths.config} and that wireguard-go or the kernel module is available.`,
          },
          evidence,
        );
      });
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Keys, live peers, AllowedIPs, routes

const ownKey: Rule = {
  name: 'own-key',
  find(c) {
    const paths = wireguardPaths(c.iface);
    const out: Diagnosis[] = [];
    for (const n of [c.S, c.R].filter(c.tunnel)) {
      const cl = c.cl(n);
      if (!cl.livePublicKey)
        out.push(
          c.make(
            'no-private-key',
            n,
            {
              summary: `${n}'s ${c.iface} runs without a private key`,
              explanation: `${n}'s ${c.iface} exists but holds no private key, so it can neither answer nor start a handshake. \`wg syncconf\`/\`wg setconf\` from a file without PrivateKey do this, and so does the stock \`systemctl reload ${paths.service}\` where the file leaves the key to PostUp.`,
              fix: `On ${n}: wg set ${c.iface} private-key ${paths.privateKey}; or re-run meshctl up, which does so and installs a reload drop-in that keeps the key.`,
            },
            ['wg public-key: (none)', `${c.iface}.pub: ${cl.filePublicKey ?? '(none)'}`, ...c.base],
          ),
        );
      else if (cl.filePublicKey && cl.livePublicKey !== cl.filePublicKey)
        out.push(
          c.make(
            'wrong-public-key',
            n,
            {
              summary: `${n} runs with another key than its peers were given`,
              explanation: `${n}'s ${c.iface} uses ${cl.livePublicKey} but ${paths.publicKey} (what its peers were configured with) says ${cl.filePublicKey}; its peers drop its handshakes.`,
              fix: `Restart ${paths.service} on ${n} so it loads ${paths.privateKey}, or re-run meshctl up so the peers get the right key.`,
            },
            [`wg public-key: ${cl.livePublicKey}`, `${c.iface}.pub: ${cl.filePublicKey}`, ...c.base],
          ),
        );
    }
    return out;
  },
};

/**
 * The other end's peer entry, live and on file. Missing live while the file holds it (right key): the live
 * interface lost it (`wg set ... remove`, a reload gone wrong) and a sync restores it, the file needs no edit.
 * Missing from the file too, or under another key: the file is wrong.
 */
const peerEntry: Rule = {
  name: 'peer-entry',
  find(c) {
    const paths = wireguardPaths(c.iface);
    const out: Diagnosis[] = [];
    for (const { self, other, want } of c.ends) {
      if (!c.tunnel(self)) continue;
      // other's key is not known (a stand-in): which key self should hold for it cannot be told
      if (c.e.unknownKeys?.has(want.publicKey)) continue;
      const peers = c.livePeers(self);
      if (peers.some((p) => p.publicKey === want.publicKey)) continue;
      const cl = c.cl(self);
      const holder = peers.find((p) => p.allowedIps.some((ip) => want.allowedIps.includes(ip)));
      const holderName = holder ? (c.keyOwner(holder.publicKey) ?? 'no node of the inventory') : undefined;
      const holderLine = holder ? [`wg on ${self}: peer ${holder.publicKey} allowed-ips ${holder.allowedIps.join(',')}`] : [];
      const onFile = cl.config?.peers.find((p) => p.publicKey === want.publicKey);
      if (onFile) {
        const privateKeyPath = c.e.desired.get(self)?.privateKeyPath ?? paths.privateKey;
        out.push(
          c.make(
            'peer-missing-live',
            self,
            {
              summary: `${other} is missing from ${self}'s live interface (${paths.config} is right)`,
              explanation: `${paths.config} on ${self} holds ${other}'s [Peer] block with the right key ${want.publicKey} (line ${onFile.line}), but the running ${c.iface} has no peer with that key${holder ? `; ${want.allowedIps.join(', ')} sits under ${holder.publicKey} (${holderName}) instead` : ''}: the interface was changed after it was loaded (e.g. \`wg set ${c.iface} peer ... remove\`). ${self} drops ${other}'s handshakes and has no way to send to it.`,
              fix: `Re-run meshctl up: it compares the live interface with the design and syncs it. Or on ${self}, load the file again without losing the key: ${syncconfKeepingKeyCommand(c.iface, privateKeyPath)}`,
            },
            [
              `wg on ${self}: no peer ${want.publicKey}`,
              `${c.iface}.conf on ${self}: [Peer] ${other} PublicKey = ${want.publicKey}`,
              ...holderLine,
              ...c.base,
            ],
          ),
        );
        continue;
      }
      const conf = cl.config?.peers.find((p) => p.allowedIps.some((ip) => want.allowedIps.includes(ip)));
      out.push(
        c.make(
          'wrong-public-key',
          self,
          {
            summary: `${self}'s peer entry for ${other} holds the wrong public key`,
            explanation: holder
              ? `On ${self}, ${other}'s address ${want.allowedIps.join(', ')} sits under the public key ${holder.publicKey}, which belongs to ${holderName}, not to ${other} (${want.publicKey}). ${other}'s handshakes are dropped by ${self} and ${self}'s packets for ${other} are encrypted for the wrong node.`
              : `${self} has no peer with ${other}'s public key ${want.publicKey}, live or in ${paths.config}; handshakes between them cannot succeed.`,
            fix: `Fix the [Peer] block for ${other} in ${paths.config} on ${self}${conf ? ` (line ${conf.lines.publickey ?? conf.line})` : ''}: PublicKey = ${want.publicKey}; or re-run meshctl up.`,
          },
          [...holderLine, ...c.base],
        ),
      );
    }
    return out;
  },
};

const allowedIps: Rule = {
  name: 'allowed-ips',
  find(c) {
    const out: Diagnosis[] = [];
    for (const { self, other, want } of c.ends) {
      if (!c.tunnel(self)) continue;
      const peers = c.livePeers(self);
      const live = peers.find((p) => p.publicKey === want.publicKey);
      if (!live) continue; // the peer-entry rule names it
      const has = want.allowedIps.every((ip) => live.allowedIps.includes(ip));
      const stolen = peers.find((p) => p !== live && p.allowedIps.some((ip) => want.allowedIps.includes(ip)));
      if (has && !stolen) continue;
      out.push(
        c.make(
          'allowed-ips',
          self,
          {
            summary: `${self}'s AllowedIPs for ${other} are wrong`,
            explanation: `On ${self}, the peer ${other} has AllowedIPs ${live.allowedIps.join(', ') || '(none)'} instead of ${want.allowedIps.join(', ')}${stolen ? `, and ${want.allowedIps.join(', ')} is claimed by another peer (${c.keyOwner(stolen.publicKey) ?? stolen.publicKey})` : ''}. WireGuard routes packets to a peer, and accepts packets from it, only for its AllowedIPs.`,
            fix: `Set AllowedIPs = ${want.allowedIps.join(', ')} in ${other}'s [Peer] block on ${self} (${wireguardPaths(c.iface).config}) and reload, or re-run meshctl up.`,
          },
          [`wg on ${self}: peer ${other} allowed-ips ${live.allowedIps.join(',') || '(none)'}`, ...c.base],
        ),
      );
    }
    return out;
  },
};

const missingRoute: Rule = {
  name: 'missing-route',
  find(c) {
    const out: Diagnosis[] = [];
    for (const { self, other, want } of c.ends) {
      if (!c.tunnel(self)) continue;
      const ip = want.allowedIps[0]!.replace(/\/32$/, '');
      const route = c.cl(self).routes.find((r) => r.dst === ip);
      if (!route || route.dev === c.iface) continue;
      out.push(
        c.make(
          'missing-route',
          self,
          {
            summary: `${self} has no /32 route to ${other} via ${c.iface}`,
            explanation: `On ${self}, \`ip route get ${ip}\` goes ${route.dev ? `via ${route.dev}${route.gateway ? ` ${route.gateway}` : ''}` : `nowhere (${route.error ?? 'no route'})`}: packets for ${other} (and replies to it) never enter the tunnel, although handshakes can still work.`,
            // replace, not add: `ip route add` fails with "File exists" when the /32 points at another device
            fix: `On ${self}: ip route replace ${ip}/32 dev ${c.iface} (wg-quick adds it from AllowedIPs; restarting ${wireguardPaths(c.iface).service} restores it).`,
          },
          [
            `ip route get ${ip} on ${self}: ${route.dev ? `dev ${route.dev}` : ''}${route.gateway ? ` via ${route.gateway}` : ''}${route.error ? ` ${route.error}` : ''}`,
            ...c.base,
          ],
        ),
      );
    }
    return out;
  },
};

// ---------------------------------------------------------------------------------------------------------------
// The underlay: endpoints, firewalls, forwards

/** "the edge works" context for a pair inside one site. */
function edgeContext(c: PairContext): string {
  const m = c.e.matrix;
  if (!m) return '';
  const site = c.sNode.site;
  const outside = c.inv.nodes.filter((n) => n.site !== site).map((n) => n.name);
  const ok = (x: string, y: string) => m.cells[x]?.[y]?.ok === true;
  const [a, b] = [c.S, c.R];
  const worksOutside = outside.length > 0 && outside.every((o) => ok(a, o) && ok(o, a) && ok(b, o) && ok(o, b));
  const pairFails = !ok(a, b) || !ok(b, a);
  return pairFails && worksOutside
    ? `Both reach ${outside.join(', ')} outside the site, which rules out keys and the nodes themselves.`
    : '';
}

/**
 * Q8 F-port: a node whose interface listens on another UDP port than its design's listenPort (wg show IFACE
 * listen-port; e.g. ListenPort edited in wg0.conf and wg-quick restarted). Its peers dial the design's port (the LAN
 * address or the site's forward points there) and find nothing listening; a session starts only when the node dials
 * out itself, and WireGuard then roams each peer's endpoint to the port the node's packets come from. That roamed
 * endpoint is no cause of its own (wrong-lan-endpoint, cold-start-blocked stay silent about it): the port is.
 * Checked even while the pair works, as the roamed sessions last only until the node's peers restart or lose them.
 */
const listenPort: Rule = {
  name: 'listen-port',
  find(c) {
    return [c.S, c.R].flatMap((n) => {
      if (!c.tunnel(n)) return [];
      const live = c.cl(n).liveListenPort;
      const design = c.e.desired.get(n)?.listenPort;
      if (live === undefined || design === undefined || live === design) return [];
      const node = nodeOf(c.inv, n);
      const paths = wireguardPaths(c.iface);
      const fileIface = c.cl(n).config?.interface;
      const filePort = fileIface?.listenPort;
      const fileLine = fileIface?.lines?.listenport;
      const file =
        filePort === live
          ? `, as its ${paths.config} says${fileLine ? ` (line ${fileLine})` : ''}`
          : filePort !== undefined && filePort !== design
            ? ` (its ${paths.config} says ${filePort})`
            : '';
      const dialers = c.inv.nodes
        .filter((o) => o.name !== n)
        .map((o) => ({ o, endpoint: endpointFor(c.inv, o, node) }))
        .filter((x) => x.endpoint !== undefined)
        .map((x) => `${x.o.name} at ${formatEndpoint(x.endpoint!)}`);
      const site = siteOf(c.inv, node);
      const forward = site.kind === 'nat' && node.forwardedPort !== undefined;
      const patch: InventoryPatch = { path: ['nodes', n, 'listenPort'], value: live };
      const keep =
        c.e.inventoryText !== undefined && checkInventoryPatch(c.e.inventoryText, c.inv.source, [patch]).ok
          ? ` To keep port ${live} instead, set ${describePatch(patch)} in ${c.inv.source} (the inventory validates with it)${forward ? `, point the router's forward ${publicAddressOf(site)}:${node.forwardedPort} at ${node.address}:${live}` : ''} and re-run meshctl up.`
          : '';
      return [
        c.make(
          'listen-port',
          n,
          {
            summary: `${n} listens on UDP ${live}, not on ${design}, the port its peers dial`,
            explanation: `${n}'s ${c.iface} listens on UDP ${live}${file}, while the inventory gives it listenPort ${design}: its peers dial it there${dialers.length ? ` (${dialers.join(', ')})` : ''} and reach a port nothing listens on. A session starts only when ${n} dials out itself; WireGuard then roams the peer's endpoint to the port ${n}'s packets come from (so a live endpoint with port ${live} is that roam, not a wrong endpoint), and it lasts only until that peer restarts or loses the session.`,
            fix: `Run meshctl up: it writes ListenPort = ${design} into ${n}'s ${paths.config} and restarts ${paths.service} on ${n} (meshctl plan shows it first).${keep}`,
          },
          [
            `wg show ${c.iface} listen-port on ${n}: ${live}`,
            ...(filePort !== undefined ? [`${paths.config} on ${n}: ListenPort = ${filePort}`] : []),
            ...c.ev,
          ],
        ),
      ];
    });
  },
};

/** `other`'s address at the port its interface listens on, when that is not the design's: a peer's endpoint roamed there. */
function roamedToLivePort(c: PairContext, other: string, endpoint: string | undefined): boolean {
  if (!endpoint || !c.tunnel(other)) return false;
  const live = c.cl(other).liveListenPort;
  const design = c.e.desired.get(other)?.listenPort;
  return live !== undefined && live !== design && endpoint.endsWith(`:${live}`);
}

const wrongLanEndpoint: Rule = {
  name: 'wrong-lan-endpoint',
  find(c) {
    if (c.sNode.site !== c.rNode.site) return [];
    const out: Diagnosis[] = [];
    for (const { self, other, want } of c.ends) {
      if (!c.tunnel(self)) continue;
      const cl = c.cl(self);
      const conf = cl.config?.peers.find((p) => p.publicKey === want.publicKey);
      const live = cl.peers.find((p) => p.publicKey === want.publicKey);
      const wrongConf = conf && want.endpoint && conf.endpoint !== want.endpoint ? (conf.endpoint ?? '(none)') : undefined;
      const liveDiffers = live && want.endpoint && live.endpoint && live.endpoint !== want.endpoint ? live.endpoint : undefined;
      // a live endpoint roamed to the port `other` really listens on: listen-port names that cause (Q8 F-port)
      const wrongLive = roamedToLivePort(c, other, liveDiffers) ? undefined : liveDiffers;
      if (!wrongConf && !wrongLive) continue;
      const wrong = wrongLive ?? wrongConf!;
      out.push(
        c.make(
          'wrong-lan-endpoint',
          self,
          {
            summary: `${self} dials ${other} at ${wrong} instead of its LAN address ${want.endpoint}`,
            explanation:
              `${c.S} and ${c.R} share site ${c.sNode.site}, so they talk over the LAN; ${self}'s endpoint for ${other} is ${wrong}${wrongConf && wrongLive && wrongConf !== wrongLive ? ` (file: ${wrongConf})` : ''}, where nothing answers. ${edgeContext(c)}`.trim(),
            fix: `Set Endpoint = ${want.endpoint} in ${other}'s [Peer] block on ${self} (${wireguardPaths(c.iface).config}${conf?.lines.endpoint ? ` line ${conf.lines.endpoint}` : ''}), or fix ${other}'s address in the inventory and re-run meshctl up.`,
          },
          [
            ...(wrongLive ? [`wg on ${self}: peer ${other} endpoint ${wrongLive}`] : []),
            ...(wrongConf ? [`${c.iface}.conf on ${self}: Endpoint = ${wrongConf}`] : []),
            ...c.base,
          ],
        ),
      );
    }
    return out;
  },
};

/**
 * A live endpoint that differs from the design where no NAT explains it (between sites; one site's LAN is
 * wrong-lan-endpoint's): the same rule as up's repair (../steps/live-endpoint.ts), so its fix, `meshctl up`, is what
 * up does. Named even when a handshake is recent: one from before the endpoint changed still looks fresh for up to
 * two minutes (Q3's broken pair 2, where debug blamed firewalls outside iptables instead).
 */
const wrongEndpoint: Rule = {
  name: 'wrong-endpoint',
  find(c) {
    if (c.sNode.site === c.rNode.site) return [];
    const out: Diagnosis[] = [];
    for (const { self, other, want } of c.ends) {
      if (!c.tunnel(self)) continue;
      const live = c.livePeers(self).find((p) => p.publicKey === want.publicKey);
      if (!live || want.endpoint === undefined) continue;
      const now = c.e.sides[self]?.now ?? c.cl(self).now;
      const judged = judgeLiveEndpoint(want, live, now);
      // a stale NAT mapping is no cause: the NATed side's next packet that arrives roams it back (up resets it anyway)
      if (judged.verdict !== 'wrong') continue;
      const at = live.endpoint ?? '(none)';
      out.push(
        c.make(
          'wrong-endpoint',
          self,
          {
            summary: `${self} sends to ${other} at ${at}, not at the designed ${want.endpoint}`,
            explanation: `${self}'s live endpoint for ${other} is ${at} while the design (and ${c.iface}.conf) says ${want.endpoint}: ${judged.why}. ${self} sends its handshakes and packets for ${other} there, and ${other} does not get them; it was changed on the live interface (wg set ... endpoint), which no reload of an unchanged file undoes.`,
            fix: `Run meshctl up: it sets ${other}'s endpoint on ${self} back to ${want.endpoint} (a peer sync: no restart, the other pairs keep their sessions). By hand, on ${self}: wg set ${c.iface} peer ${want.publicKey} endpoint ${want.endpoint}`,
          },
          [`wg on ${self}: peer ${other} endpoint ${at}, designed ${want.endpoint}`, ...c.ev],
        ),
      );
    }
    return out;
  },
};

/** A rule of `nft -j list ruleset` that drops or rejects UDP to `port`: where it sits. */
interface NftDropRule {
  family: string;
  table: string;
  chain: string;
}

/** The nftables rules (iptables-nft's and ip6tables-nft's included) that drop or reject UDP to `port`, from the ruleset's JSON. */
function nftUdpDropRules(nftJson: string | undefined, port: number): NftDropRule[] {
  if (!nftJson) return [];
  let doc: unknown;
  try {
    doc = JSON.parse(nftJson);
  } catch {
    return [];
  }
  const items = (doc as { nftables?: unknown[] })?.nftables;
  if (!Array.isArray(items)) return [];
  const found: NftDropRule[] = [];
  for (const item of items) {
    const rule = (item as { rule?: { family?: unknown; table?: unknown; chain?: unknown; expr?: unknown } })?.rule;
    if (!rule || typeof rule.family !== 'string' || typeof rule.table !== 'string' || typeof rule.chain !== 'string') continue;
    const text = JSON.stringify(rule.expr ?? []);
    if (!/"field":"dport"/.test(text) || !new RegExp(`[^\\d]${port}[^\\d]`).test(text) || !/"(drop|reject)"/.test(text)) continue;
    found.push({ family: rule.family, table: rule.table, chain: rule.chain });
  }
  return found;
}

/**
 * Q8 F-v6fw: the commands that let UDP `port` in before the dropping rules found, in the family each sits in. An
 * iptables-save line is IPv4 (`iptables`); an nftables rule in a table `filter` of family ip or ip6 with an
 * upper-case chain is iptables-nft's or ip6tables-nft's (`iptables` / `ip6tables`); any other nftables rule gets
 * `nft insert rule FAMILY TABLE CHAIN` (inet covers both). Without the ruleset's JSON, the IPv4 command as before.
 */
export function udpAcceptCommands(checklist: NodeChecklist, rules: readonly string[], port: number): string[] {
  const commands = new Set<string>();
  const iptables = (cmd: string) => `${cmd} -I INPUT -p udp --dport ${port} -j ACCEPT`;
  if (rules.some((r) => /^(\[\d+:\d+\]\s*)?-A\s/.test(r.trim()))) commands.add(iptables('iptables'));
  for (const r of nftUdpDropRules(checklist.firewallRuleset?.nftJson, port)) {
    if ((r.family === 'ip' || r.family === 'ip6') && r.table === 'filter' && /^[A-Z]+$/.test(r.chain))
      commands.add(iptables(r.family === 'ip6' ? 'ip6tables' : 'iptables'));
    else commands.add(`nft insert rule ${r.family} ${r.table} ${r.chain} udp dport ${port} accept`);
  }
  if (!commands.size) commands.add(iptables('iptables'));
  return [...commands];
}

const firewallUdp: Rule = {
  name: 'firewall-udp',
  find(c) {
    if (c.handshakeOk && !c.pingFails) return [];
    return [c.S, c.R].filter(c.reached).flatMap((n) => {
      const port = nodeOf(c.inv, n).listenPort;
      const rules = udpDropRules(c.cl(n).firewall, port);
      if (!rules.length) return [];
      return [
        c.make(
          'firewall-udp',
          n,
          {
            summary: `${n}'s firewall drops UDP ${port}`,
            explanation: `${n} drops incoming WireGuard datagrams on its listen port, so no handshake with ${n === c.S ? c.R : c.S} can complete (captures on ${n} may still show the datagrams: tcpdump sees them before the firewall).`,
            fix: `On ${n}: remove the rule, or allow UDP ${port} before it (e.g. ${udpAcceptCommands(c.cl(n), rules, port).join('; ')}).`,
          },
          [...rules.map((r) => `firewall on ${n}: ${r}`), ...c.ev],
        ),
      ];
    });
  },
};

function captureLines(e: PairEvidence): string[] {
  return Object.entries(e.capture?.counts ?? {}).map(
    ([n, cc]) =>
      `capture on ${n}: ${cc.udpFromSender} datagrams from ${e.sender} (${cc.initiationsFromSender} handshake initiations, ${cc.markers} markers), ${cc.responsesToSender} handshake responses sent back`,
  );
}

/** Where the sender dials the receiver, and whether that goes through the receiver's site router. */
function dialPath(c: PairContext) {
  const endpoint = endpointFor(c.inv, c.sNode, c.rNode);
  const rSite = siteOf(c.inv, c.rNode);
  const viaForward = !!endpoint && rSite.kind === 'nat' && endpoint.host === publicAddressOf(rSite);
  return { endpoint, rSite, viaForward };
}

/**
 * A forward (or address) that delivers the sender's datagrams to another node. Checked even while the pair works:
 * the receiver may dial out and WireGuard roams, hiding that nobody can dial in.
 */
const forwardMisdirected: Rule = {
  name: 'forward-misdirected',
  find(c) {
    const { endpoint, rSite, viaForward } = dialPath(c);
    const counts = c.e.capture?.counts;
    const at = counts?.[c.R];
    if (!endpoint || !counts || !at || at.markers > 0) return [];
    const elsewhere = Object.entries(counts).filter(([n, cc]) => n !== c.R && n !== c.S && cc.markers > 0);
    if (!elsewhere.length) return [];
    const [wrongNode, wrongCounts] = elsewhere[0]!;
    const fwd = formatEndpoint(endpoint);
    const publicIp = rSite.kind === 'nat' ? publicAddressOf(rSite) : '';
    return [
      c.make(
        'forward-misdirected',
        viaForward ? `router:${rSite.name}` : wrongNode,
        viaForward
          ? {
              summary: `the forward ${fwd} should reach ${c.R} but datagrams arrive at ${wrongNode}`,
              explanation: `${c.S} dials ${c.R} at ${fwd}. The captures show ${c.S}'s datagrams (marker${wrongCounts.initiationsFromSender ? ' and handshake initiations' : ''}) arriving at ${wrongNode} and none at ${c.R}: the router of site ${rSite.name} forwards ${fwd} to the wrong node. ${wrongNode} cannot decrypt a handshake meant for ${c.R} and stays silent; the pair only works while ${c.R} dials out itself.`,
              fix: `On the router of site ${rSite.name}: forward UDP ${publicIp}:${endpoint.port} to ${c.rNode.address}:${c.rNode.listenPort} (${c.R}), not to ${nodeOf(c.inv, wrongNode).address} (${wrongNode}).`,
            }
          : {
              summary: `datagrams for ${c.R} at ${fwd} arrive at ${wrongNode}`,
              explanation: `${c.S} dials ${c.R} at ${fwd}, but its datagrams arrive at ${wrongNode}: that address belongs to another node.`,
              fix: `Fix ${c.R}'s endpoint on ${c.S} (or the address in the inventory) and re-run meshctl up.`,
            },
        [...captureLines(c.e), ...c.ev],
      ),
    ];
  },
};

/**
 * Q4 item 3: one side dials the other's NAT site at nat.publicIp (a forward), and every live endpoint that nodes
 * outside that site hold for its nodes, with a fresh handshake, reads one other address (PairEvidence.moved): the
 * site's public address moved and the inventory still has the old one. That is the cause of a cold start that does
 * not arrive, and the fix is the inventory's address, not the router's forward (which debug blamed before). Sightings
 * that disagree (one node seen at home, another elsewhere: a roam through another NAT) are not enough to say so;
 * cold-start-blocked then says the forward fails and mentions the sightings.
 */
const publicAddressMoved: Rule = {
  name: 'public-address-moved',
  find(c) {
    const dialled = (from: Node, to: Node) => {
      const site = siteOf(c.inv, to);
      const endpoint = endpointFor(c.inv, from, to);
      const moved = c.e.moved?.find((m) => m.site === to.site);
      return site.kind === 'nat' && from.site !== to.site && moved?.agree && endpoint?.host === moved.inventoryIp
        ? { from, to, moved, at: formatEndpoint(endpoint) }
        : undefined;
    };
    const ways = [dialled(c.sNode, c.rNode), dialled(c.rNode, c.sNode)].filter((w) => w !== undefined);
    return ways.map(({ from, to, moved, at }) =>
      c.make(
        'public-address-moved',
        undefined,
        {
          summary: `site ${moved.site}'s public address moved to ${moved.seen}, but ${from.name} dials ${to.name} at ${at} (nat.publicIp ${moved.inventoryIp})`,
          explanation: `${describeMovedAddress(moved)}. ${from.name} dials ${to.name} at the inventory's address, where the site's router no longer is, so no session can start from ${from.name}; the pairs where the site's nodes dial out themselves keep working (WireGuard roams to where their packets come from), which is how the other nodes see the new address.`,
          fix: `${movedAddressFix(moved)[0]!.toUpperCase()}${movedAddressFix(moved).slice(1)}: its baseline probes the forwards at the new address. Then run meshctl verify.`,
        },
        [`live endpoints: ${describeWitnesses(moved.sightings)} at ${moved.seen}`, ...c.ev],
      ),
    );
  },
};

/**
 * Finding 20: a direction that cannot start a session from cold (verify's cold-start check, ../checks/cold-start.ts).
 * Checked even while the pair works, as forward-misdirected is: the other side dialled out, conntrack lets the
 * answers in and WireGuard roams to it, so handshakes and pings pass until that entry expires or the other side
 * restarts. Debug must not call healthy a pair that verify fails. Said only when no earlier rule named why the
 * handshake cannot come through (a firewall rule or a misdirected forward already is this cause, named precisely).
 */
const coldStartBlocked: Rule = {
  name: 'cold-start-blocked',
  find(c, found) {
    if (explained(found, 'handshake')) return [];
    return (c.e.coldStart ?? []).flatMap((d) => {
      const judged = judgeDirection(d);
      if (judged.status !== 'fail') return [];
      const from = nodeOf(c.inv, d.from);
      const to = nodeOf(c.inv, d.to);
      const toSite = siteOf(c.inv, to);
      const at = formatEndpoint(d.endpoint);
      const viaForward = toSite.kind === 'nat' && from.site !== to.site && d.endpoint.host === publicAddressOf(toSite);
      const noListener = arrivedAtClosedPort(d);
      const works = c.handshakeOk && !c.pingFails;
      const now = works
        ? `The tunnel works now only because ${to.name} dialled out first: the answers to its own flow are let in while conntrack remembers it, and WireGuard roams to where its packets come from. Once that entry expires, or ${to.name} restarts, ${from.name} cannot get through.`
        : '';
      const moved = viaForward ? c.e.moved?.find((m) => m.site === toSite.name) : undefined;
      const sightings = moved
        ? ` The live endpoints do not agree on site ${toSite.name}'s public address: ${describeWitnesses(moved.sightings)} at ${moved.seen}, while ${describeOtherSightings(moved)}; ${movedAddressFix(moved)}.`
        : '';
      const evidence = [`verify cold-start: ${judged.message}`, ...judged.evidence, ...c.ev];
      if (noListener)
        return [
          c.make(
            'cold-start-blocked',
            to.name,
            {
              summary: `${from.name}'s datagrams to ${at} reach ${to.name}, but nothing listens on that port`,
              explanation:
                `A new flow from ${from.name} to ${at} arrives at ${to.name} on a port where WireGuard does not listen (its UDP NoPorts counter grew), so ${from.name} cannot start a session with it. ${now}`.trim(),
              fix: viaForward
                ? `On the router of site ${toSite.name}: forward UDP ${at} to ${to.address}:${to.listenPort} (${to.name}'s listen port), then run meshctl verify.`
                : `Make ${to.name} listen on UDP ${d.endpoint.port} (its listenPort in ${c.inv.source}; meshctl up sets it), then run meshctl verify.`,
            },
            evidence,
          ),
        ];
      return [
        c.make(
          'cold-start-blocked',
          viaForward ? `router:${toSite.name}` : to.name,
          {
            summary: `${from.name} cannot start a session with ${to.name}: a new flow to ${at} does not arrive`,
            explanation:
              `${from.name} sent ${d.sent} datagrams from a fresh source port to ${at} and ${to.name}'s UDP counters did not grow by them${viaForward ? `: the port-forward ${at} -> ${to.address}:${to.listenPort} on the router of site ${toSite.name} is missing or points elsewhere, or a firewall on the way drops new flows` : `: a firewall on ${to.name} or on the way drops new UDP flows to port ${d.endpoint.port}`}. ${now}${sightings}`.trim(),
            fix: viaForward
              ? `On the router of site ${toSite.name}: forward UDP ${at} to ${to.address}:${to.listenPort} (${to.name}); if the router forwards another port to ${to.name}, set that port as ${to.name}'s forwardedPort in ${c.inv.source} and re-run meshctl up (its baseline probes the forward). Then run meshctl verify.`
              : `Allow new UDP flows to port ${d.endpoint.port} on ${to.name} and on the way to it (see ${to.name}'s firewall check in meshctl verify), then run meshctl verify.`,
          },
          evidence,
        ),
      ];
    });
  },
};

/** Symptom rule: no handshake, read from the captures (where the sender's datagrams went). */
const handshakeCaptures: Rule = {
  name: 'handshake-captures',
  find(c, found) {
    if (c.handshakeOk || explained(found, 'handshake') || !c.e.capture) return [];
    const { endpoint, rSite, viaForward } = dialPath(c);
    const counts = c.e.capture.counts;
    const at = counts[c.R];
    const capEv = [...captureLines(c.e), ...c.ev];
    // the marker was sent only when the sender has an endpoint to send it to (the provocation says so)
    if (endpoint && at && at.udpFromSender === 0 && c.e.capture.markerSent) {
      const fwd = formatEndpoint(endpoint);
      return [
        c.make(
          'no-udp-arriving',
          viaForward ? `router:${rSite.name}` : c.R,
          {
            summary: `no UDP from ${c.S} arrives at ${c.R}`,
            explanation: `${c.S} sent datagrams to ${fwd}, and no capture in site ${rSite.name} saw any of them: ${viaForward ? `the router's forward ${fwd} is missing, or ` : ''}a firewall on the way drops them.`,
            fix: viaForward
              ? `Check the port-forward ${fwd} -> ${c.rNode.address}:${c.rNode.listenPort} on the router of site ${rSite.name}, and firewalls between ${c.S} and ${c.R}.`
              : `Check firewalls and routing between ${c.S} and ${c.R} for UDP ${c.rNode.listenPort}.`,
          },
          capEv,
        ),
      ];
    }
    if (at && at.initiationsFromSender > 0 && at.responsesToSender === 0)
      return [
        c.make(
          'no-handshake-answer',
          c.R,
          {
            summary: `${c.R} receives ${c.S}'s handshakes but does not answer`,
            explanation: `Handshake initiations from ${c.S} arrive at ${c.R} (${at.initiationsFromSender} seen) but ${c.R} sends no response: WireGuard silently drops initiations it cannot authenticate, i.e. ${c.S}'s key is not the one ${c.R} knows (a wrong or swapped public key), or ${c.S}'s source address is not allowed.`,
            fix: `Compare ${c.S}'s public key (wg show ${c.iface} public-key on ${c.S}) with the PublicKey of its [Peer] block on ${c.R}, and ${c.R}'s key with ${c.S}'s; re-run meshctl up to redistribute keys.`,
          },
          capEv,
        ),
      ];
    if (at && at.responsesToSender > 0 && (counts[c.S]?.responsesFromReceiver ?? 0) === 0)
      return [
        c.make(
          'no-udp-arriving',
          c.S,
          {
            summary: `${c.R}'s handshake answers never reach ${c.S}`,
            explanation: `${c.R} answers ${c.S}'s handshakes (${at.responsesToSender} responses sent) but none arrive at ${c.S}: the way back is blocked (firewall on ${c.S}'s side, or a NAT mapping that sends them elsewhere).`,
            fix: `Check firewalls and NAT between ${c.R} and ${c.S} for UDP answers to ${c.S}'s port ${c.sNode.listenPort}.`,
          },
          capEv,
        ),
      ];
    return [];
  },
};

/** Symptom rule: no handshake and nothing found that explains it. */
const noHandshake: Rule = {
  name: 'no-handshake',
  find(c, found) {
    if (c.handshakeOk || explained(found, 'handshake')) return [];
    const endpoint = endpointFor(c.inv, c.sNode, c.rNode);
    return [
      c.make(
        'no-handshake',
        undefined,
        {
          summary: `no handshake between ${c.S} and ${c.R}`,
          explanation: `Neither side has completed a handshake with the other recently. Datagrams are lost on the way (${endpoint ? `${c.S} dials ${formatEndpoint(endpoint)}` : `${c.S} cannot dial ${c.R} and waits for it`}), or a key does not match.${c.e.capture ? '' : ' Run with --tcpdump to see where the datagrams go.'}`,
          // never the command just run (Q3: a --tcpdump run told to run itself again)
          fix: c.e.capture
            ? `Check firewalls and NAT between ${c.S} and ${c.R} for UDP ${c.rNode.listenPort}${endpoint ? ` (${c.S} dials ${formatEndpoint(endpoint)})` : ''}, and compare both sides' keys and endpoints with the design (meshctl verify); the pcaps in the bundle show what was captured.`
            : `Run: meshctl debug --pair ${c.S},${c.R} --tcpdump`,
        },
        c.ev,
      ),
    ];
  },
};

// ---------------------------------------------------------------------------------------------------------------
// Inside the tunnel

const firewallIcmp: Rule = {
  name: 'firewall-icmp',
  find(c) {
    if (!c.pingFails) return [];
    return [c.S, c.R].filter(c.reached).flatMap((n) => {
      const rules = icmpDropOnIfaceRules(c.cl(n).firewall, c.iface);
      if (!rules.length) return [];
      return [
        c.make(
          'firewall-icmp',
          n,
          {
            summary: `${n}'s firewall drops ICMP on ${c.iface}`,
            explanation: `${n} drops ICMP arriving on (or leaving by) ${c.iface}, so pings between ${c.S} and ${c.R} fail${c.handshakeOk ? ' while the tunnel is fine' : ''}.`,
            fix: `On ${n}: remove the rule, or accept traffic on ${c.iface} before it (iptables -I INPUT -i ${c.iface} -j ACCEPT).`,
          },
          [...rules.map((r) => `firewall on ${n}: ${r}`), ...c.ev],
        ),
      ];
    });
  },
};

const rpFilter: Rule = {
  name: 'rp-filter',
  find(c) {
    if (!c.handshakeOk || !c.pingFails) return [];
    return [c.S, c.R].filter(c.reached).flatMap((n) => {
      const rp = c.cl(n).rpFilter;
      if (rp.effective !== 1) return [];
      return [
        c.make(
          'rp-filter',
          n,
          {
            summary: `strict rp_filter on ${n} drops the tunnel's packets`,
            explanation: `The handshake works, but ${n} has rp_filter strict (all=${rp.all}, ${c.iface}=${rp.iface ?? '?'}): packets whose source is not routed back through ${c.iface} are dropped.`,
            fix: `On ${n}: sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.${c.iface}.rp_filter=2 (loose), persisted in /etc/sysctl.d/99-wireguard.conf.`,
          },
          [`rp_filter all=${rp.all} default=${rp.default} ${c.iface}=${rp.iface}`, ...c.ev],
        ),
      ];
    });
  },
};

/** Symptom rule: the handshake works, pings fail, and nothing found explains it. */
const pingFails: Rule = {
  name: 'ping-fails',
  find(c, found) {
    if (!c.handshakeOk || !c.pingFails || explained(found, 'ping')) return [];
    const capEv = c.e.capture
      ? Object.entries(c.e.capture.counts).map(
          ([n, cc]) => `capture on ${n}: ${cc.icmpRequestsIn} echo requests in on ${c.iface}, ${cc.icmpRepliesOut} replies out`,
        )
      : [];
    const at = c.e.capture?.counts[c.R];
    if (at && at.icmpRequestsIn > 0 && at.icmpRepliesOut === 0)
      return [
        c.make(
          'firewall-icmp',
          c.R,
          {
            summary: `${c.R} receives pings on ${c.iface} but does not answer`,
            explanation: `Echo requests from ${c.S} arrive at ${c.R} through the tunnel and no reply leaves: a firewall (or policy routing) on ${c.R} drops them.`,
            fix: `On ${c.R}: check iptables-save / nft list ruleset for rules on ${c.iface} or ICMP.`,
          },
          [...capEv, ...c.ev],
        ),
      ];
    return [
      c.make(
        'handshake-ok-ping-fails',
        undefined,
        {
          summary: `the handshake works but pings between ${c.S} and ${c.R} fail`,
          explanation:
            'Keys, AllowedIPs and routes look right and the peers shake hands, yet ICMP does not pass: look for firewall rules outside iptables, policy routing, or a host that does not answer pings.',
          // never the command just run: with captures, only what they cannot show
          fix: c.e.capture
            ? 'Check nft list ruleset and ip rule on both nodes.'
            : `Run: meshctl debug --pair ${c.S},${c.R} --tcpdump, and check nft list ruleset and ip rule on both nodes.`,
        },
        [...capEv, ...c.ev],
      ),
    ];
  },
};

/**
 * The fix for an MTU black hole: the largest interface MTU the path carries, offered as `mesh.mtu` only when the
 * inventory validates with it; else the reason it cannot be, and the fix outside the inventory.
 */
function mtuFix(c: PairContext, pathMtu: number, outer: number): { fix: string; patch?: InventoryPatch } {
  const underlay = `fix the underlay instead: raise the MTU of the link on the way that loses UDP datagrams over about ${outer} bytes, or remove the filter that drops them (or make it send ICMP "fragmentation needed"), then run meshctl verify`;
  const patch: InventoryPatch = { path: ['mesh', 'mtu'], value: pathMtu };
  if (c.e.inventoryText === undefined)
    return { fix: `No inventory change was checked (the inventory text was not available); ${underlay}.` };
  const checked = checkInventoryPatch(c.e.inventoryText, c.inv.source, [patch]);
  if (checked.ok)
    return {
      fix: `Set ${describePatch(patch)} in ${c.inv.source} (the inventory validates with it) and re-run meshctl up; or ${underlay}.`,
      patch,
    };
  // the validation's own words, without the `file:line:col: mesh.mtu:` that would read like a suggestion
  const why = checked.problems.map((p) => p.replace(/^.*?mesh\.mtu: /, '')).join('; ');
  return {
    fix: `No value of mesh.mtu fixes this: the path carries at most ${pathMtu}-byte packets in the tunnel, and the inventory validation rejects an MTU of ${pathMtu} (${why}). So ${underlay}.`,
  };
}

const mtu: Rule = {
  name: 'mtu',
  find(c) {
    const pm = [c.e.forward?.pmtu, c.e.backward?.pmtu].find((p) => p && !p.skipped && !p.ok);
    if (!pm) return [];
    const pathMtu = pm.largest + 28;
    // WireGuard adds 32 bytes to the padded packet, then UDP 8 and IPv4 20
    const outer = pathMtu + 60;
    const { fix, patch } = mtuFix(c, pathMtu, outer);
    return [
      {
        ...c.make(
          'mtu',
          undefined,
          {
            summary: `MTU black hole between ${c.S} and ${c.R}: packets over ${pathMtu} bytes are lost`,
            explanation: `Small pings pass but the largest payload that passes with DF set is ${pm.largest} bytes instead of ${pm.expected} (interface MTU ${pm.expected + 28}). Somewhere on the underlay path large UDP datagrams are dropped without an ICMP "fragmentation needed" coming back.`,
            fix,
          },
          [`DF probes: ${pm.tries.map((t) => `${t.size}:${t.ok ? 'ok' : 'lost'}`).join(' ')}`, ...c.ev],
        ),
        ...(patch ? { inventoryPatch: [patch] } : {}),
      },
    ];
  },
};

// ---------------------------------------------------------------------------------------------------------------

/**
 * The rules, in the order of the runbook (and of the report). Rules that need a node's evidence skip a node that
 * could not be examined; symptom rules (no handshake, ping fails) come after every specific rule that explains
 * the same symptom.
 */
export const RULES: readonly Rule[] = [
  unconnectable,
  nodeUnreachable,
  tunnelMissing,
  ownKey,
  peerEntry,
  allowedIps,
  missingRoute,
  listenPort,
  wrongLanEndpoint,
  wrongEndpoint,
  firewallUdp,
  forwardMisdirected,
  publicAddressMoved,
  coldStartBlocked,
  handshakeCaptures,
  noHandshake,
  firewallIcmp,
  rpFilter,
  pingFails,
  mtu,
];

/**
 * The pair has no tunnel in the design to judge: one end's designed config has no [Peer] for the other (the pair is
 * relayed, or the design lacks the node). Every rule reads both ends' designed peers, so nothing about the tunnel
 * can be judged; this says so plainly instead of guessing (Q4: debug crashed on such a pair with a TypeError).
 */
function notDesigned(e: PairEvidence): Diagnosis | undefined {
  const lacks = [
    [e.sender, e.receiver],
    [e.receiver, e.sender],
  ].filter(([self, other]) => !e.desired.get(self!)?.peers.some((p) => p.name === other));
  if (lacks.length === 0) return undefined;
  const which = lacks.map(([self, other]) => `${self} has no [Peer] for ${other}`).join(' and ');
  return {
    sender: e.sender,
    receiver: e.receiver,
    cause: 'not-designed',
    summary: `${e.sender} and ${e.receiver} have no tunnel of their own in the design: not judged`,
    explanation: `In the designed configs ${which}, so there is no direct tunnel between them to examine (a relayed pair's traffic rides on each end's tunnel to its relay). debug cannot judge this pair itself.`,
    fix: `Examine the legs through the relay instead (meshctl validate shows the pair's path), or run meshctl up to re-plan the mesh.`,
    evidence: lacks.map(([self, other]) => `designed config of ${self}: no [Peer] ${other}`),
  };
}

/**
 * Every cause the evidence shows for the pair, in runbook order; a single 'healthy' diagnosis when none.
 * Pure: reads the evidence (and validates suggested inventory changes against `e.inventoryText`), touches nothing.
 */
export function classifyPair(e: PairEvidence): Diagnosis[] {
  const unjudged = notDesigned(e);
  if (unjudged) return [unjudged];
  const c = context(e);
  const found: Diagnosis[] = [];
  const blind = !c.reached(c.S) || !c.reached(c.R);
  for (const rule of RULES) {
    // symptom rules need both ends' evidence; without it the only causes are the ones that can be seen
    if (blind && (rule === handshakeCaptures || rule === noHandshake || rule === pingFails)) continue;
    found.push(...rule.find(c, found));
  }
  if (found.length) return found;
  // only the directions whose cold-start check passed: one that warned (not measured, or some datagrams lost) is no
  // proof that side can start a session from cold
  const fromCold = (e.coldStart ?? []).filter(directionPasses).map((d) => d.from);
  return [
    c.make(
      'healthy',
      undefined,
      {
        summary: `${c.S} and ${c.R} talk fine`,
        explanation: `Handshakes are recent, pings pass both ways and large packets pass with DF set${fromCold.length ? `; ${fromCold.join(' and ')} can start a session from cold` : ''}.`,
        fix: 'Nothing to do.',
      },
      [...c.ev, ...coldStartEvidence(e)],
    ),
  ];
}

/**
 * The cold-start evidence of a pair called healthy, each direction of it (finding 19 of the last session: a pair
 * expected COLD-START-BLOCKED was once called HEALTHY, and nothing said why): its verdict, the bursts its sender
 * sent, the receiver's InDatagrams/NoPorts growth over the window that judged it, and how many senders that window
 * counted at once (judgeDirection's evidence, ../checks/cold-start.ts); then the probe's round trips and duration.
 */
export function coldStartEvidence(e: Pick<PairEvidence, 'coldStart' | 'coldStartRun' | 'sender' | 'receiver'>): string[] {
  const directions = e.coldStart ?? [];
  if (directions.length === 0) return [`cold start ${e.sender} <-> ${e.receiver}: not probed (no designed direction measured)`];
  const lines = directions.flatMap((d) => {
    const j = judgeDirection(d);
    return [`cold start ${d.from} -> ${d.to}: ${j.status} (${j.message})`, ...j.evidence.map((x) => `  ${x}`)];
  });
  const run = e.coldStartRun;
  if (run) lines.push(`cold-start probe: ${run.roundTrips} round trip${run.roundTrips === 1 ? '' : 's'}, ${run.ms} ms`);
  return lines;
}
