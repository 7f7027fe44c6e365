/**
 * Enable phase: wg-quick@IFACE enabled and running. What it does depends on how the config changed:
 * - not running: enable --now;
 * - only [Peer] sections changed: a sync with `wg syncconf`'s meaning (peers added, changed, removed as the file
 *   says), which keeps the interface, its ifindex and the other peers' sessions; routes for added/removed peers are
 *   synced by hand, as syncconf does not route. Not a plain `wg syncconf` from the file, which would clear the key the
 *   file does not carry, and would re-set every unchanged peer (wireguard-go re-opens its socket and re-inserts each
 *   peer's AllowedIPs: a packet in flight can be lost): syncPeersCommand in ../render/systemd.ts sends only what
 *   differs from the live interface;
 * - [Interface] changed (port, PostUp...): restart; the MTU and the Address alone are set on the running interface
 *   instead (`ip link set dev IFACE mtu N`, `ip -4 address add`/`del`, what wg-quick does with them at start:
 *   ../render/changes.ts liveInterfaceChange), and the peers synced as above when they changed too (new users'
 *   findings Q3-6: an MTU change restarted every node; Q6-9: so did a hand-built mesh's /24 Address);
 * - nothing changed in the file: the LIVE interface is compared with the design (liveDrift), so a change made by
 *   hand with `wg set`/`ip`, or one a run wrote to the file but was interrupted before applying, is finished now:
 *   the MTU and the address set live as above, other [Interface] differences (listen port, interface gone, an
 *   address set with a peer) restart, peer differences syncconf as above, route differences are repaired by hand;
 * - a relay (../render/relay.ts) is compared live too (relayDrift): its wg0 forwarding off or its rule not whole (a
 *   `sysctl -w net.ipv4.ip_forward=0`, a firewall reset) runs the relay's PostUp lines on the running interface
 *   again; and a file change that switches the node's relay role alone (its PostUp/PreDown relay lines, beside the
 *   MTU and Address) runs the relay's set-up or tear-down live instead of a restart (a new user's findings Q8
 *   F-relay: `up` said nothing to change while the relayed pair was down; F-relay-restart: removing a node restarted
 *   its relay, and every pair of that public node was cut ~8 s);
 * - nothing differs: nothing.
 * Without systemd: wg-quick up, and a warning that it will not survive a reboot.
 */
import type { Change, NodeAction } from '../engine/types.js';
import type { NodeFacts } from '../facts/node-facts.js';
import type { LivePeer } from '../render/wgdump.js';
import type { DesiredNodeConfig, DesiredPeer } from '../topology/desired.js';
import { sh } from '../remote/shell.js';
import { isWireGuardTest, wireguardPaths } from '../remote/wireguard.js';
import { liveInterfaceChange, type ConfigChangeKind } from '../render/changes.js';
import { syncPeerRoutesCommand, syncPeersStep } from '../render/systemd.js';
import { endpointRepaired, judgeLiveEndpoint } from './live-endpoint.js';
import { withRevertArmed, type RollbackOptions } from '../engine/revert.js';
import { systemctlEnablement } from '../remote/systemctl.js';
import { relayResidueRemoval } from '../firewall/relay-residue.js';
import { relayRuleInPlace } from '../firewall/relay-live.js';
import { relayForwardingKey, relayHooks, relayRuleDownCommand } from '../render/relay.js';
import { formatCidr, parseCidr } from '../net/ipv4.js';

/** Prints ifindex=, active=, enabled= after the action, for the gate (parseServiceOutput reads them). */
const interfaceReport = (iface: string, service: string, systemd: boolean) =>
  [
    `echo ifindex=$(cat ${sh`${`/sys/class/net/${iface}/ifindex`}`.text} 2>/dev/null)`,
    systemd
      ? `echo active=$(systemctl is-active ${sh`${service}`.text} 2>/dev/null)`
      : `echo active=$([ -e ${sh`${`/sys/class/net/${iface}`}`.text} ] && echo active || echo inactive)`,
    systemd ? `echo enabled=$(systemctl is-enabled ${sh`${service}`.text} 2>/dev/null)` : 'echo enabled=no-systemd',
  ].join('\n');

/** Peer routes not on the interface (`ip route show` prints a host route without its /32). */
export function missingRoutes(present: readonly string[], peerRoutes: readonly string[]): string[] {
  const shown = new Set(present);
  return peerRoutes.filter((r) => !shown.has(r) && !shown.has(r.replace(/\/32$/, '')));
}

/** Makes the routes on the interface exactly one /32 per peer (what wg-quick would have added at start). */
const syncRoutesScript = (iface: string, peerRoutes: string[]): string => syncPeerRoutesCommand(iface, peerRoutes);

const NO_SYSTEMD_WARNING = 'no systemd: the interface will not come back after a reboot';

/**
 * How the running interface differs from the design (each list holds one reason per difference, in words).
 * - `restart`: [Interface] settings wg-quick applies only when it brings the interface up (MTU, address, port);
 * - `peers`: what `wg syncconf` from the file repairs (a peer missing or unknown, its AllowedIPs, keepalive, endpoint);
 * - `keepaliveOff`: peers that run with a keepalive the design does not have; syncconf leaves a setting alone that
 *   the file does not mention, so these are switched off by hand;
 * - `extraRoutes`: routes via the interface that belong to no designed peer, as `ip route show` prints them;
 * - `mtu`: the reason in `restart` that is the live MTU's, when it differs from the design's;
 * - `address`: the reason in `restart` that is the live addresses', when they are not the design's one address.
 */
export interface LiveDrift {
  restart: string[];
  mtu?: string;
  address?: string;
  peers: string[];
  keepaliveOff: string[];
  /**
   * designed peers that run with a preshared key: the design has none, so wg-quick's file has none, and a restart of
   * either end breaks the pair while the other keeps it (Q6 finding 1); removed on each end in its own enable step
   */
  presharedOff: string[];
  extraRoutes: string[];
}

const NO_DRIFT: LiveDrift = { restart: [], peers: [], keepaliveOff: [], presharedOff: [], extraRoutes: [] };

const sameSet = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
const shortKey = (key: string) => `${key.slice(0, 10)}…`;
const listOr = (values: readonly string[], none: string) => (values.length ? values.join(', ') : none);

/** The live MTU's difference from the design, in words; undefined when it is the design's or was not probed. */
const mtuDrift = (live: NonNullable<NodeFacts['live']>, desired: DesiredNodeConfig, file: string): string | undefined =>
  live.mtu !== undefined && live.mtu !== desired.mtu ? `live MTU ${live.mtu}, ${file} ${desired.mtu}` : undefined;

/** The live IPv4 addresses' difference from the design's one address, in words; undefined when they are the design's. */
const addressDrift = (live: NonNullable<NodeFacts['live']>, desired: DesiredNodeConfig, file: string): string | undefined =>
  sameSet(live.addresses, [desired.address]) ? undefined : `live address ${listOr(live.addresses, 'none')}, ${file} ${desired.address}`;

/**
 * The [Interface] differences a restart applies (the MTU and address among them, which the enable step can set live
 * instead: liveInterfaceSet). Unknown live values (not probed) are no difference.
 */
function interfaceDrift(live: NonNullable<NodeFacts['live']>, desired: DesiredNodeConfig, file: string): string[] {
  const reasons: string[] = [];
  const mtu = mtuDrift(live, desired, file);
  if (mtu) reasons.push(mtu);
  const address = addressDrift(live, desired, file);
  if (address) reasons.push(address);
  if (live.wgReadable && live.listenPort !== desired.listenPort)
    reasons.push(`live listen port ${live.listenPort ?? 'none'}, ${file} ${desired.listenPort}`);
  return reasons;
}

/**
 * One designed peer against its live self. The live endpoint is judged by ./live-endpoint.ts: repaired unless a NAT
 * on the path produced it and a session still lives on it (a NAT roams only the NATed side's address; a public
 * peer's address never moves), or the design dials a DNS name (live is the address it resolved to, which only the
 * node can check: the re-resolve timer does, ../render/reresolve.ts). A peer without an Endpoint dials in.
 * @param now the node's clock (Unix seconds) when the peers were read, to judge a roamed endpoint's session
 */
function peerDrift(want: DesiredPeer, have: LivePeer, file: string, now?: number): string[] {
  const reasons: string[] = [];
  if (!sameSet(have.allowedIps, want.allowedIps))
    reasons.push(`peer ${want.name} AllowedIPs ${listOr(have.allowedIps, 'none')}, ${file} ${want.allowedIps.join(', ')}`);
  if (have.persistentKeepalive !== want.persistentKeepalive)
    reasons.push(`peer ${want.name} keepalive ${have.persistentKeepalive ?? 'off'}, ${file} ${want.persistentKeepalive ?? 'off'}`);
  const endpoint = judgeLiveEndpoint(want, have, now);
  if (endpointRepaired(endpoint))
    reasons.push(`peer ${want.name} endpoint ${have.endpoint ?? 'none'}, ${file} ${want.endpoint} (${endpoint.why})`);
  return reasons;
}

/**
 * The live interface (NodeFacts.live, .peers, .interfaceRoutes) against the design. Empty when the interface was
 * not read (no live facts): nothing is compared then. AllowedIPs, keepalive and keys are compared exactly.
 */
export function liveDrift(facts: NodeFacts, desired: DesiredNodeConfig): LiveDrift {
  const live = facts.live;
  if (!live) return NO_DRIFT;
  const file = `${desired.interface}.conf`;
  const drift: LiveDrift = { restart: interfaceDrift(live, desired, file), peers: [], keepaliveOff: [], presharedOff: [], extraRoutes: [] };
  const mtu = mtuDrift(live, desired, file);
  if (mtu) drift.mtu = mtu;
  const address = addressDrift(live, desired, file);
  if (address) drift.address = address;
  if (live.wgReadable) {
    const byKey = new Map(facts.peers.map((p) => [p.publicKey, p]));
    for (const want of desired.peers) {
      const have = byKey.get(want.publicKey);
      if (!have) {
        drift.peers.push(`no peer ${want.name}`);
        continue;
      }
      drift.peers.push(...peerDrift(want, have, file, facts.now));
      if (want.persistentKeepalive === undefined && have.persistentKeepalive !== undefined) drift.keepaliveOff.push(want.publicKey);
      // presence only: the dump's preshared-key column never leaves the node's filter as more than set / not set
      if (have.hasPresharedKey) {
        drift.peers.push(`peer ${want.name} has a preshared key on the live interface, ${file} none (meshctl manages none)`);
        drift.presharedOff.push(want.publicKey);
      }
    }
    const designed = new Set(desired.peers.map((p) => p.publicKey));
    for (const have of facts.peers.filter((p) => !designed.has(p.publicKey)))
      drift.peers.push(`unknown peer ${shortKey(have.publicKey)} (AllowedIPs ${listOr(have.allowedIps, 'none')})`);
  }
  const wanted = new Set(desired.peers.flatMap((p) => p.allowedIps).flatMap((r) => [r, r.replace(/\/32$/, '')]));
  drift.extraRoutes = facts.interfaceRoutes.filter((r) => !wanted.has(r));
  return drift;
}

/**
 * How a relay's live state differs from the design, one reason per difference in words: forwarding on the interface
 * not 1 (NodeFacts.live.forwarding), meshctl's relay rule not whole in the ruleset its PostUp writes to
 * (../firewall/relay-live.ts). Empty for a node the design gives no relay, a node whose interface is not up, or values
 * not read (a probe without them, a ruleset cut at its size cap): nothing is compared then.
 */
export function relayDrift(facts: NodeFacts, desired: DesiredNodeConfig): string[] {
  if (!desired.relay || !facts.live || !facts.interfaces.includes(desired.interface)) return [];
  const reasons: string[] = [];
  const iface = desired.interface;
  const forwarding = facts.live.forwarding;
  if (forwarding !== undefined && forwarding !== 1)
    reasons.push(`live ${relayForwardingKey(iface)} = ${forwarding}, the relay's PostUp sets 1`);
  if (relayRuleInPlace(facts.baseline.firewallRuleset, iface) === false)
    reasons.push(`meshctl's relay rule for ${iface} (accept ${iface} -> ${iface}, drop ${iface} -> other interfaces) is not in place`);
  return reasons;
}

/**
 * The relay's tear-down on a running interface, as its PreDown does, then the interface's forwarding set to what a
 * fresh device gets (conf.default.forwarding), as ../firewall/relay-residue.ts leaves a node that stopped relaying.
 * Idempotent: every command tolerates a rule already gone.
 */
const relayOffScript = (iface: string): string =>
  [
    `sysctl -q -w ${relayForwardingKey(iface)}=0 2>/dev/null || true`,
    relayRuleDownCommand(iface),
    `sysctl -q -w ${relayForwardingKey(iface)}="$(cat /proc/sys/net/ipv4/conf/default/forwarding)" 2>/dev/null || true`,
  ].join('; ');

/** Deletes exactly these routes via the interface (any proto), each only while it is still there. */
function removeRoutesScript(iface: string, routes: readonly string[]): string {
  return sh`for r in ${routes}; do if [ -n "$(ip -4 route show exact "$r" dev ${iface})" ]; then ip -4 route del "$r" dev ${iface}; fi; done`
    .text;
}

/** Switches off the keepalive of these peers (keys), which `wg syncconf` keeps when the file has none. */
function keepaliveOffScript(iface: string, keys: readonly string[]): string {
  return sh`for k in ${keys}; do wg set ${iface} peer "$k" persistent-keepalive off; done`.text;
}

/**
 * Removes the preshared key of these peers (keys) from the running interface: `wg set ... preshared-key /dev/null`
 * (wg(8): a key file of /dev/null sets none). syncconf's filter sees no difference in a key it cannot read.
 */
function presharedOffScript(iface: string, keys: readonly string[]): string {
  return sh`for k in ${keys}; do wg set ${iface} peer "$k" preshared-key /dev/null; done`.text;
}

/** The peers' sync: syncconf keeping the key, the keepalives and preshared keys it keeps, then the routes it does not touch. */
function peerSyncCommands(iface: string, privateKey: string, peerRoutes: string[], drift: LiveDrift): string[] {
  return [
    syncPeersStep(iface, privateKey),
    ...(drift.keepaliveOff.length ? [keepaliveOffScript(iface, drift.keepaliveOff)] : []),
    ...(drift.presharedOff.length ? [presharedOffScript(iface, drift.presharedOff)] : []),
    ...(drift.extraRoutes.length ? [removeRoutesScript(iface, drift.extraRoutes)] : []),
    syncRoutesScript(iface, peerRoutes),
  ];
}

/**
 * Sets the running interface's MTU and brings it up, as wg-quick does at start (`ip link set mtu N up dev IFACE`,
 * wg-quick(8)): the restart this replaces would have left an interface set down by hand up too (RV2 finding 10).
 */
const setMtuScript = (iface: string, mtu: number): string => sh`ip link set dev ${iface} mtu ${String(mtu)} up`.text;

/**
 * The key file loaded into a running interface that runs with another key or none (`wg set IFACE private-key FILE`,
 * the file's path only: meshctl never reads the key), or nothing when it runs with the node's key.
 */
function keyLoad(facts: NodeFacts, iface: string, publicKey: string | undefined): { command: string; change: Change } | undefined {
  if (!publicKey || facts.interfacePublicKey === publicKey) return undefined;
  const path = wireguardPaths(iface).privateKey;
  const why = `it ran with ${facts.interfacePublicKey ? 'another key' : 'no key'}`;
  return { command: sh`wg set ${iface} private-key ${path}`.text, change: { kind: 'load-private-key', iface, path, why } };
}

/**
 * The design's address added to the running interface and the others deleted, as wg-quick's add_addr would have
 * left it after a restart (`ip -4 address add ADDR dev IFACE`, wg-quick(8)). The peer routes are put in place first
 * (`ip -4 route replace`, one /32 per peer): wg-quick skips a peer's route that an address's own prefix covered (a
 * /24 Address routes the whole overlay), and deleting that address takes its prefix route with it, so without them
 * first every peer would be unroutable for a moment. Each add and delete only while needed: run again, nothing.
 */
function setAddressScript(iface: string, address: string, remove: readonly string[], peerRoutes: string[]): string {
  const has = (a: string) => sh`ip -4 -o address show dev ${iface} | grep -q -F ${` ${a} `}`.text;
  return [
    syncRoutesScript(iface, peerRoutes),
    `if ! ${has(address)}; then ${sh`ip -4 address add ${address} dev ${iface}`.text}; fi`,
    ...remove.map((old) => `if ${has(old)}; then ${sh`ip -4 address del ${old} dev ${iface}`.text}; fi`),
    // read back: the design's address is the only IPv4 one left (a plan that said "removed" of an address still
    // there, one set with a peer that `del A/N` cannot name, would be said again by every run: RV5 F1)
    `if ! ${has(address)} || [ "$(${sh`ip -4 -o address show dev ${iface}`.text} | wc -l)" != 1 ]; then ${sh`echo ${`${iface}'s addresses are not ${address} after the change:`}`.text} "$(${sh`ip -4 -o address show dev ${iface}`.text})" >&2; exit 1; fi`,
  ].join('\n');
}

/** The MTU and the address set on the running interface instead of a restart (liveInterfaceSet). */
interface LiveInterface {
  /** the MTU set live, with the plan's reason */
  mtu?: { mtu: number; why: string };
  /** the design's address added live and these live addresses deleted, with the plan's reason */
  address?: { address: string; remove: string[]; why: string };
  /**
   * the relay set up on the running interface (`on`: its PostUp lines, ../render/relay.ts) or torn down (`off`),
   * with the plan's reason
   */
  relay?: { on: boolean; why: string };
  /**
   * why the peers are synced too (peerSyncCommands), as the restart would have made them anew: their [Peer] content
   * changed in the file, the live peers differ, or the routes via the interface are not one per peer; undefined: no sync
   */
  sync?: string;
}

/**
 * What a live [Interface] change runs (the MTU, then the address, then the relay) and the plan's changes for it.
 * `residue`: the removal of a relay rule found in the node's ruleset (../firewall/relay-residue.ts), which a relay
 * switched off runs as its tear-down (the rule in whichever backend it was found; its change folded into the
 * relay-off one); the rule is then not removed again after the step.
 */
function liveInterfaceCommands(
  iface: string,
  set: LiveInterface,
  peerRoutes: string[],
  residue: { commands: string[]; changes: Change[] },
): { commands: string[]; changes: Change[]; residueDone: boolean } {
  const commands: string[] = [];
  const changes: Change[] = [];
  if (set.mtu) {
    commands.push(setMtuScript(iface, set.mtu.mtu));
    changes.push({ kind: 'set-mtu', iface, mtu: set.mtu.mtu, why: set.mtu.why });
  }
  if (set.address) {
    commands.push(setAddressScript(iface, set.address.address, set.address.remove, peerRoutes));
    changes.push({ kind: 'set-address', iface, address: set.address.address, removed: set.address.remove, why: set.address.why });
  }
  let residueDone = false;
  if (set.relay?.on) {
    commands.push(...relayHooks(iface).postUp);
    changes.push({ kind: 'relay-on', iface, why: set.relay.why });
  } else if (set.relay) {
    const found = residue.changes.flatMap((c) => (c.kind === 'remove-relay-rule' ? c.found : []));
    commands.push(...(residue.commands.length ? residue.commands : [relayOffScript(iface)]));
    changes.push({ kind: 'relay-off', iface, found, why: set.relay.why });
    residueDone = true;
  }
  return { commands, changes, residueDone };
}

/**
 * Why the peers must be synced along with a live [Interface] change (LiveInterface.sync), in the plan's words (RV5
 * F5: routes of no peer, removed by the sync, were said as "peers changed"); undefined when they need not be. With an
 * address set live, its script makes the peer routes (setAddressScript), and the prefix routes of the addresses it
 * deletes go with them (the kernel's own, `172.27.15.0/24` for a /24 Address): neither calls for a sync.
 */
function syncReason(
  facts: NodeFacts,
  drift: LiveDrift,
  peerRoutes: string[],
  peersChanged: boolean,
  iface: string,
  removed?: readonly string[],
): string | undefined {
  const prefixes = new Set(
    (removed ?? []).flatMap((a) => {
      const c = parseCidr(a, { strict: false });
      return c ? [formatCidr(c)] : [];
    }),
  );
  const extra = drift.extraRoutes.filter((route) => !prefixes.has(route));
  const missing = removed === undefined ? missingRoutes(facts.interfaceRoutes, peerRoutes) : [];
  const reasons = [
    ...(peersChanged ? ['peers changed'] : []),
    ...(drift.peers.length ? [`live peers differ from ${iface}.conf: ${drift.peers.join('; ')}`] : []),
    ...(extra.length ? [`route${extra.length > 1 ? 's' : ''} ${extra.join(', ')} via ${iface} of no designed peer removed`] : []),
    ...(missing.length ? [`peer route${missing.length > 1 ? 's' : ''} ${missing.join(', ')} restored`] : []),
  ];
  return reasons.length ? reasons.join('; ') : undefined;
}

/**
 * The MTU and address to set on the running interface instead of a restart: the file's only [Interface] changes
 * are its MTU and Address (liveInterfaceChange), or the file's [Interface] did not change and the live MTU or
 * addresses are its only differences from the design (a run that wrote the file and stopped before its enable step,
 * a retry after a failed enable, `ip link set mtu` by hand: RV2 finding 11); in both, the live interface differs from
 * the design in nothing else that a restart applies (its listen port is the design's). Undefined otherwise.
 */
function liveInterfaceSet(
  facts: NodeFacts,
  change: ConfigChangeKind,
  desired: DesiredNodeConfig | undefined,
  up: boolean,
  drift: LiveDrift,
  peerRoutes: string[],
): LiveInterface | undefined {
  if (!desired || !up || drift.restart.some((reason) => reason !== drift.mtu && reason !== drift.address)) return undefined;
  const live = facts.live?.addresses ?? [];
  const remove = live.filter((a) => a !== desired.address);
  // an address set with a peer (`ip address add A peer B`) is deleted only by naming its peer too: the restart
  // deletes it with the interface (RV5 F1: deleted "live" by its local address, it stayed, and every run said so)
  if (remove.some((a) => facts.live?.pointToPoint?.includes(a))) return undefined;
  const file = `${desired.interface}.conf`;
  const moved = movedWords(remove, desired.address);
  const relayLive = relayDrift(facts, desired);
  const mend = relayLive.length ? { on: true, why: `${relayLive.join('; ')}: the relay's PostUp run on the running interface` } : undefined;
  if (change === 'none' || change === 'peers') {
    if (!drift.mtu && !drift.address && !mend) return undefined;
    const sync = syncReason(facts, drift, peerRoutes, change === 'peers', desired.interface, drift.address ? remove : undefined);
    return {
      ...(mend ? { relay: mend } : {}),
      ...(drift.mtu ? { mtu: { mtu: desired.mtu, why: `${drift.mtu}: the file's MTU set on the running interface` } } : {}),
      ...(drift.address
        ? {
            address: { address: desired.address, remove, why: `${drift.address}: the file's Address set on the running interface${moved}` },
          }
        : {}),
      ...(sync ? { sync } : {}),
    };
  }
  if (change !== 'interface') return undefined;
  const only = liveInterfaceChange(facts.config.text, desired);
  if (!only) return undefined;
  const parts = [...(only.mtu ? ['MTU'] : []), ...(only.address ? ['Address'] : []), ...(only.relay ? ['relay lines'] : [])];
  const tail = parts.length > 1 ? `${parts.join(' and ')} the only [Interface] changes` : 'the only [Interface] change';
  const pairs = (desired.relay?.pairs ?? []).map((p) => `${p.a}<->${p.b}`).join(', ');
  const relay = only.relay
    ? only.relay === 'on'
      ? { on: true, why: `relay PostUp/PreDown lines added to ${file} (relays ${pairs}), ${tail}` }
      : { on: false, why: `relay PostUp/PreDown lines gone from ${file} (the node relays no pair), ${tail}` }
    : mend;
  // a live value that differs while the file's line did not change (a hand-set MTU) is set too, as a restart would
  const mtu = only.mtu ?? (drift.mtu ? { from: facts.live?.mtu, to: desired.mtu } : undefined);
  const address = only.address ?? (drift.address ? { from: live, to: desired.address } : undefined);
  const sync = syncReason(facts, drift, peerRoutes, only.peers, desired.interface, address ? remove : undefined);
  return {
    ...(relay ? { relay } : {}),
    ...(mtu ? { mtu: { mtu: mtu.to, why: `MTU ${mtu.from ?? '(none)'} -> ${mtu.to} in ${file}, ${tail}` } } : {}),
    ...(address
      ? {
          address: {
            address: address.to,
            remove,
            why: `Address ${listOr(address.from, '(none)')} -> ${address.to} in ${file}, ${tail}${moved}`,
          },
        }
      : {}),
    ...(sync ? { sync } : {}),
  };
}

/**
 * What an address change ends besides: the node's overlay IP itself moving (not only its prefix) ends the
 * connections to and from the old IP (TCP has no way to follow it), while WireGuard's sessions stay (RV5 F6: "sessions
 * kept" was said of both). '' when the design's IP is among the live ones.
 */
function movedWords(remove: readonly string[], address: string): string {
  const ip = (a: string) => a.split('/')[0]!;
  const old = remove.map(ip).filter((a) => a !== ip(address));
  if (old.length === 0 || remove.some((a) => ip(a) === ip(address))) return '';
  return `; connections to or from ${old.join(', ')} end`;
}

/**
 * The enable action for a node, or none when the service runs the current config with the node's key.
 * @param change how the config file changed in this run (../render/changes.ts)
 * @param peerRoutes the AllowedIPs of every peer (one /32 each), for the route sync after `wg syncconf`
 * @param publicKey the node's public key after the keys phase: a running interface with another key (or none, after
 * a stock `wg syncconf` or reload from our key-less file) gets the key file loaded again
 * @param desired the node's designed config: when given, the live interface is compared with it (liveDrift) and
 * what differs is synced or restarted even though the file did not change; each such change names its reason
 * @param rollback when given, the action first (re-)arms the node's revert, in the same script (../engine/revert.ts)
 */
export function planService(
  facts: NodeFacts,
  iface: string,
  change: ConfigChangeKind,
  peerRoutes: string[],
  publicKey?: string,
  desired?: DesiredNodeConfig,
  rollback?: RollbackOptions,
): { action?: NodeAction; warning?: string } {
  const planned = planServiceUnarmed(facts, iface, change, peerRoutes, publicKey, desired);
  if (!planned.action || !rollback) return planned;
  return { ...planned, action: withRevertArmed(planned.action, iface, rollback, facts.systemd, 'enable') };
}

function planServiceUnarmed(
  facts: NodeFacts,
  iface: string,
  change: ConfigChangeKind,
  peerRoutes: string[],
  publicKey?: string,
  desired?: DesiredNodeConfig,
): { action?: NodeAction; warning?: string } {
  const p = wireguardPaths(iface);
  const report = interfaceReport(iface, p.service, facts.systemd);
  const up = facts.interfaces.includes(iface);
  const drift = desired && up ? liveDrift(facts, desired) : NO_DRIFT;
  // a relay rule the node's old PostUp left (R4: ../firewall/relay-residue.ts), removed after the restart or sync, or
  // as the tear-down of a relay switched off live
  const residue = relayResidueRemoval(facts.baseline.firewallRuleset, iface, desired);
  if (!facts.systemd)
    return planWithoutSystemd(
      iface,
      change,
      peerRoutes,
      up,
      drift,
      report,
      liveInterfaceSet(facts, change, desired, up, drift, peerRoutes),
      up ? keyLoad(facts, iface, publicKey) : undefined,
      // the relay rule an old PostUp left goes without systemd too (RV3 F2)
      residue,
    );
  const active = facts.service.active === 'active';
  const enabled = facts.service.enabled === 'enabled';
  const commands: string[] = [];
  const changes: Change[] = [];
  let residueDone = false;
  /** the key file loaded into the interface again when it runs with another key, or none */
  const loadKey = () => {
    const load = keyLoad(facts, iface, publicKey);
    if (!load) return;
    commands.push(load.command);
    changes.push(load.change);
  };
  if (!active) {
    // an interface brought up by hand blocks wg-quick@ (it refuses "already exists"); take it down first, only when
    // it is a WireGuard interface (RV6 F5: down's Q9 F-down-eth0 guard was not here; `wg-quick down` refuses any other
    // kind, and the `ip link del` after it deleted it: an uplink of the mesh's name, and SSH with it)
    if (up)
      commands.push(
        `if ${isWireGuardTest(iface)}; then ${sh`wg-quick down ${iface} >/dev/null 2>&1 || ip link del ${iface} || true`.text}; else ${sh`echo ${`${iface} exists and is not a WireGuard interface: not taken down (is mesh.interface right?)`} >&2`.text}; exit 1; fi`,
      );
    commands.push(`${systemctlEnablement('enable', p.service, true)} 2>&1`);
    changes.push({ kind: 'enable', unit: p.service, now: true });
  } else {
    if (!enabled) {
      commands.push(`${systemctlEnablement('enable', p.service)} 2>&1`);
      changes.push({ kind: 'enable', unit: p.service, now: false });
    }
    // a oneshot unit stays "active" after its interface was deleted by hand
    const gone = desired && !up ? [`${iface} is missing while ${p.service} is active`] : [];
    const set = liveInterfaceSet(facts, change, desired, up, drift, peerRoutes);
    const restartWhy = set ? [] : change === 'interface' || change === 'create' ? ['[Interface] changed'] : [...gone, ...drift.restart];
    if (set) {
      const live = liveInterfaceCommands(iface, set, peerRoutes, residue);
      commands.push(...live.commands);
      changes.push(...live.changes);
      residueDone = live.residueDone;
      // what the restart would have done besides: the key loaded, the peers and their routes as the file says
      if (up) loadKey();
      if (set.sync) {
        commands.push(...peerSyncCommands(iface, p.privateKey, peerRoutes, drift));
        changes.push({ kind: 'syncconf', iface, why: `${set.sync}; interface and sessions kept` });
      }
    } else if (restartWhy.length) {
      commands.push(`${sh`systemctl restart ${p.service}`.text} 2>&1`);
      changes.push({ kind: 'restart', unit: p.service, why: restartWhy.join('; ') });
    } else if (change === 'peers' || drift.peers.length) {
      commands.push(...peerSyncCommands(iface, p.privateKey, peerRoutes, drift));
      const why = change === 'peers' ? 'peers changed' : `live peers differ from ${iface}.conf: ${drift.peers.join('; ')}`;
      changes.push({ kind: 'syncconf', iface, why: `${why}; interface and sessions kept` });
    } else {
      if (up) loadKey();
      // nothing changed in the file, but someone may have removed a peer's route, or added one, by hand
      const missing = missingRoutes(facts.interfaceRoutes, peerRoutes);
      if (drift.extraRoutes.length) {
        commands.push(removeRoutesScript(iface, drift.extraRoutes));
        changes.push({ kind: 'remove-routes', iface, routes: drift.extraRoutes, why: 'no designed peer has them' });
      }
      if (missing.length) {
        commands.push(syncRoutesScript(iface, peerRoutes));
        changes.push({ kind: 'restore-routes', iface, routes: missing });
      }
    }
  }
  // after the restart or sync: a relay rule the node's old PostUp left (R4: ../firewall/relay-residue.ts)
  if (!residueDone) {
    commands.push(...residue.commands);
    changes.push(...residue.changes);
  }
  if (commands.length === 0) return {};
  return { action: { changes, script: `set -e\n${commands.join('\n')}\n${report}` } };
}

/**
 * Without systemd: wg-quick up, down/up for [Interface] differences (the MTU and Address alone set live), syncconf for peer
 * differences; `residue`: the removal of a relay rule an old PostUp left (../firewall/relay-residue.ts), run after
 * all of them, or alone when nothing else changes.
 */
function planWithoutSystemd(
  iface: string,
  change: ConfigChangeKind,
  peerRoutes: string[],
  up: boolean,
  drift: LiveDrift,
  report: string,
  set?: LiveInterface,
  load?: { command: string; change: Change },
  residue: { commands: string[]; changes: Change[] } = { commands: [], changes: [] },
): { action?: NodeAction; warning?: string } {
  const warning = NO_SYSTEMD_WARNING;
  if (set) {
    // the MTU or Address alone changed in [Interface]: set live, as with systemd (no wg-quick down/up), with what the
    // down/up would have done besides: the key loaded (RV2 finding 4), the peers and their routes as the file says
    const sync = set.sync ? peerSyncCommands(iface, wireguardPaths(iface).privateKey, peerRoutes, drift) : [];
    const live = liveInterfaceCommands(iface, set, peerRoutes, residue);
    const rest = live.residueDone ? { commands: [], changes: [] } : residue;
    const changes: Change[] = [
      ...live.changes,
      ...(load ? [load.change] : []),
      ...(set.sync ? [{ kind: 'syncconf' as const, iface, why: `${set.sync}; interface and sessions kept` }] : []),
    ];
    const commands = [...live.commands, ...(load ? [load.command] : []), ...sync, ...rest.commands];
    return { action: { changes: [...changes, ...rest.changes], script: `set -e\n${commands.join('\n')}\n${report}` }, warning };
  }
  if (up && change === 'none' && drift.restart.length === 0) {
    if (drift.peers.length === 0 && drift.extraRoutes.length === 0)
      return residue.commands.length
        ? { action: { changes: residue.changes, script: `set -e\n${residue.commands.join('\n')}\n${report}` }, warning }
        : { warning };
    // the file is right but the live peers or routes are not: sync them, keeping the interface
    const why = `live peers differ from ${iface}.conf: ${listOr(drift.peers, `routes ${drift.extraRoutes.join(', ')}`)}`;
    const commands = [...peerSyncCommands(iface, wireguardPaths(iface).privateKey, peerRoutes, drift), ...residue.commands];
    const changes: Change[] = [{ kind: 'syncconf', iface, why: `${why}; interface and sessions kept` }, ...residue.changes];
    return { action: { changes, script: `set -e\n${commands.join('\n')}\n${report}` }, warning };
  }
  const why = up && drift.restart.length && change === 'none' ? drift.restart.join('; ') : 'no systemd';
  return {
    action: {
      changes: [{ kind: 'wg-quick-up', iface, restart: up, why }, ...residue.changes],
      script: `set -e\n${up ? `${sh`wg-quick down ${iface}`.text}\n` : ''}${sh`wg-quick up ${iface}`.text} 2>&1\n${residue.commands.map((c) => `${c}\n`).join('')}${report}`,
    },
    warning,
  };
}

/** Reads ifindex=, active=, enabled= from the enable action's output. */
export function parseServiceOutput(stdout: string): { active: string; enabled: string; interfaceIndex?: number } {
  const value = (key: string) => stdout.match(new RegExp(`^${key}=(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const index = value('ifindex');
  return { active: value('active'), enabled: value('enabled'), interfaceIndex: index ? Number(index) : undefined };
}
