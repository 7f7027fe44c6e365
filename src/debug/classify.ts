/**
 * The debug playbook as a pure decision function: two-ended evidence about one pair in, one cause out, with an
 * explanation and a suggested fix (printed, never applied). The order of the rules is the order of the runbook:
 * is the tunnel there at all, are the keys and AllowedIPs right, are the routes right, do datagrams arrive (and
 * where), then what happens inside the tunnel (handshake fine but ping fails, large packets lost).
 */
import type { Inventory, Node } from '../inventory/types.js';
import { siteOf } from '../inventory/types.js';
import type { DesiredNodeConfig, DesiredPeer } from '../topology/desired.js';
import type { LivePeer } from '../render/wgdump.js';
import { endpointFor, formatEndpoint } from '../topology/endpoints.js';
import type { NodeChecklist } from '../checks/probes.js';
import type { MatrixCell, Matrix } from '../checks/ping-matrix.js';
import type { CaptureCounts } from './capture.js';
import { REJECT_AFTER_TIME_S, wireguardPaths } from '../remote/wireguard.js';
import { icmpDropOnIfaceRules, udpDropRules } from '../facts/definitions.js';

export const CAUSES = [
  'node-unreachable',
  'service-down',
  'interface-missing',
  'no-private-key',
  'wrong-public-key',
  'allowed-ips',
  'missing-route',
  'wrong-lan-endpoint',
  'firewall-udp',
  'forward-misdirected',
  'no-udp-arriving',
  'no-handshake-answer',
  'no-handshake',
  'rp-filter',
  'firewall-icmp',
  'handshake-ok-ping-fails',
  'mtu',
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
  /** per captured node, when --tcpdump ran */
  capture?: { counts: Record<string, CaptureCounts>; markerSent: boolean; errors?: Record<string, string> };
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
  evidence: string[];
}

/** a handshake older than REJECT_AFTER_TIME leaves no usable session (../remote/wireguard.ts) */
const HANDSHAKE_FRESH_SECONDS = REJECT_AFTER_TIME_S;

const nodeOf = (inv: Inventory, name: string): Node => inv.nodes.find((n) => n.name === name)!;

function livePeers(side: SideEvidence): LivePeer[] {
  return side.peersAfter?.length ? side.peersAfter : (side.checklist?.peers ?? []);
}

function handshakeAge(side: SideEvidence, peerKey: string): number | undefined {
  const peer = livePeers(side).find((p) => p.publicKey === peerKey);
  const now = side.now ?? side.checklist?.now;
  if (!peer?.latestHandshake || now === undefined) return undefined;
  return Math.max(0, now - peer.latestHandshake);
}

// the firewall rules are judged by the facts layer (one definition for up's baseline, verify and debug)
export { icmpDropOnIfaceRules, udpDropRules };

function d(
  e: PairEvidence,
  cause: CauseId,
  node: string | undefined,
  summary: string,
  explanation: string,
  fix: string,
  evidence: string[],
): Diagnosis {
  return { sender: e.sender, receiver: e.receiver, cause, ...(node ? { node } : {}), summary, explanation, fix, evidence };
}

const pingLine = (label: string, cell?: MatrixCell) =>
  cell
    ? `ping ${label}: ${cell.received}/${cell.transmitted} answered${cell.rttMs !== undefined ? `, ${cell.rttMs} ms` : ''}${cell.pmtu ? `; largest DF payload ${cell.pmtu.largest}/${cell.pmtu.expected}` : ''}`
    : `ping ${label}: not run`;

export function classifyPair(e: PairEvidence): Diagnosis {
  const inv = e.inventory;
  const iface = inv.mesh.interface;
  const S = e.sender;
  const R = e.receiver;
  const both = [S, R];
  const base = [pingLine(`${S} -> ${R}`, e.forward), pingLine(`${R} -> ${S}`, e.backward)];

  // 1. can we see both ends at all
  for (const n of both) {
    const side = e.sides[n];
    if (!side?.reached || !side.checklist) {
      return d(
        e,
        'node-unreachable',
        n,
        `${n} could not be reached over SSH`,
        `meshctl could not log in to ${n} (${side?.error ?? 'no connection'}), so only one end of the pair can be examined.`,
        `Check that ${n} is up and reachable over SSH, then run debug again.`,
        base,
      );
    }
  }
  const cl = (n: string) => e.sides[n]!.checklist!;

  // 2. the tunnel exists on both ends
  for (const n of both) {
    const c = cl(n);
    if (c.iface.exists && c.wgAvailable) continue;
    const evidence = [
      `ip addr: ${c.iface.error ?? (c.iface.exists ? `${iface} exists` : 'missing')}`,
      `wg: ${c.wgError ?? 'ok'}`,
      `service: ${c.service.systemd ? `${wireguardPaths(iface).service} ${c.service.active ?? '?'} (${c.service.enabled ?? '?'})` : 'no systemd'}`,
      ...base,
    ];
    if (c.service.systemd && c.service.active !== 'active') {
      return d(
        e,
        'service-down',
        n,
        `${wireguardPaths(iface).service} is not running on ${n}`,
        `The service is ${c.service.active ?? 'not active'} on ${n}, so ${iface} does not exist there and no peer can reach it.`,
        `On ${n}: systemctl enable --now ${wireguardPaths(iface).service} (and journalctl -u ${wireguardPaths(iface).service} if it fails to start).`,
        evidence,
      );
    }
    return d(
      e,
      'interface-missing',
      n,
      `${iface} does not exist on ${n}`,
      `${n} has no ${iface} interface${c.service.systemd ? ` although ${wireguardPaths(iface).service} reports ${c.service.active}` : ' and no systemd to keep it up'}.`,
      `On ${n}: wg-quick up ${iface}; check ${wireguardPaths(iface).config} and that wireguard-go or the kernel module is available.`,
      evidence,
    );
  }

  // 3. keys: each side must hold the other's public key, and run with the key the other was given
  const dS = e.desired.get(S)!;
  const dR = e.desired.get(R)!;
  const wantS = dS.peers.find((p) => p.name === R)!; // S's design entry for R
  const wantR = dR.peers.find((p) => p.name === S)!;
  const keyOwner = (key: string) => inv.nodes.find((n) => e.desired.get(n.name)?.publicKey === key)?.name;
  for (const [self, want, other] of [
    [S, wantS, R],
    [R, wantR, S],
  ] as Array<[string, DesiredPeer, string]>) {
    const c = cl(self);
    if (!c.livePublicKey) {
      return d(
        e,
        'no-private-key',
        self,
        `${self}'s ${iface} runs without a private key`,
        `${self}'s ${iface} exists but holds no private key, so it can neither answer nor start a handshake. \`wg syncconf\`/\`wg setconf\` from a file without PrivateKey do this, and so does the stock \`systemctl reload ${wireguardPaths(iface).service}\` where the file leaves the key to PostUp.`,
        `On ${self}: wg set ${iface} private-key ${wireguardPaths(iface).privateKey}; or re-run meshctl up, which does so and installs a reload drop-in that keeps the key.`,
        [`wg public-key: (none)`, `${iface}.pub: ${c.filePublicKey ?? '(none)'}`, ...base],
      );
    }
    if (c.livePublicKey && c.filePublicKey && c.livePublicKey !== c.filePublicKey) {
      return d(
        e,
        'wrong-public-key',
        self,
        `${self} runs with another key than its peers were given`,
        `${self}'s ${iface} uses ${c.livePublicKey} but ${wireguardPaths(iface).publicKey} (what its peers were configured with) says ${c.filePublicKey}; its peers drop its handshakes.`,
        `Restart ${wireguardPaths(iface).service} on ${self} so it loads ${wireguardPaths(iface).privateKey}, or re-run meshctl up so the peers get the right key.`,
        [`wg public-key: ${c.livePublicKey}`, `${iface}.pub: ${c.filePublicKey}`, ...base],
      );
    }
    const peers = livePeers(e.sides[self]!);
    if (!peers.some((p) => p.publicKey === want.publicKey)) {
      const holder = peers.find((p) => p.allowedIps.some((ip) => want.allowedIps.includes(ip)));
      const holderName = holder ? (keyOwner(holder.publicKey) ?? 'no node of the inventory') : undefined;
      const conf = c.config?.peers.find((p) => p.allowedIps.some((ip) => want.allowedIps.includes(ip)));
      return d(
        e,
        'wrong-public-key',
        self,
        `${self}'s peer entry for ${other} holds the wrong public key`,
        holder
          ? `On ${self}, ${other}'s address ${want.allowedIps.join(', ')} sits under the public key ${holder.publicKey}, which belongs to ${holderName}, not to ${other} (${want.publicKey}). ${other}'s handshakes are dropped by ${self} and ${self}'s packets for ${other} are encrypted for the wrong node.`
          : `${self} has no peer with ${other}'s public key ${want.publicKey}; handshakes between them cannot succeed.`,
        `Fix the [Peer] block for ${other} in ${wireguardPaths(iface).config} on ${self}${conf ? ` (line ${conf.lines.publickey ?? conf.line})` : ''}: PublicKey = ${want.publicKey}; or re-run meshctl up.`,
        [...(holder ? [`wg on ${self}: peer ${holder.publicKey} allowed-ips ${holder.allowedIps.join(',')}`] : []), ...base],
      );
    }
  }

  // 4. AllowedIPs: exactly the other's /32, under its key
  for (const [self, want, other] of [
    [S, wantS, R],
    [R, wantR, S],
  ] as Array<[string, DesiredPeer, string]>) {
    const live = livePeers(e.sides[self]!).find((p) => p.publicKey === want.publicKey)!;
    const has = want.allowedIps.every((ip) => live.allowedIps.includes(ip));
    const stolen = livePeers(e.sides[self]!).find((p) => p !== live && p.allowedIps.some((ip) => want.allowedIps.includes(ip)));
    if (!has || stolen) {
      return d(
        e,
        'allowed-ips',
        self,
        `${self}'s AllowedIPs for ${other} are wrong`,
        `On ${self}, the peer ${other} has AllowedIPs ${live.allowedIps.join(', ') || '(none)'} instead of ${want.allowedIps.join(', ')}${stolen ? `, and ${want.allowedIps.join(', ')} is claimed by another peer (${keyOwner(stolen.publicKey) ?? stolen.publicKey})` : ''}. WireGuard routes packets to a peer, and accepts packets from it, only for its AllowedIPs.`,
        `Set AllowedIPs = ${want.allowedIps.join(', ')} in ${other}'s [Peer] block on ${self} (${wireguardPaths(iface).config}) and reload, or re-run meshctl up.`,
        [`wg on ${self}: peer ${other} allowed-ips ${live.allowedIps.join(',') || '(none)'}`, ...base],
      );
    }
  }

  // 5. a /32 route via the interface on both ends
  for (const [self, want, other] of [
    [S, wantS, R],
    [R, wantR, S],
  ] as Array<[string, DesiredPeer, string]>) {
    const ip = want.allowedIps[0]!.replace(/\/32$/, '');
    const route = cl(self).routes.find((r) => r.dst === ip);
    if (route && route.dev !== iface) {
      return d(
        e,
        'missing-route',
        self,
        `${self} has no /32 route to ${other} via ${iface}`,
        `On ${self}, \`ip route get ${ip}\` goes ${route.dev ? `via ${route.dev}${route.gateway ? ` ${route.gateway}` : ''}` : `nowhere (${route.error ?? 'no route'})`}: packets for ${other} (and replies to it) never enter the tunnel, although handshakes can still work.`,
        `On ${self}: ip route add ${ip}/32 dev ${iface} (wg-quick adds it from AllowedIPs; restarting ${wireguardPaths(iface).service} restores it).`,
        [
          `ip route get ${ip} on ${self}: ${route.dev ? `dev ${route.dev}` : ''}${route.gateway ? ` via ${route.gateway}` : ''}${route.error ? ` ${route.error}` : ''}`,
          ...base,
        ],
      );
    }
  }

  // 6. inside one site: the LAN endpoint each side dials must be the other's LAN address
  const sNode = nodeOf(inv, S);
  const rNode = nodeOf(inv, R);
  if (sNode.site === rNode.site) {
    for (const [self, want, other] of [
      [S, wantS, R],
      [R, wantR, S],
    ] as Array<[string, DesiredPeer, string]>) {
      const c = cl(self);
      const conf = c.config?.peers.find((p) => p.publicKey === want.publicKey);
      const live = c.peers.find((p) => p.publicKey === want.publicKey);
      const wrongConf = conf && want.endpoint && conf.endpoint !== want.endpoint ? (conf.endpoint ?? '(none)') : undefined;
      const wrongLive = live && want.endpoint && live.endpoint && live.endpoint !== want.endpoint ? live.endpoint : undefined;
      if (wrongConf || wrongLive) {
        const wrong = wrongLive ?? wrongConf!;
        const edgeWorks = edgeContext(e, S, R);
        return d(
          e,
          'wrong-lan-endpoint',
          self,
          `${self} dials ${other} at ${wrong} instead of its LAN address ${want.endpoint}`,
          `${S} and ${R} share site ${sNode.site}, so they talk over the LAN; ${self}'s endpoint for ${other} is ${wrong}${wrongConf && wrongLive && wrongConf !== wrongLive ? ` (file: ${wrongConf})` : ''}, where nothing answers. ${edgeWorks}`.trim(),
          `Set Endpoint = ${want.endpoint} in ${other}'s [Peer] block on ${self} (${wireguardPaths(iface).config}${conf?.lines.endpoint ? ` line ${conf.lines.endpoint}` : ''}), or fix ${other}'s address in the inventory and re-run meshctl up.`,
          [
            ...(wrongLive ? [`wg on ${self}: peer ${other} endpoint ${wrongLive}`] : []),
            ...(wrongConf ? [`${iface}.conf on ${self}: Endpoint = ${wrongConf}`] : []),
            ...base,
          ],
        );
      }
    }
  }

  // 7. handshakes
  const ageS = handshakeAge(e.sides[S]!, wantS.publicKey);
  const ageR = handshakeAge(e.sides[R]!, wantR.publicKey);
  const handshakeOk = (ageS !== undefined && ageS < HANDSHAKE_FRESH_SECONDS) || (ageR !== undefined && ageR < HANDSHAKE_FRESH_SECONDS);
  const hsLine = `latest handshake: ${S} sees ${R} ${ageS === undefined ? 'never' : `${ageS}s ago`}, ${R} sees ${S} ${ageR === undefined ? 'never' : `${ageR}s ago`}`;
  const ev = [hsLine, ...base];

  // a firewall dropping WireGuard's UDP on either end
  for (const n of both) {
    const port = nodeOf(inv, n).listenPort;
    const rules = udpDropRules(cl(n).firewall, port);
    if (rules.length && (!handshakeOk || (e.forward && !e.forward.ok) || (e.backward && !e.backward.ok))) {
      return d(
        e,
        'firewall-udp',
        n,
        `${n}'s firewall drops UDP ${port}`,
        `${n} drops incoming WireGuard datagrams on its listen port, so no handshake with ${n === S ? R : S} can complete (captures on ${n} may still show the datagrams: tcpdump sees them before the firewall).`,
        `On ${n}: remove the rule, or allow UDP ${port} before it (e.g. iptables -I INPUT -p udp --dport ${port} -j ACCEPT).`,
        [...rules.map((r) => `firewall on ${n}: ${r}`), ...ev],
      );
    }
  }

  // 7a. a forward (or address) that delivers the sender's datagrams to another node. Checked before handshakes:
  // the pair may still work because the receiver dials out and WireGuard roams, hiding that nobody can dial in.
  {
    const endpoint = endpointFor(inv, sNode, rNode);
    const rSite = siteOf(inv, rNode);
    const viaForward = endpoint && rSite.kind === 'nat' && endpoint.host === rSite.publicIp;
    const counts = e.capture?.counts;
    const at = counts?.[R];
    const elsewhere = counts ? Object.entries(counts).filter(([n, c]) => n !== R && n !== S && c.markers > 0) : [];
    if (endpoint && counts && at && at.markers === 0 && elsewhere.length) {
      const wrongNode = elsewhere[0]![0];
      const fwd = formatEndpoint(endpoint);
      return d(
        e,
        'forward-misdirected',
        viaForward ? `router:${rSite.name}` : wrongNode,
        viaForward
          ? `the forward ${fwd} should reach ${R} but datagrams arrive at ${wrongNode}`
          : `datagrams for ${R} at ${fwd} arrive at ${wrongNode}`,
        viaForward
          ? `${S} dials ${R} at ${fwd}. The captures show ${S}'s datagrams (marker${elsewhere[0]![1].initiationsFromSender ? ' and handshake initiations' : ''}) arriving at ${wrongNode} and none at ${R}: the router of site ${rSite.name} forwards ${fwd} to the wrong node. ${wrongNode} cannot decrypt a handshake meant for ${R} and stays silent; the pair only works while ${R} dials out itself.`
          : `${S} dials ${R} at ${fwd}, but its datagrams arrive at ${wrongNode}: that address belongs to another node.`,
        viaForward
          ? `On the router of site ${rSite.name}: forward UDP ${rSite.publicIp}:${endpoint.port} to ${rNode.address}:${rNode.listenPort} (${R}), not to ${nodeOf(inv, wrongNode).address} (${wrongNode}).`
          : `Fix ${R}'s endpoint on ${S} (or the address in the inventory) and re-run meshctl up.`,
        [...captureLines(e), ...ev],
      );
    }
  }

  if (!handshakeOk) {
    const endpoint = endpointFor(inv, sNode, rNode);
    const rSite = siteOf(inv, rNode);
    const viaForward = endpoint && rSite.kind === 'nat' && endpoint.host === rSite.publicIp;
    if (e.capture) {
      const counts = e.capture.counts;
      const at = counts[R];
      const capEv = captureLines(e);
      if (at && at.udpFromSender === 0 && e.capture.markerSent) {
        return d(
          e,
          'no-udp-arriving',
          viaForward ? `router:${rSite.name}` : R,
          `no UDP from ${S} arrives at ${R}`,
          `${S} sent datagrams to ${endpoint ? formatEndpoint(endpoint) : R}, and no capture in site ${rSite.name} saw any of them: ${viaForward ? `the router's forward ${formatEndpoint(endpoint!)} is missing, or ` : ''}a firewall on the way drops them.`,
          viaForward
            ? `Check the port-forward ${formatEndpoint(endpoint!)} -> ${rNode.address}:${rNode.listenPort} on the router of site ${rSite.name}, and firewalls between ${S} and ${R}.`
            : `Check firewalls and routing between ${S} and ${R} for UDP ${rNode.listenPort}.`,
          [...capEv, ...ev],
        );
      }
      if (at && at.initiationsFromSender > 0 && at.responsesToSender === 0) {
        return d(
          e,
          'no-handshake-answer',
          R,
          `${R} receives ${S}'s handshakes but does not answer`,
          `Handshake initiations from ${S} arrive at ${R} (${at.initiationsFromSender} seen) but ${R} sends no response: WireGuard silently drops initiations it cannot authenticate, i.e. ${S}'s key is not the one ${R} knows (a wrong or swapped public key), or ${S}'s source address is not allowed.`,
          `Compare ${S}'s public key (wg show ${iface} public-key on ${S}) with the PublicKey of its [Peer] block on ${R}, and ${R}'s key with ${S}'s; re-run meshctl up to redistribute keys.`,
          [...capEv, ...ev],
        );
      }
      if (at && at.responsesToSender > 0 && (counts[S]?.responsesFromReceiver ?? 0) === 0) {
        return d(
          e,
          'no-udp-arriving',
          S,
          `${R}'s handshake answers never reach ${S}`,
          `${R} answers ${S}'s handshakes (${at.responsesToSender} responses sent) but none arrive at ${S}: the way back is blocked (firewall on ${S}'s side, or a NAT mapping that sends them elsewhere).`,
          `Check firewalls and NAT between ${R} and ${S} for UDP answers to ${S}'s port ${sNode.listenPort}.`,
          [...capEv, ...ev],
        );
      }
    }
    return d(
      e,
      'no-handshake',
      undefined,
      `no handshake between ${S} and ${R}`,
      `Neither side has completed a handshake with the other. Datagrams are lost on the way (${endpoint ? `${S} dials ${formatEndpoint(endpoint)}` : `${S} cannot dial ${R} and waits for it`}), or a key does not match.${e.capture ? '' : ' Run with --tcpdump to see where the datagrams go.'}`,
      `Run: meshctl debug --pair ${S},${R} --tcpdump`,
      ev,
    );
  }

  // 8. the handshake works: what happens inside the tunnel
  const pingFails = (e.forward && !e.forward.ok) || (e.backward && !e.backward.ok);
  if (pingFails) {
    for (const n of both) {
      const rules = icmpDropOnIfaceRules(cl(n).firewall, iface);
      if (rules.length) {
        return d(
          e,
          'firewall-icmp',
          n,
          `${n}'s firewall drops ICMP on ${iface}`,
          `The handshake between ${S} and ${R} works, but ${n} drops ICMP arriving on (or leaving by) ${iface}, so pings fail while the tunnel is fine.`,
          `On ${n}: remove the rule, or accept traffic on ${iface} before it (iptables -I INPUT -i ${iface} -j ACCEPT).`,
          [...rules.map((r) => `firewall on ${n}: ${r}`), ...ev],
        );
      }
    }
    for (const n of both) {
      const rp = cl(n).rpFilter;
      if (rp.effective === 1) {
        return d(
          e,
          'rp-filter',
          n,
          `strict rp_filter on ${n} drops the tunnel's packets`,
          `The handshake works, but ${n} has rp_filter strict (all=${rp.all}, ${iface}=${rp.iface ?? '?'}): packets whose source is not routed back through ${iface} are dropped.`,
          `On ${n}: sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.${iface}.rp_filter=2 (loose), persisted in /etc/sysctl.d/99-wireguard.conf.`,
          [`rp_filter all=${rp.all} default=${rp.default} ${iface}=${rp.iface}`, ...ev],
        );
      }
    }
    const capEv = e.capture
      ? Object.entries(e.capture.counts).map(
          ([n, c]) => `capture on ${n}: ${c.icmpRequestsIn} echo requests in on ${iface}, ${c.icmpRepliesOut} replies out`,
        )
      : [];
    const at = e.capture?.counts[R];
    if (at && at.icmpRequestsIn > 0 && at.icmpRepliesOut === 0) {
      return d(
        e,
        'firewall-icmp',
        R,
        `${R} receives pings on ${iface} but does not answer`,
        `Echo requests from ${S} arrive at ${R} through the tunnel and no reply leaves: a firewall (or policy routing) on ${R} drops them.`,
        `On ${R}: check iptables-save / nft list ruleset for rules on ${iface} or ICMP.`,
        [...capEv, ...ev],
      );
    }
    return d(
      e,
      'handshake-ok-ping-fails',
      undefined,
      `the handshake works but pings between ${S} and ${R} fail`,
      `Keys, AllowedIPs and routes look right and the peers shake hands, yet ICMP does not pass: look for firewall rules outside iptables, policy routing, or a host that does not answer pings.`,
      `Run: meshctl debug --pair ${S},${R} --tcpdump, and check nft list ruleset and ip rule on both nodes.`,
      [...capEv, ...ev],
    );
  }

  // 9. small packets pass, large ones do not
  const pm = [e.forward?.pmtu, e.backward?.pmtu].find((p) => p && !p.skipped && !p.ok);
  if (pm) {
    return d(
      e,
      'mtu',
      undefined,
      `MTU black hole between ${S} and ${R}: packets over ${pm.largest + 28} bytes are lost`,
      `Small pings pass but the largest payload that passes with DF set is ${pm.largest} bytes instead of ${pm.expected} (interface MTU ${pm.expected + 28}). Somewhere on the underlay path large UDP datagrams are dropped without an ICMP "fragmentation needed" coming back.`,
      `Lower the mesh MTU in the inventory to ${pm.largest + 28} or less (mesh.mtu) and re-run meshctl up, or fix the underlay link's MTU / the filter that drops large packets.`,
      [`DF probes: ${pm.tries.map((t) => `${t.size}:${t.ok ? 'ok' : 'lost'}`).join(' ')}`, ...ev],
    );
  }

  return d(
    e,
    'healthy',
    undefined,
    `${S} and ${R} talk fine`,
    'Handshakes are recent, pings pass both ways and large packets pass with DF set.',
    'Nothing to do.',
    ev,
  );
}

function captureLines(e: PairEvidence): string[] {
  return Object.entries(e.capture?.counts ?? {}).map(
    ([n, c]) =>
      `capture on ${n}: ${c.udpFromSender} datagrams from ${e.sender} (${c.initiationsFromSender} handshake initiations, ${c.markers} markers), ${c.responsesToSender} handshake responses sent back`,
  );
}

/** "the edge works" context for a pair inside one site. */
function edgeContext(e: PairEvidence, a: string, b: string): string {
  if (!e.matrix) return '';
  const inv = e.inventory;
  const site = nodeOf(inv, a).site;
  const outside = inv.nodes.filter((n) => n.site !== site).map((n) => n.name);
  const ok = (x: string, y: string) => e.matrix!.cells[x]?.[y]?.ok === true;
  const worksOutside = outside.length > 0 && outside.every((o) => ok(a, o) && ok(o, a) && ok(b, o) && ok(o, b));
  const pairFails = !ok(a, b) || !ok(b, a);
  return pairFails && worksOutside
    ? `Both reach ${outside.join(', ')} outside the site, which rules out keys and the nodes themselves.`
    : '';
}
