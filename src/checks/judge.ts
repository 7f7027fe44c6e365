/**
 * Pure judges of what both `up`'s gates and `verify` check: each takes what is expected (from the inventory /
 * design) and what was observed (facts from ../facts/definitions.ts) and returns one Judgement. No I/O, no clock:
 * the node's own clock comes in as `now`.
 *
 * How up's gates (src/engine/registry.ts) map onto them:
 *   service-active    -> judgeService(serviceExpectation(iface), serviceFromFacts(facts))
 *   interface-present -> judgeInterface({ iface, publicKey }, interfaceFromFacts(facts, iface))
 *   rp-filter-loose   -> judgeRpFilter({ iface, mode, requireAllAndDefault: true }, rpFilterFromFacts(facts))
 *   overlay-routes    -> judgeOverlayRoutes({ iface, peers: desired.peers }, { interfaceRoutes: facts.interfaceRoutes })
 *   handshakes-recent -> judgeHandshakesRecent(desired.peers, { peers: facts.peers, now: facts.now })
 * A gate that must not pass on a warning maps 'warn' to 'fail' itself.
 */
import { REJECT_AFTER_TIME_S, wireguardPaths } from '../remote/wireguard.js';
import type { IfaceAddr, RouteLookup, RpFilter, ServiceState } from '../facts/definitions.js';
import type { NodeFacts } from '../facts/node-facts.js';
import { describeOverride, rpFilterOverrides, type SysctlFileSettings } from '../facts/sysctl-order.js';
import type { LivePeer } from '../render/wgdump.js';

export type JudgeStatus = 'pass' | 'warn' | 'fail';

/** One verdict: a status, one line for people, and the facts behind it (one per line). */
export interface Judgement {
  status: JudgeStatus;
  message: string;
  evidence?: string[];
}

const judgement = (status: JudgeStatus, message: string, evidence?: string[]): Judgement => ({
  status,
  message,
  ...(evidence?.length ? { evidence } : {}),
});

// ---------------------------------------------------------------------------------------------------------------
// Service

export interface ServiceExpectation {
  /** the WireGuard interface; the unit is wg-quick@IFACE */
  iface: string;
}

export interface ServiceObservation {
  service: ServiceState;
  /** the interface exists (without systemd, wg-quick alone may have brought it up) */
  interfacePresent: boolean;
}

/**
 * wg-quick@IFACE must be active and enabled. Active but not enabled: warn (it will not come back after a reboot).
 * No systemd: warn when the interface is up anyway (not persistent), fail when it is not. Anything else: fail.
 */
export function judgeService(expected: ServiceExpectation, observed: ServiceObservation): Judgement {
  const unit = wireguardPaths(expected.iface).service;
  const svc = observed.service;
  if (!svc.systemd)
    return observed.interfacePresent
      ? judgement('warn', `no systemd: ${expected.iface} is up but will not come back after a reboot by itself`, ['systemd: not running'])
      : judgement('fail', `no systemd: ${expected.iface} is not running`, ['systemd: not running']);
  const evidence = [`systemctl is-active: ${svc.active ?? '?'}`, `systemctl is-enabled: ${svc.enabled ?? '?'}`];
  if (svc.active !== 'active') return judgement('fail', `${unit} is ${svc.active ?? 'not known to systemd'}`, evidence);
  if (svc.enabled !== 'enabled')
    return judgement('warn', `${unit} is active but ${svc.enabled ?? 'not enabled'}: it will not come back after a reboot`, evidence);
  return judgement('pass', `${unit} is enabled and active`, evidence);
}

/** The service facts of up's probe in the judge's shape ('unknown' is what the probe reads for "printed nothing"). */
export function serviceFromFacts(facts: Pick<NodeFacts, 'systemd' | 'service' | 'interfaces'>, iface: string): ServiceObservation {
  const known = (value: string) => (value && value !== 'unknown' ? value : undefined);
  const active = known(facts.service.active);
  const enabled = known(facts.service.enabled);
  return {
    service: facts.systemd ? { systemd: true, ...(active ? { active } : {}), ...(enabled ? { enabled } : {}) } : { systemd: false },
    interfacePresent: facts.interfaces.includes(iface),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Interface

export interface InterfaceExpectation {
  iface: string;
  /** when given, the interface must run with this public key (the key its peers were configured with) */
  publicKey?: string;
}

export interface InterfaceObservation {
  present: boolean;
  /** link flag UP; undefined when not probed (up's facts probe reads no flags) */
  up?: boolean;
  ifindex?: number;
  /** the public half of the key the interface runs with (`wg show IFACE public-key`) */
  publicKey?: string;
  /** lines describing the interface (ip addr), passed through as evidence */
  evidence?: string[];
}

/**
 * The interface must exist and be up; with `expected.publicKey`, it must also run with that key (an interface that
 * lost its key answers no peer).
 */
export function judgeInterface(expected: InterfaceExpectation, observed: InterfaceObservation): Judgement {
  const { iface } = expected;
  const evidence = [
    ...(observed.evidence ?? []),
    ...(expected.publicKey !== undefined ? [`wg public-key: ${observed.publicKey ?? '(none)'}`] : []),
  ];
  if (!observed.present) return judgement('fail', `${iface} does not exist`, evidence);
  if (observed.up === false) return judgement('fail', `${iface} exists but is down`, evidence);
  if (expected.publicKey !== undefined && observed.publicKey === undefined)
    return judgement('fail', `${iface} runs without a private key: it can answer no peer`, evidence);
  if (expected.publicKey !== undefined && observed.publicKey !== expected.publicKey)
    return judgement('fail', `${iface} runs with another key than its peers were given`, evidence);
  const index = observed.ifindex !== undefined ? ` (ifindex ${observed.ifindex})` : '';
  return judgement('pass', `${iface} is up${index}${expected.publicKey !== undefined ? ' with its key' : ''}`, evidence);
}

/** The interface as verify's checklist sees it (ip -j addr + wg show public-key). */
export function interfaceFromAddr(addr: IfaceAddr, iface: string, publicKey?: string): InterfaceObservation {
  return {
    present: addr.exists,
    up: addr.up,
    ...(addr.ifindex !== undefined ? { ifindex: addr.ifindex } : {}),
    ...(publicKey !== undefined ? { publicKey } : {}),
    evidence: addr.exists
      ? [
          `ip addr: ${iface} flags ${addr.flags.join(',')} mtu ${addr.mtu ?? '?'} state ${addr.operstate ?? '?'} inet ${addr.addresses.join(' ') || '(none)'}`,
        ]
      : [`ip addr: ${addr.error ?? 'no such interface'}`],
  };
}

/** The interface as up's facts probe sees it (interface list, ifindex, live key; no link flags). */
export function interfaceFromFacts(
  facts: Pick<NodeFacts, 'interfaces' | 'interfaceIndex' | 'interfacePublicKey'>,
  iface: string,
): InterfaceObservation {
  return {
    present: facts.interfaces.includes(iface),
    ...(facts.interfaceIndex !== undefined ? { ifindex: facts.interfaceIndex } : {}),
    ...(facts.interfacePublicKey !== undefined ? { publicKey: facts.interfacePublicKey } : {}),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// rp_filter

export const RP_FILTER_MODES = ['off (0)', 'strict (1)', 'loose (2)'];
const rpName = (value: number | undefined) => (value === undefined ? '?' : (RP_FILTER_MODES[value] ?? String(value)));

export interface RpFilterExpectation {
  iface: string;
  /** the designed mode: 0 off, 1 strict, 2 loose (inventory mesh.rpFilter) */
  mode: number;
  /**
   * also require net.ipv4.conf.{all,default}.rp_filter = mode (what up writes: `default` is what an interface
   * created later, e.g. after a restart, starts with). verify judges the effective value only.
   */
  requireAllAndDefault?: boolean;
}

/**
 * The effective rp_filter on the interface (the kernel uses max(all, IFACE), Documentation/networking/ip-sysctl.rst)
 * must be the designed mode. Strict where the design wants another mode fails (replies from peers whose routes
 * point elsewhere are dropped); any other mismatch warns; unreadable values warn.
 */
export function judgeRpFilter(expected: RpFilterExpectation, observed: RpFilter): Judgement {
  const { iface, mode } = expected;
  const evidence = [
    `net.ipv4.conf.all.rp_filter = ${observed.all ?? '?'}`,
    `net.ipv4.conf.default.rp_filter = ${observed.default ?? '?'}`,
    `net.ipv4.conf.${iface}.rp_filter = ${observed.iface ?? '?'}`,
  ];
  if (expected.requireAllAndDefault && (observed.all !== mode || observed.default !== mode))
    return judgement(
      'fail',
      `rp_filter is all=${observed.all ?? '?'} default=${observed.default ?? '?'}, the design wants ${mode}`,
      evidence,
    );
  const effective =
    observed.effective ??
    (observed.all !== undefined || observed.iface !== undefined ? Math.max(observed.all ?? 0, observed.iface ?? 0) : undefined);
  if (effective === undefined) {
    // without the interface (up's gate before it exists) all and default are all there is to judge
    if (expected.requireAllAndDefault) return judgement('pass', `rp_filter all=${mode} default=${mode}`, evidence);
    return judgement('warn', 'rp_filter could not be read', evidence);
  }
  if (effective === mode) return judgement('pass', `effective rp_filter on ${iface} is ${rpName(effective)}`, evidence);
  return judgement(
    effective === 1 ? 'fail' : 'warn',
    `effective rp_filter on ${iface} is ${rpName(effective)} (max of all and ${iface}), the design wants ${rpName(mode)}`,
    evidence,
  );
}

export interface RpFilterLastingExpectation {
  iface: string;
  /** the designed mode (inventory mesh.rpFilter) */
  mode: number;
  /** meshctl's sysctl file (wireguardPaths(iface).sysctl) */
  ours: string;
}

/**
 * Whether the designed rp_filter lasts beyond now: a strict `default` where the design wants another mode makes a
 * re-created interface (wg-quick down/up, a reboot) start strict; a sysctl file applied after ours with another value
 * (rpFilterOverrides, sysctl.d(5) order) undoes it at every boot. Either warns, naming the file; else pass.
 * `files` undefined: not probed, nothing judged about files.
 */
export function judgeRpFilterLasting(
  expected: RpFilterLastingExpectation,
  observed: { default?: number; files?: readonly SysctlFileSettings[] },
): Judgement {
  const { iface, mode, ours } = expected;
  // the lasting cause (a file) first: it is what to fix
  const problems = rpFilterOverrides(observed.files ?? [], { ours, iface, mode }).map((o) => describeOverride(o, ours));
  if (observed.default === 1 && mode !== 1)
    problems.push(
      `net.ipv4.conf.default.rp_filter is strict (1): a re-created ${iface} would start strict, the design wants ${rpName(mode)}`,
    );
  if (!problems.length) return judgement('pass', 'no sysctl file overrides the designed rp_filter');
  return judgement('warn', problems.length > 1 ? `${problems[0]} (+${problems.length - 1} more)` : problems[0]!, problems);
}

/**
 * One verdict from rp_filter now (judgeRpFilter) and whether it lasts (judgeRpFilterLasting): the worse status; a
 * pass now with a lasting problem is the lasting warning; otherwise the lasting problems join the evidence.
 */
export function combineRpFilter(now: Judgement, lasting: Judgement): Judgement {
  if (lasting.status === 'pass') return now;
  const evidence = [...(now.evidence ?? []), ...(lasting.evidence ?? [])];
  if (now.status === 'pass') return judgement('warn', lasting.message, evidence);
  return judgement(now.status, now.message, evidence);
}

/** rp_filter from up's facts probe. */
export const rpFilterFromFacts = (facts: Pick<NodeFacts, 'sysctl'>): RpFilter => ({
  ...(facts.sysctl.rpFilterAll !== undefined ? { all: facts.sysctl.rpFilterAll } : {}),
  ...(facts.sysctl.rpFilterDefault !== undefined ? { default: facts.sysctl.rpFilterDefault } : {}),
  ...(facts.sysctl.rpFilterInterface !== undefined ? { iface: facts.sysctl.rpFilterInterface } : {}),
});

// ---------------------------------------------------------------------------------------------------------------
// Routes

/** A peer as the judges need it (a DesiredPeer fits). */
export interface PeerExpectation {
  name: string;
  publicKey: string;
  allowedIps: string[];
}

/**
 * Whether `ip route show dev IFACE` output covers `cidr`: it prints host routes WITHOUT /32
 * ("172.27.15.11 scope link"), other prefixes with theirs.
 */
export function routeCovers(interfaceRoutes: readonly string[], cidr: string): boolean {
  return covered(routeDestinations(interfaceRoutes), cidr);
}

/** The destinations of `ip route show dev IFACE` lines (their first word), once per node, for `covered`. */
const routeDestinations = (interfaceRoutes: readonly string[]) => new Set(interfaceRoutes.map((line) => line.trim().split(/\s+/)[0]));
const covered = (routes: ReadonlySet<string | undefined>, cidr: string) =>
  routes.has(cidr) || (cidr.endsWith('/32') && routes.has(cidr.slice(0, -3)));

/** Every AllowedIPs prefix of every peer (one /32 per peer in a meshctl design) must be routed via the interface. */
export function judgeOverlayRoutes(
  expected: { iface: string; peers: ReadonlyArray<Pick<PeerExpectation, 'name' | 'allowedIps'>> },
  observed: { interfaceRoutes: readonly string[] },
): Judgement {
  // the route set is built once per node: once per peer was O(N^2) per node (298 s of CPU for 1,000 nodes, farm)
  const routes = routeDestinations(observed.interfaceRoutes);
  const missing = expected.peers.flatMap((p) => p.allowedIps.filter((cidr) => !covered(routes, cidr)).map((cidr) => `${cidr} (${p.name})`));
  const evidence = observed.interfaceRoutes.map((r) => `ip route show dev ${expected.iface}: ${r}`);
  if (missing.length) return judgement('fail', `missing routes via ${expected.iface}: ${missing.join(', ')}`, evidence);
  return judgement('pass', `${expected.peers.length} peer routes via ${expected.iface}`, evidence);
}

/**
 * One peer's overlay address must be routed via the interface. With a route lookup (`ip route get IP`, verify) the
 * kernel's choice is judged, which also catches a more specific route elsewhere; without one, the interface's route
 * list is.
 */
export function judgePeerRoute(
  expected: { iface: string; peer: string; ip: string },
  observed: { lookup?: RouteLookup; interfaceRoutes?: readonly string[] },
): Judgement {
  const { iface, peer, ip } = expected;
  const route = observed.lookup;
  if (!route) {
    const ok = routeCovers(observed.interfaceRoutes ?? [], `${ip}/32`);
    return ok
      ? judgement('pass', `${ip} (${peer}) is routed via ${iface}`)
      : judgement('fail', `no route to ${ip} (${peer}) via ${iface}: the /32 route is missing`);
  }
  const evidence = [
    `ip route get ${ip}: ${route.dev ? `dev ${route.dev}` : ''}${route.gateway ? ` via ${route.gateway}` : ''}${route.error ? ` ${route.error}` : ''}`.trim(),
  ];
  if (route.dev === iface) return judgement('pass', `${ip} (${peer}) is routed via ${iface}`, evidence);
  return judgement(
    'fail',
    route.dev
      ? `${ip} (${peer}) is routed via ${route.dev}${route.gateway ? ` ${route.gateway}` : ''}, not ${iface}: the /32 route is missing`
      : `no route to ${ip} (${peer})${route.error ? `: ${route.error}` : ''}`,
    evidence,
  );
}

// ---------------------------------------------------------------------------------------------------------------
// Handshakes

export interface HandshakeObservation {
  /** live peers (`wg show IFACE dump`) */
  peers: readonly LivePeer[];
  /** the node's clock, Unix seconds, when the peers were read; without it any handshake counts as recent */
  now?: number;
  /** the peers were read right after a ping round (messages say so) */
  afterPing?: boolean;
}

/** "42s", "3 min", "5 h", "2 days" */
export function formatAge(seconds: number): string {
  if (seconds < 120) return `${seconds}s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

/**
 * One peer's session: fail when the peer is not configured with its key or never shook hands; warn when the latest
 * handshake is older than REJECT_AFTER_TIME (its keys are no longer used: no live session); pass otherwise.
 */
export function judgeHandshake(expected: Pick<PeerExpectation, 'name' | 'publicKey'>, observed: HandshakeObservation): Judgement {
  return judgeSession(
    expected,
    observed.peers.find((p) => p.publicKey === expected.publicKey),
    observed,
  );
}

/** Whether judgeSession passes, without making its message and evidence (verify counts the passes: issue 10). */
export function sessionPasses(live: LivePeer | undefined, observed: Pick<HandshakeObservation, 'now'>): boolean {
  if (!live || live.latestHandshake === undefined) return false;
  return observed.now === undefined || Math.max(0, observed.now - live.latestHandshake) <= REJECT_AFTER_TIME_S;
}

/**
 * judgeHandshake with the live peer already looked up (undefined: no peer with that key): for a caller that judges
 * every peer of a node, with the live peers indexed once (a scan per peer was O(N^2) per node, O(N^3) per mesh).
 */
export function judgeSession(
  expected: Pick<PeerExpectation, 'name' | 'publicKey'>,
  live: LivePeer | undefined,
  observed: HandshakeObservation,
): Judgement {
  const { now } = observed;
  if (!live) return judgement('fail', `no session possible: ${expected.name} is not a peer with its key`);
  const evidence = [
    `latest handshake: ${live.latestHandshake ?? 'never'}${now !== undefined ? ` (node clock ${now})` : ''}`,
    `transfer: rx ${live.rxBytes} B, tx ${live.txBytes} B`,
  ];
  if (live.latestHandshake === undefined)
    return judgement('fail', `never a handshake with ${expected.name}${observed.afterPing ? ', even after the pings' : ''}`, evidence);
  if (now === undefined) return judgement('pass', `handshake with ${expected.name} at ${live.latestHandshake}`, evidence);
  const age = Math.max(0, now - live.latestHandshake);
  if (age > REJECT_AFTER_TIME_S)
    return judgement(
      'warn',
      `latest handshake with ${expected.name} was ${formatAge(age)} ago (over ${REJECT_AFTER_TIME_S / 60} min)`,
      evidence,
    );
  return judgement('pass', `handshake with ${expected.name} ${formatAge(age)} ago`, evidence);
}

/** Every peer must have a recent handshake (judgeHandshake passes for each); fails naming the others. */
export function judgeHandshakesRecent(
  expected: ReadonlyArray<Pick<PeerExpectation, 'name' | 'publicKey'>>,
  observed: HandshakeObservation,
): Judgement {
  // live peers by key, once per node: a scan per expected peer was O(N^2) per node
  const byKey = new Map<string, LivePeer>();
  for (const live of observed.peers) if (!byKey.has(live.publicKey)) byKey.set(live.publicKey, live);
  const verdicts = expected.map((peer) => ({ peer, verdict: judgeSession(peer, byKey.get(peer.publicKey), observed) }));
  const stale = verdicts.filter((v) => v.verdict.status !== 'pass');
  const evidence = stale.map((v) => `${v.peer.name}: ${v.verdict.message}`);
  if (stale.length) return judgement('fail', `no recent handshake with ${stale.map((v) => v.peer.name).join(', ')}`, evidence);
  return judgement('pass', `recent handshakes with all ${expected.length} peers`);
}
