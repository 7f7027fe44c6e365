/**
 * Drift between the design (DesiredNodeConfig) and what is on a node: the wg-quick file on disk, or the live
 * interface (`wg show` dump). `meshctl verify` reports these items; classifyConfigChange (./changes.ts) turns the
 * file drift into the change summary of `up`.
 *
 * Peers are matched by public key first (that is WireGuard's identity for a peer), then leftovers by name comment
 * (files only) or by overlapping AllowedIPs, so a re-keyed node or a [Peer] block holding another node's key is
 * reported as one wrong public key instead of a missing peer plus a stale one.
 *
 * Severity: 'fail' for anything the config fully determines (peers, keys, AllowedIPs, keepalive, interface
 * settings, configured endpoints); live endpoints roam, so their differences are 'info' when explained by NAT or
 * by a peer dialling in, and 'warn' otherwise.
 */
import type { DesiredNodeConfig, DesiredPeer } from '../topology/desired.js';
import { isIpv4, parseCidr, formatCidr } from '../net/ipv4.js';
import type { ParsedPeer, ParsedWgQuickConfig } from './wgquick.js';
import { postUpLoadingPrivateKey } from './wgquick.js';
import { relayHooks } from './relay.js';
import type { LiveInterface, LivePeer } from './wgdump.js';

export type DriftSeverity = 'fail' | 'warn' | 'info';

export type DriftField =
  | 'peer' // a peer is missing (expected 'present') or stale (expected 'absent')
  | 'publicKey'
  | 'allowedIps'
  | 'endpoint'
  | 'persistentKeepalive'
  | 'presharedKey'
  | 'name'
  | 'interface'
  | 'address'
  | 'listenPort'
  | 'mtu'
  | 'saveConfig'
  | 'postUp'
  | 'privateKey'
  | 'otherSetting'
  | 'syntax';

export interface DriftItem {
  /** peer name from the design, else the file's `# name` comment, else its public key; absent for interface items */
  peer?: string;
  field: DriftField;
  expected?: string;
  actual?: string;
  severity: DriftSeverity;
  /** one readable sentence */
  message: string;
  /** line in the config file, for file drift */
  line?: number;
}

const ABSENT = '(none)';
const show = (value: string | number | undefined) => (value === undefined ? ABSENT : String(value));

/** 10.0.0.1 and 10.0.0.1/32 are the same AllowedIP; host bits are normalised away as WireGuard does. */
export function normaliseAllowedIp(text: string): string {
  const known = normalised.get(text);
  if (known !== undefined) return known;
  const made = normaliseOnce(text);
  // bounded: a mesh has one /32 per node (and a few wider prefixes), seen on every node's file and live peers
  if (normalised.size >= NORMALISED_KEPT) normalised.clear();
  normalised.set(text, made);
  return made;
}

/**
 * normaliseAllowedIp's answers by text. verify compares each node's file and live peers with the design, every
 * AllowedIPs entry parsed each time: 4 N (N-1) parses of the same N texts (4 million at 1,000 nodes, ~1.4 s of 2.2 s
 * in drift at 250 nodes in bench:verify's profile), where N are distinct.
 */
const normalised = new Map<string, string>();
const NORMALISED_KEPT = 100_000;

function normaliseOnce(text: string): string {
  const trimmed = text.trim();
  const withPrefix = trimmed.includes('/') ? trimmed : isIpv4(trimmed) ? `${trimmed}/32` : `${trimmed}/128`;
  const cidr = parseCidr(withPrefix, { strict: false });
  return cidr ? formatCidr(cidr) : withPrefix.toLowerCase();
}

const normalisedSet = (ips: readonly string[]) => [...new Set(ips.map(normaliseAllowedIp))].sort();
const sameSet = (a: readonly string[], b: readonly string[]) => normalisedSet(a).join(',') === normalisedSet(b).join(',');

export function splitEndpoint(endpoint: string): { host: string; port: number } | undefined {
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(endpoint) ?? /^([^:]+):(\d+)$/.exec(endpoint);
  return match ? { host: match[1]!.toLowerCase(), port: Number(match[2]) } : undefined;
}

const isIpLiteral = (host: string) => isIpv4(host) || host.includes(':');

// ---------------------------------------------------------------------------------------------------------------
// Peer matching, shared by file and live comparisons

interface ActualPeer {
  publicKey?: string;
  allowedIps: string[];
  name?: string;
}

interface PeerMatch<T> {
  matched: Array<{ desired: DesiredPeer; actual: T }>;
  /** matched by name or AllowedIPs, but with another public key */
  rekeyed: Array<{ desired: DesiredPeer; actual: T }>;
  missing: DesiredPeer[];
  stale: T[];
}

/** Per key, the positions (in order) of the items carrying it; `next` gives the first one not yet taken. */
class Positions {
  private readonly lists = new Map<string, number[]>();
  private readonly heads = new Map<string, number>();
  add(key: string, position: number): void {
    const list = this.lists.get(key);
    if (list) list.push(position);
    else this.lists.set(key, [position]);
  }
  /** the first position under `key` not in `taken` (positions once taken stay taken, so a head only moves on) */
  next(key: string, taken: readonly boolean[]): number {
    const list = this.lists.get(key);
    if (!list) return -1;
    let head = this.heads.get(key) ?? 0;
    while (head < list.length && taken[list[head]!]) head++;
    this.heads.set(key, head);
    return head < list.length ? list[head]! : -1;
  }
}

/**
 * Pairs desired peers with actual ones: by public key (the block named after the peer first, when one key appears
 * in two blocks), then the rest by name, then by overlapping AllowedIPs; each actual peer is used once, always the
 * first unused one in its own order. Indexed by key and name (issue 10): a scan of the unmatched peers per desired
 * peer was O(N^2) per node, O(N^3) for a mesh, whenever the node listed its peers in another order than the design.
 */
function matchPeers<T extends ActualPeer>(desiredPeers: readonly DesiredPeer[], actualPeers: readonly T[]): PeerMatch<T> {
  const result: PeerMatch<T> = { matched: [], rekeyed: [], missing: [], stale: [] };
  const actual = [...actualPeers];
  const taken = actual.map(() => false);
  const byKey = new Positions();
  const byKeyAndName = new Positions();
  const byName = new Positions();
  actual.forEach((peer, i) => {
    if (peer.publicKey !== undefined) byKey.add(peer.publicKey, i);
    if (peer.publicKey !== undefined && peer.name !== undefined) byKeyAndName.add(`${peer.publicKey}\u0000${peer.name}`, i);
    if (peer.name !== undefined) byName.add(peer.name, i);
  });
  const take = (i: number) => {
    taken[i] = true;
    return actual[i]!;
  };
  let unmatchedDesired: DesiredPeer[] = [];
  for (const desired of desiredPeers) {
    // When one key appears in two [Peer] blocks, the block named after this peer is the genuine one.
    const named = byKeyAndName.next(`${desired.publicKey}\u0000${desired.name}`, taken);
    const index = named >= 0 ? named : byKey.next(desired.publicKey, taken);
    if (index >= 0) result.matched.push({ desired, actual: take(index) });
    else unmatchedDesired.push(desired);
  }
  const overlaps = (desired: DesiredPeer, peer: T) => {
    const wanted = new Set(normalisedSet(desired.allowedIps));
    return normalisedSet(peer.allowedIps).some((ip) => wanted.has(ip));
  };
  for (const pass of ['name', 'allowed-ips'] as const) {
    unmatchedDesired = unmatchedDesired.filter((desired) => {
      // by AllowedIPs only among what is left after the key and name passes: a scan, but of the leftovers
      const index =
        pass === 'name' ? byName.next(desired.name, taken) : actual.findIndex((peer, i) => !taken[i] && overlaps(desired, peer));
      if (index < 0) return true;
      result.rekeyed.push({ desired, actual: take(index) });
      return false;
    });
  }
  result.missing = unmatchedDesired;
  result.stale = actual.filter((_, i) => !taken[i]);
  // Report in the design's peer order, whatever the order on the node.
  const order = new Map(desiredPeers.map((peer, i) => [peer, i]));
  result.rekeyed.sort((a, b) => order.get(a.desired)! - order.get(b.desired)!);
  return result;
}

function publicKeyDrift(desired: DesiredPeer, actualKey: string | undefined, allDesired: readonly DesiredPeer[], line?: number): DriftItem {
  const owner = allDesired.find((p) => p.publicKey === actualKey && p !== desired);
  return {
    peer: desired.name,
    field: 'publicKey',
    expected: desired.publicKey,
    actual: show(actualKey),
    severity: 'fail',
    message: owner
      ? `peer ${desired.name} holds the public key of ${owner.name}`
      : `peer ${desired.name} has a public key the design does not know (re-keyed node, or a stale key)`,
    ...(line !== undefined ? { line } : {}),
  };
}

function commonPeerDrift(
  desired: DesiredPeer,
  actual: { allowedIps: string[]; persistentKeepalive?: number; hasPresharedKey: boolean },
  where: string,
  lines: Record<string, number> = {},
): DriftItem[] {
  const items: DriftItem[] = [];
  const at = (key: string) => (lines[key] !== undefined ? { line: lines[key] } : {});
  if (!sameSet(desired.allowedIps, actual.allowedIps)) {
    items.push({
      peer: desired.name,
      field: 'allowedIps',
      expected: desired.allowedIps.join(', '),
      actual: actual.allowedIps.length ? actual.allowedIps.join(', ') : ABSENT,
      severity: 'fail',
      message: `peer ${desired.name} AllowedIPs ${where} are not exactly ${desired.allowedIps.join(', ')}`,
      ...at('allowedips'),
    });
  }
  if (desired.persistentKeepalive !== actual.persistentKeepalive) {
    items.push({
      peer: desired.name,
      field: 'persistentKeepalive',
      expected: show(desired.persistentKeepalive),
      actual: show(actual.persistentKeepalive),
      severity: 'fail',
      message: `peer ${desired.name} PersistentKeepalive ${where} differs from the design`,
      ...at('persistentkeepalive'),
    });
  }
  if (actual.hasPresharedKey) {
    items.push({
      peer: desired.name,
      field: 'presharedKey',
      expected: ABSENT,
      actual: 'set',
      severity: 'warn',
      message: `peer ${desired.name} has a preshared key ${where}, which meshctl does not manage`,
      ...at('presharedkey'),
    });
  }
  return items;
}

// ---------------------------------------------------------------------------------------------------------------
// wg0.conf on disk

const stalePeerLabel = (peer: ParsedPeer) => peer.name ?? peer.publicKey ?? `[Peer] at line ${peer.line}`;

/** Drift between a parsed wg-quick file and the design. Empty when the file means exactly the design. */
export function compareConfigToDesired(parsed: ParsedWgQuickConfig, desired: DesiredNodeConfig): DriftItem[] {
  const items: DriftItem[] = [];
  const iface = parsed.interface;
  if (!iface) {
    items.push({
      field: 'interface',
      expected: 'present',
      actual: 'absent',
      severity: 'fail',
      message: 'the file has no [Interface] section',
    });
  } else {
    const at = (key: string) => (iface.lines[key] !== undefined ? { line: iface.lines[key] } : {});
    if (!sameSet([desired.address], iface.addresses)) {
      items.push({
        field: 'address',
        expected: desired.address,
        actual: iface.addresses.join(', ') || ABSENT,
        severity: 'fail',
        message: 'Address differs from the design',
        ...at('address'),
      });
    }
    const settings: Array<[DriftField, string, string, number | boolean | undefined, number | boolean]> = [
      ['listenPort', 'listenport', 'ListenPort', iface.listenPort, desired.listenPort],
      ['mtu', 'mtu', 'MTU', iface.mtu, desired.mtu],
      // wg-quick's default is false, so an absent SaveConfig already means what we want
      ['saveConfig', 'saveconfig', 'SaveConfig', iface.saveConfig ?? false, false],
    ];
    for (const [field, key, label, actual, expected] of settings) {
      if (actual !== expected) {
        items.push({
          field,
          expected: String(expected),
          actual: show(actual as number | undefined),
          severity: 'fail',
          message: `${label} differs from the design`,
          ...at(key),
        });
      }
    }
    const postUp = postUpLoadingPrivateKey(desired);
    // a relay's forwarding lines follow the key's (../render/relay.ts)
    const hooks = desired.relay ? relayHooks(desired.interface) : { postUp: [], preDown: [] };
    const postUps = [postUp, ...hooks.postUp];
    if (iface.postUp.length !== postUps.length || iface.postUp.some((line, i) => line !== postUps[i])) {
      const keyOk = iface.postUp[0] === postUp;
      items.push({
        field: 'postUp',
        expected: postUps.join(' ; '),
        actual: iface.postUp.join(' ; ') || ABSENT,
        severity: 'fail',
        message: !keyOk
          ? 'PostUp does not load the private key the way meshctl does'
          : desired.relay
            ? `PostUp does not enable relaying (forwarding on ${desired.interface} only) the way meshctl does`
            : 'PostUp runs more than loading the private key (relay lines on a node that relays nothing?)',
        ...at('postup'),
      });
    }
    const preDowns = iface.otherEntries.filter((entry) => entry.key.toLowerCase() === 'predown').map((entry) => entry.value);
    if (hooks.preDown.length > 0 && preDowns.join('\n') !== hooks.preDown.join('\n')) {
      items.push({
        field: 'otherSetting',
        expected: hooks.preDown.map((line) => `PreDown = ${line}`).join(' ; '),
        actual: preDowns.map((line) => `PreDown = ${line}`).join(' ; ') || ABSENT,
        severity: 'fail',
        message: 'PreDown does not undo the relay the way meshctl does',
        ...at('predown'),
      });
    }
    if (iface.hasPrivateKey) {
      items.push({
        field: 'privateKey',
        expected: ABSENT,
        actual: 'present (value not read)',
        severity: 'warn',
        message: `the file holds a PrivateKey line; meshctl keeps the key only in ${desired.privateKeyPath}`,
        ...at('privatekey'),
      });
    }
    for (const entry of iface.otherEntries) {
      if (hooks.preDown.length > 0 && entry.key.toLowerCase() === 'predown') continue; // judged above
      items.push({
        field: 'otherSetting',
        expected: ABSENT,
        actual: `${entry.key} = ${entry.value}`,
        severity: 'fail',
        message: `setting ${entry.key} is not part of the design`,
        line: entry.line,
      });
    }
  }

  const match = matchPeers(desired.peers, parsed.peers);
  const peerLabelByIndex = new Map<number, string>();
  const peerItems: DriftItem[] = [];
  // each block's position, once (an indexOf per pair was O(N^2) per node)
  const positionOf = new Map(parsed.peers.map((peer, i) => [peer, i]));
  const checkPair = (wanted: DesiredPeer, actual: ParsedPeer) => {
    peerLabelByIndex.set(positionOf.get(actual) ?? -1, wanted.name);
    if (actual.name !== wanted.name) {
      peerItems.push({
        peer: wanted.name,
        field: 'name',
        expected: wanted.name,
        actual: show(actual.name),
        severity: 'info',
        message: `the [Peer] comment does not name ${wanted.name}`,
        line: actual.line,
      });
    }
    if (actual.endpoint !== wanted.endpoint) {
      peerItems.push({
        peer: wanted.name,
        field: 'endpoint',
        expected: show(wanted.endpoint),
        actual: show(actual.endpoint),
        severity: 'fail',
        message: `peer ${wanted.name} Endpoint in the file differs from the design`,
        ...(actual.lines.endpoint !== undefined ? { line: actual.lines.endpoint } : { line: actual.line }),
      });
    }
    peerItems.push(...commonPeerDrift(wanted, actual, 'in the file', actual.lines));
  };
  for (const { desired: wanted, actual } of match.matched) checkPair(wanted, actual);
  for (const { desired: wanted, actual } of match.rekeyed) {
    peerItems.push(publicKeyDrift(wanted, actual.publicKey, desired.peers, actual.lines.publickey ?? actual.line));
    checkPair(wanted, actual);
  }
  for (const wanted of match.missing) {
    peerItems.push({
      peer: wanted.name,
      field: 'peer',
      expected: 'present',
      actual: 'absent',
      severity: 'fail',
      message: `peer ${wanted.name} is missing from the file`,
    });
  }
  for (const actual of match.stale) {
    peerLabelByIndex.set(parsed.peers.indexOf(actual), stalePeerLabel(actual));
    peerItems.push({
      peer: stalePeerLabel(actual),
      field: 'peer',
      expected: 'absent',
      actual: 'present',
      severity: 'fail',
      message: `peer ${stalePeerLabel(actual)} is in the file but not in the design`,
      line: actual.line,
    });
  }

  for (const diagnostic of parsed.diagnostics) {
    const peer = diagnostic.peerIndex === undefined ? undefined : peerLabelByIndex.get(diagnostic.peerIndex);
    items.push({
      ...(peer !== undefined ? { peer } : {}),
      field: 'syntax',
      severity: 'warn',
      message: diagnostic.message,
      line: diagnostic.line,
    });
  }
  return [...items, ...peerItems];
}

// ---------------------------------------------------------------------------------------------------------------
// Live interface

function liveEndpointDrift(wanted: DesiredPeer, live: LivePeer): DriftItem | undefined {
  const base = { peer: wanted.name, field: 'endpoint' as const, expected: show(wanted.endpoint), actual: show(live.endpoint) };
  if (wanted.endpoint === live.endpoint) return undefined;
  if (wanted.endpoint === undefined) {
    return {
      ...base,
      severity: 'info',
      message: `peer ${wanted.name} dialled in from ${live.endpoint} (no endpoint is configured for it)`,
    };
  }
  if (live.endpoint === undefined) {
    return { ...base, severity: 'fail', message: `peer ${wanted.name} has no endpoint on the live interface: the config was not applied` };
  }
  const expected = splitEndpoint(wanted.endpoint);
  const actual = splitEndpoint(live.endpoint);
  if (expected && actual && expected.host === actual.host && expected.port === actual.port) return undefined;
  if (expected && !isIpLiteral(expected.host)) {
    return {
      ...base,
      severity: 'info',
      message: `peer ${wanted.name} is configured by name (${expected.host}); live ${live.endpoint} is its resolved address`,
    };
  }
  if (expected && actual && expected.host === actual.host && wanted.throughNat) {
    return {
      ...base,
      severity: 'info',
      message: `a NAT between this node and ${wanted.name} rewrote the source port; WireGuard roamed to it`,
    };
  }
  return {
    ...base,
    severity: 'warn',
    message: `peer ${wanted.name} live endpoint ${live.endpoint} is not the designed ${wanted.endpoint}: it dialled in from there, or the design's address is wrong`,
  };
}

/**
 * Drift between the live interface and the design. `livePeers` from parseWgDumpPeers, `liveInterface` from
 * parseLiveInterface (skipped when not given). Handshake ages are not drift; checks judge them.
 */
/**
 * A peer whose packets come from the endpoint designed for ANOTHER peer (typically a forward on a shared NAT): its
 * router mapped its outbound flow onto the public port forwarded to the other node. While that mapping lives
 * (keepalives refresh it), datagrams sent to the other node's forward reach this peer instead, so the other node
 * can only be reached when it dials out itself.
 */
function natCollisionDrift(wanted: DesiredPeer, live: LivePeer, byEndpoint: ReadonlyMap<string, DesiredPeer[]>): DriftItem | undefined {
  if (!live.endpoint) return undefined;
  const owner = byEndpoint.get(live.endpoint)?.find((p) => p.name !== wanted.name);
  if (!owner) return undefined;
  return {
    peer: wanted.name,
    field: 'endpoint',
    expected: show(wanted.endpoint),
    actual: live.endpoint,
    severity: 'warn',
    message:
      `peer ${wanted.name} talks from ${live.endpoint}, the forward designed for ${owner.name}: its NAT router mapped ${wanted.name}'s ` +
      `outbound flow onto ${owner.name}'s forwarded port, so datagrams for ${owner.name} reach ${wanted.name} while the mapping lasts ` +
      `(on the router, keep outbound mappings off forwarded ports: SNAT each node's WireGuard port to its own forward, or masquerade with random ports)`,
  };
}

export function compareLiveToDesired(
  desired: DesiredNodeConfig,
  livePeers: readonly LivePeer[],
  liveInterface?: LiveInterface,
): DriftItem[] {
  const items: DriftItem[] = [];
  if (liveInterface) {
    if (liveInterface.publicKey !== desired.publicKey) {
      items.push({
        field: 'publicKey',
        expected: desired.publicKey,
        actual: show(liveInterface.publicKey),
        severity: 'fail',
        message:
          liveInterface.publicKey === undefined
            ? `${desired.interface} has no private key loaded`
            : `${desired.interface} runs with another key than the one its peers were given`,
      });
    }
    if (liveInterface.listenPort !== desired.listenPort) {
      items.push({
        field: 'listenPort',
        expected: String(desired.listenPort),
        actual: show(liveInterface.listenPort),
        severity: 'fail',
        message: `${desired.interface} listens on another port than designed`,
      });
    }
  }
  const match = matchPeers(desired.peers, livePeers);
  // the design's peers by endpoint, in peer order, once: a scan of all peers per live peer was O(N^2) per node
  const byEndpoint = new Map<string, DesiredPeer[]>();
  for (const peer of desired.peers) {
    if (peer.endpoint === undefined) continue;
    const list = byEndpoint.get(peer.endpoint);
    if (list) list.push(peer);
    else byEndpoint.set(peer.endpoint, [peer]);
  }
  const checkPair = (wanted: DesiredPeer, live: LivePeer) => {
    const endpoint = natCollisionDrift(wanted, live, byEndpoint) ?? liveEndpointDrift(wanted, live);
    if (endpoint) items.push(endpoint);
    items.push(...commonPeerDrift(wanted, live, 'on the live interface'));
  };
  for (const { desired: wanted, actual } of match.matched) checkPair(wanted, actual);
  for (const { desired: wanted, actual } of match.rekeyed) {
    items.push(publicKeyDrift(wanted, actual.publicKey, desired.peers));
    checkPair(wanted, actual);
  }
  for (const wanted of match.missing) {
    items.push({
      peer: wanted.name,
      field: 'peer',
      expected: 'present',
      actual: 'absent',
      severity: 'fail',
      message: `peer ${wanted.name} is missing from the live interface`,
    });
  }
  for (const live of match.stale) {
    items.push({
      peer: live.publicKey,
      field: 'peer',
      expected: 'absent',
      actual: 'present',
      severity: 'fail',
      message: `live peer ${live.publicKey} is not in the design (stale)`,
    });
  }
  return items;
}
