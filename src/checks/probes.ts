/**
 * Read-only remote probes of `verify` and `debug`. The checklist is composed from the shared fact definitions
 * (../facts/definitions.ts: the same commands and parsers as up's facts probe), so the command a node runs and the
 * way its output is read cannot drift apart between commands. Parsers are pure and tested with fixtures captured
 * from the real tools (test/fixtures/probes/).
 *
 * Few round trips: a probe that needs many commands runs them in ONE script whose output is cut into named sections
 * (../facts/sections.ts), each with the exit status of its command.
 *
 * Private keys never leave a node: see ../facts/definitions.ts (dump without its interface line, preshared keys
 * masked, the wg-quick file filtered on the node and again here).
 */
import { shellQuote } from '../remote/shell.js';
import {
  FACTS,
  readFact,
  parseRouteGet,
  parseSsUdp,
  routeSectionName,
  type FactContext,
  type FactDef,
  type IfaceAddr,
  type RouteLookup,
  type RpFilter,
  type ServiceState,
  type UdpListener,
  type WireGuardFileMode,
} from '../facts/definitions.js';
import {
  beginMarker,
  endMarker,
  ownSection,
  ownText,
  PATH_PRELUDE,
  sectionScript,
  splitSections,
  type Section,
} from '../facts/sections.js';
import type { LivePeer, ParsedWgDump } from '../render/wgdump.js';
import type { SysctlFileSettings } from '../facts/sysctl-order.js';
import { parseWgQuickConfig, type ParsedWgQuickConfig } from '../render/wgquick.js';
import type { FirewallFacts } from '../firewall/verdict.js';
import { UDP_COUNTERS_FACT, type UdpCounters } from './cold-start.js';
import { RELAY_FACT, relayIptablesFromSave, type RelayState } from './relay-check.js';
import { leanChecklistFacts, peerListLine, routeLoop, routeSection } from './checklist-lean.js';
import { RouteRow } from './live-peers.js';

// the building blocks, re-exported for the code that imported them from here
export { PATH_PRELUDE, sectionScript, splitSections, type Section };
export {
  dropSecretLines,
  filteredConfigCommand,
  parseIpAddr,
  parseRouteGet,
  parseRpFilter,
  parseService,
  parseSsUdp,
  peerDumpCommand,
  type IfaceAddr,
  type RouteLookup,
  type RpFilter,
  type ServiceState,
  type UdpListener,
} from '../facts/definitions.js';

export interface Probe<T> {
  /** a POSIX sh script; read-only on the node */
  script: string;
  parse(stdout: string): T;
}

const BEGIN = beginMarker('');
const END = endMarker('');

// ---------------------------------------------------------------------------------------------------------------
// The verify checklist: one script per node

export interface ChecklistParams {
  interface: string;
  listenPort: number;
  /** overlay IPs of the node's peers: one `ip route get` each */
  peerIps: string[];
  /** add the firewall rules (debug) */
  firewall?: boolean;
  /**
   * facts (by name) this script leaves out because another script of the same run reads them (verify's pre
   * script: ../checks/collect.ts); parseChecklist then gets both scripts' output, concatenated
   */
  without?: ReadonlyArray<string>;
  /**
   * run the shared definitions' commands as they are (one process per command), not the lean ones of
   * ./checklist-lean.ts (same sections and answers, fewer processes): for captures that compare the two
   */
  shared?: boolean;
  /** the name of the section that ends the script (default `done`; beside the pings another: ./collect.ts) */
  endSection?: string;
}

export interface NodeChecklist {
  /** the node's clock, Unix seconds (handshake ages are computed against it, not against ours) */
  now?: number;
  iface: IfaceAddr;
  listeners: UdpListener[];
  /** `wg show IFACE public-key` */
  livePublicKey?: string;
  /** /etc/wireguard/IFACE.pub, only when the node found it holds the public half of IFACE.key */
  filePublicKey?: string;
  /** the node found IFACE.pub is NOT the public half of IFACE.key (its content never left the node) */
  publicKeyFileMismatch?: boolean;
  liveListenPort?: number;
  /** `wg show` could talk to the interface */
  wgAvailable: boolean;
  wgError?: string;
  /**
   * the live peers (`wg show IFACE dump`); in verify's collection (./collect.ts CollectOptions.compact) an enumerable
   * getter over a LivePeerTable (./live-peers.ts): a fresh array per read, so read it once per use
   */
  peers: LivePeer[];
  /**
   * wg0.conf on disk, secret lines removed; undefined when the file does not exist, and in verify's collection once
   * parsed into `config` (./collect.ts: only the parsed file is judged)
   */
  configText?: string;
  /** sha256 of wg0.conf on disk (computed on the node, secret lines included) */
  configSha256?: string;
  /** destinations routed via the interface, as `ip route show dev IFACE` prints them (host routes without /32) */
  interfaceRoutes: string[];
  config?: ParsedWgQuickConfig;
  /** one `ip route get` per peer address (ChecklistParams.peerIps order); in verify's collection a getter over a RouteRow, as `peers` */
  routes: RouteLookup[];
  rpFilter: RpFilter;
  /** the sysctl files that set rp_filter (FACTS.rpFilterSysctlFiles); undefined when the section is missing */
  rpFilterFiles?: SysctlFileSettings[];
  service: ServiceState;
  /** firewall rules (iptables-save / nft), when asked for */
  firewall?: string[];
  /** the whole ruleset (FACTS.firewallRuleset), judged by ../firewall/verdict.ts; undefined when not read */
  firewallRuleset?: FirewallFacts;
  /** /proc/net/snmp's UDP counters when the checklist ran (the cold-start probe's first read, ./cold-start.ts) */
  udpCounters?: UdpCounters;
  /** forwarding on the interface and meshctl's relay rule (./relay-check.ts); undefined when the section is missing */
  relay?: RelayState;
  /**
   * Owner and mode of /etc/wireguard, IFACE.key, IFACE.pub and IFACE.conf (FACTS.wireguardFiles), judged by the
   * `file-modes` check (./file-modes.ts); undefined when the section is missing
   */
  wireguardFiles?: WireGuardFileMode[];
  /** sections whose output could not be read */
  problems: string[];
}

/** The facts of the checklist, in script order (the per-peer route lookups and the firewall are added to them). */
const CHECKLIST_FACTS: ReadonlyArray<FactDef<unknown>> = [
  FACTS.now,
  FACTS.interfaceAddr,
  FACTS.listenPortUsers,
  FACTS.interfacePublicKey,
  FACTS.publicKeyFile,
  FACTS.interfaceListenPort,
  FACTS.peers,
  FACTS.configMeta,
  FACTS.configText,
  FACTS.interfaceRoutes,
  FACTS.rpFilter,
  FACTS.service,
  FACTS.rpFilterSysctlFiles,
  FACTS.firewallRuleset,
  UDP_COUNTERS_FACT,
  RELAY_FACT,
  FACTS.wireguardFiles,
];

const contextOf = (params: ChecklistParams): FactContext => ({ interface: params.interface, listenPort: params.listenPort });
/**
 * The checklist script of one node (one round trip, read-only): factsScript of CHECKLIST_FACTS, a route lookup per
 * peer and the firewall (debug), less `without`, each in its lean form unless `shared` (./checklist-lean.ts). Lean,
 * the peers' addresses are written once (peerListLine) and their route sections are one loop over them (routeLoop):
 * the script grows by an address per peer (issue 10: a section each, 264 bytes per peer, 283 KB per node at 1,000
 * nodes). Shared, a peer's route section is the same text in every node's script: made once per address
 * (routeSection), not once per pair.
 */
export function checklistScript(params: ChecklistParams): string {
  const ctx = contextOf(params);
  const lean = params.shared ? undefined : leanChecklistFacts(params.peerIps, { routes: false });
  const kept = (name: string) => !params.without?.includes(name);
  const parts = [PATH_PRELUDE];
  if (lean) parts.push(peerListLine(params.peerIps));
  const add = (def: FactDef<unknown>) => {
    if (kept(def.name)) parts.push(sectionScript(def.name, (lean?.get(def.name) ?? def).command(ctx)));
  };
  for (const def of CHECKLIST_FACTS) add(def);
  const routed = params.peerIps.filter((ip) => kept(routeSectionName(ip)));
  if (!lean) for (const ip of routed) parts.push(routeSection(ip, false));
  else if (routed.length > 0) parts.push(routeLoop(routed.length === params.peerIps.length ? undefined : routed));
  if (params.firewall) add(FACTS.firewall);
  parts.push(sectionScript(params.endSection ?? 'done', 'true'));
  return parts.join('\n');
}

/** The names of the checklist script's sections, its end section included (what parseChecklistSections reads). */
export const checklistSectionNames = (params: ChecklistParams): string[] => [
  // the names alone (a lean fact keeps its shared one): no fact made per peer to be asked its name
  ...[
    ...CHECKLIST_FACTS.map((def) => def.name),
    ...params.peerIps.map(routeSectionName),
    ...(params.firewall ? [FACTS.firewall.name] : []),
  ].filter((name) => !params.without?.includes(name)),
  params.endSection ?? 'done',
];

/** Reads the checklist script's stdout; sections that are missing or unreadable are named in `problems`. */
export function parseChecklist(stdout: string, params: ChecklistParams): NodeChecklist {
  return parseChecklistSections(splitSections(stdout), params);
}

/**
 * parseChecklist on output already cut into sections (from one script or several: ./collect.ts). `dump`: the peer
 * dump section already parsed (verify's pre part read it: ./collect.ts), so it is not parsed again; `routes`: route
 * lookups already parsed (parseRouteGet of each `route:IP` section as it arrived, by IP: ./collect.ts startFirst),
 * used for the peers they have, the sections read for the others. With a RouteRow (lookups kept as numbers:
 * ./live-peers.ts) the others' lookups are added to it, and `routes` is left empty: the caller reads the row (as
 * ./collect.ts does, through a getter).
 */
export function parseChecklistSections(
  s: Map<string, Section>,
  params: ChecklistParams,
  dump?: ParsedWgDump,
  routes?: ReadonlyMap<string, RouteLookup> | RouteRow,
): NodeChecklist {
  const ctx = contextOf(params);
  const fact = <T>(def: FactDef<T>) => readFact(def, s, ctx);
  const problems: string[] = [];
  if (!s.has(params.endSection ?? 'done')) problems.push('the checklist script did not run to its end');
  const body = (def: FactDef<unknown>) => s.get(def.name)?.body ?? '';

  const now = fact(FACTS.now);
  const livePublicKey = fact(FACTS.interfacePublicKey);
  const filePublicKey = fact(FACTS.publicKeyFile);
  const liveListenPort = fact(FACTS.interfaceListenPort);
  const wgAvailable = s.get(FACTS.interfaceListenPort.name)?.rc === 0;

  dump ??= fact(FACTS.peers);
  // the dump's own error lines ("Unable to access interface") are not peer lines: only report them when wg works
  if (wgAvailable) for (const p of dump.problems) problems.push(`wg dump line ${p.line}: ${p.reason}`);

  const meta = fact(FACTS.configMeta);
  const configText = meta.exists ? (fact(FACTS.configText) ?? '') : undefined;
  const config = configText !== undefined ? parseWgQuickConfig(configText) : undefined;
  // the PrivateKey line was dropped on the node; its count says it is there, so verify can report where the key sits
  if (config?.interface && meta.privateKeyLines > 0) config.interface.hasPrivateKey = true;
  // present whenever the script read it (debug asks for it)
  const firewall = s.has(FACTS.firewall.name) ? fact(FACTS.firewall) : undefined;
  const firewallRuleset = fact(FACTS.firewallRuleset);
  const udpCounters = fact(UDP_COUNTERS_FACT);
  // the lean relay section leaves its iptables lines to the ruleset's iptables-save text it already read
  const relayRead = s.has(RELAY_FACT.name) ? fact(RELAY_FACT) : undefined;
  const relay =
    relayRead && /^ipt-from=fwrules$/m.test(body(RELAY_FACT))
      ? { ...relayRead, iptables: relayIptablesFromSave(firewallRuleset?.iptablesNft ?? '', params.interface) }
      : relayRead;

  return {
    ...(now !== undefined ? { now } : {}),
    iface: fact(FACTS.interfaceAddr),
    listeners: parseSsUdp(fact(FACTS.listenPortUsers).join('\n')),
    ...(livePublicKey ? { livePublicKey } : {}),
    ...(filePublicKey ? { filePublicKey } : {}),
    ...(body(FACTS.publicKeyFile) === 'mismatch' ? { publicKeyFileMismatch: true } : {}),
    ...(liveListenPort !== undefined ? { liveListenPort } : {}),
    wgAvailable,
    ...(!wgAvailable
      ? { wgError: body(FACTS.interfaceListenPort).split('\n')[0] || body(FACTS.interfacePublicKey).split('\n')[0] || 'wg show failed' }
      : {}),
    peers: wgAvailable ? dump.peers : [],
    ...(configText !== undefined ? { configText } : {}),
    ...(meta.sha256 ? { configSha256: meta.sha256 } : {}),
    ...(config ? { config } : {}),
    interfaceRoutes: fact(FACTS.interfaceRoutes),
    // routeLookupFact(ip)'s parse, without a fact made per peer
    routes:
      routes instanceof RouteRow
        ? rowFilled(routes, params.peerIps, s)
        : params.peerIps.map((ip) => routes?.get(ip) ?? parseRouteGet(ip, s.get(routeSectionName(ip)))),
    rpFilter: fact(FACTS.rpFilter),
    ...(s.has(FACTS.rpFilterSysctlFiles.name) ? { rpFilterFiles: fact(FACTS.rpFilterSysctlFiles) } : {}),
    service: fact(FACTS.service),
    ...(firewall ? { firewall } : {}),
    ...(firewallRuleset ? { firewallRuleset } : {}),
    ...(udpCounters ? { udpCounters } : {}),
    ...(relay ? { relay } : {}),
    ...(s.has(FACTS.wireguardFiles.name) ? { wireguardFiles: fact(FACTS.wireguardFiles) } : {}),
    problems,
  };
}

/** Adds to `row` the lookup of each of `ips` it has not got, read from its section (parseChecklistSections' way); returns []. */
function rowFilled(row: RouteRow, ips: readonly string[], s: Map<string, Section>): RouteLookup[] {
  for (const ip of ips) if (!row.has(ip)) row.set(parseRouteGet(ip, s.get(routeSectionName(ip))));
  return [];
}

export const checklistProbe = (params: ChecklistParams): Probe<NodeChecklist> => ({
  script: checklistScript(params),
  parse: (stdout) => parseChecklist(stdout, params),
});

// ---------------------------------------------------------------------------------------------------------------
// Ping and path MTU: one script per node, all peers at once

export interface PingTarget {
  node: string;
  /** overlay IP */
  ip: string;
}

export interface PingParams {
  targets: PingTarget[];
  /** echo requests per peer; the pair passes when that many replies came back */
  count: number;
  intervalSeconds: number;
  /**
   * ping's -w: a handshake that gets no answer is retried after REKEY_TIMEOUT (5 s), so anything below ~6 s can
   * fail a peer that merely came up late. ping returns as soon as `count` replies arrived, so a healthy mesh
   * never waits for it.
   */
  deadlineSeconds: number;
  /** when set, probe the path MTU: the largest ICMP payload that passes with DF, expected mtu - 28 */
  mtu?: number;
  /** extra sections run after all pings finished (e.g. the peer dump, to see handshakes the pings caused) */
  after?: Array<{ name: string; command: string }>;
  /**
   * sections run while the pings are under way, in the same round trip (verify's checklist: ./collect.ts): their
   * output is held in a variable and printed once the probes ended, so it cannot mix with the probes' lines;
   * `sections` names the ones to hand back in NodePingResults.beside
   */
  beside?: { script: string; sections: readonly string[] };
}

export interface PingResult {
  transmitted: number;
  received: number;
  /** percent */
  loss: number;
  rttMs?: { min: number; avg: number; max: number };
  errors?: number;
  /** a message from ping itself (Network is unreachable, ...) */
  error?: string;
  rc?: number;
}

export interface PathMtuResult {
  /** payload size that should pass: MTU - 28 (20 IPv4 + 8 ICMP) */
  expected: number;
  /** largest payload that passed with DF set; 0 when not even the smallest probe did */
  largest: number;
  ok: boolean;
  /**
   * payload sizes tried, in order, and whether each passed: the expected size first (beside the ping, DF_PROBE);
   * when that failed, the expected size again (DF_CONFIRM: waited for as long as the ping), and when that failed too
   * the binary search (DF_PROBE each). `[{1392, false}, {1392, true}]`: passed at the second try (a held-up peer)
   */
  tries: Array<{ size: number; ok: boolean }>;
  /** not probed: the peer answered no ping at all */
  skipped?: boolean;
}

/** Parses ping's summary (iputils, -q). */
export function parsePingSummary(text: string, rc?: number): PingResult {
  const stats =
    /(\d+) packets transmitted, (\d+) (?:packets )?received(?:, \+(\d+) errors)?(?:, \+\d+ duplicates)?(?:, ([\d.]+)% packet loss)?/.exec(
      text,
    );
  const rtt = /(?:rtt|round-trip) min\/avg\/max(?:\/mdev)? = ([\d.]+)\/([\d.]+)\/([\d.]+)/.exec(text);
  // a line that starts so needs the text to hold it ('From' in any case, as the pattern): most summaries hold
  // neither and skip the split (issue 10: one summary per pair, 1e6 at 1,000 nodes)
  const errorLine =
    text.includes('ping: ') || /from /i.test(text)
      ? text
          .split('\n')
          .map((l) => l.trim())
          .find((l) => /^ping: /.test(l) || /^From \S+ .*(unreachable|Frag needed|too long)/i.test(l))
      : undefined;
  if (!stats) {
    return {
      transmitted: 0,
      received: 0,
      loss: 100,
      error: errorLine ?? (text.trim().split('\n').pop() || 'no output from ping'),
      ...(rc !== undefined ? { rc } : {}),
    };
  }
  const transmitted = Number(stats[1]);
  const received = Number(stats[2]);
  const loss = stats[4] !== undefined ? Number(stats[4]) : transmitted ? Math.round((100 * (transmitted - received)) / transmitted) : 100;
  return {
    transmitted,
    received,
    loss,
    ...(rtt ? { rttMs: { min: Number(rtt[1]), avg: Number(rtt[2]), max: Number(rtt[3]) } } : {}),
    ...(stats[3] ? { errors: Number(stats[3]) } : {}),
    ...(errorLine ? { error: errorLine } : {}),
    ...(rc !== undefined ? { rc } : {}),
  };
}

/**
 * The path-MTU probe's echo requests (`dfok`, the DF fping): 2 with DF set, `intervalSeconds` apart, each waited for up
 * to `waitSeconds`. Issue 10: 0.05 s apart (0.2 s before), as the ping round's DEFAULT_PING, so the DF probe beside a
 * healthy pair's ping no longer outlasts it; the same 2 probes, the same wait.
 */
export const DF_PROBE = { count: 2, intervalSeconds: 0.05, waitSeconds: 1 } as const;

/** The DF ping of `dfok` for the shell words IP and SIZE: status 0 when its echo requests came back. */
const dfPing = (ip: string, size: string) =>
  `ping -n -q -M do -s ${size} -c ${DF_PROBE.count} -i ${DF_PROBE.intervalSeconds} -W ${DF_PROBE.waitSeconds} ${ip} >/dev/null 2>&1`;

/** `dfok IP SIZE`: status 0 when DF pings of SIZE bytes to IP came back (both branches use it). */
const DFOK_FUNCTION = `dfok() { ${dfPing('"$1"', '"$2"')}; }`;

/**
 * The second try of the expected payload, after the first (beside the ping) got no reply within DF_PROBE.waitSeconds:
 * one DF request every `intervalSeconds` until one is answered or the ping's own deadline has passed
 * (PingParams.deadlineSeconds; `ping -c 1 -w`), as patient as the ping, which keeps sending until its replies came.
 * Why (docs/ping-round.md, "Path MTU under load"): a node whose WireGuard is held up for a second or more
 * (wireguard-go on a busy host: 32 lab nodes on 2 loaded cores, a Raspberry Pi running other things) delays the
 * packets it carries and drops some (its tun queue full: `wg0` TX dropped), yet answers the ping, while both 1-s DF
 * tries of the expected size went unanswered: verify reported an MTU black hole, largest payload 1391 (every smaller
 * size of the search passed once the stall was over). A real black hole answers no request at any wait, so it still
 * fails, `deadlineSeconds` later than before; a peer that answers the expected size once within the ping's deadline
 * passes, as a ping does.
 */
export const DF_CONFIRM = { count: 1, intervalSeconds: 0.25 } as const;

/** `dfsure IP SIZE`: DF_CONFIRM's try, status 0 when a reply came back within DEADLINE seconds. */
const dfsureFunction = (deadlineSeconds: number) =>
  `dfsure() { ping -n -q -M do -s "$2" -c ${DF_CONFIRM.count} -i ${DF_CONFIRM.intervalSeconds} -w ${Number(deadlineSeconds)} "$1" >/dev/null 2>&1; }`;

/**
 * The per-peer branch's job, a shell function run once per peer in the background (`mc_peer IP &`): the ping, then
 * (when asked) the path-MTU probe, its output gathered in a variable and written with a single printf so that jobs
 * finishing together cannot interleave their lines.
 * The MTU probe tries the expected payload with DF set at the same time as the ping (one probe, no extra time in
 * the healthy case); when that failed (perhaps only because the session was still being set up, or the peer was
 * held up) and the peer answered the ping, it tries it once more, waiting as long as the ping does (DF_CONFIRM), and
 * only when that fails too does it binary-search the largest payload that passes with DF set (`ping -M do`).
 * Issue 10: written once, not once per peer (250 peers: 227 kB of script per node and round, 6 kB now). Its processes
 * per peer: the job, the ping's command substitution (which execs ping) and, with the MTU probe, the DF ping beside it
 * (a background simple command: it execs ping); no other fork in a healthy round (a `( )` body, a `$(printf ...)` and
 * the DF ping as a background `dfok` call were three more, ~0.3 ms of a node's CPU each; measured with strace).
 */
function perPeerFunction(params: PingParams): string {
  const ping = `ping -n -q -c ${Number(params.count)} -i ${Number(params.intervalSeconds)} -w ${Number(params.deadlineSeconds)} "$ip" 2>&1`;
  let mtuPart: string;
  if (params.mtu !== undefined) {
    const expected = Number(params.mtu) - 28;
    mtuPart = [
      `tries=''`,
      // a peer that answered nothing at all has no path MTU to find
      `case "$r" in *' 0 received'*|'') wait $df; largest=-1; tries=skipped ;; *)`,
      // the DF probe that ran beside the ping, else once more now that the ping has set up the session, waited for
      // as long as the ping (DF_CONFIRM); both tries in `tries`
      `if wait $df; then largest=${expected}; tries="${expected}:ok"`,
      `elif dfsure "$ip" ${expected}; then largest=${expected}; tries="${expected}:fail ${expected}:ok"; else`,
      `  tries="${expected}:fail ${expected}:fail"; lo=0; hi=${expected}`,
      `  while [ $((hi - lo)) -gt 1 ]; do mid=$(((lo + hi) / 2)); if dfok "$ip" $mid; then lo=$mid; tries="$tries $mid:ok"; else hi=$mid; tries="$tries $mid:fail"; fi; done`,
      `  largest=$lo; if [ $lo -eq 0 ] && ! dfok "$ip" 0; then largest=-1; fi`,
      `fi ;; esac`,
      // the ping's end and the MTU section's start appended by the shell itself (no `$(printf ...)` subshell)
      `out="$out\n${END}ping:$ip rc=$rc\n${BEGIN}mtu:$ip\nexpected=${expected} largest=$largest tries=$tries"`,
      `printf '%s\\n${END}mtu:%s rc=0\\n' "$out" "$ip"`,
    ].join('\n');
  } else {
    mtuPart = `printf '%s\\n${END}ping:%s rc=%s\\n' "$out" "$ip" "$rc"`;
  }
  // with MTU: the expected payload's DF probe runs beside the ping (a healthy pair then costs no extra time)
  // (dfok's ping itself, not the function: a background function call forks once more before its ping)
  const dfBeside = params.mtu !== undefined ? [`${dfPing('"$ip"', String(Number(params.mtu) - 28))} & df=$!`] : [];
  // a `{ }` body, not `( )`: each call is a background job (`mc_peer IP &`), a subshell already, and dash forks again
  // for a `( )` body (issue 10: one fork per peer and round fewer; test/unit/ping-script-forks.test.ts)
  return [`mc_peer() { ip=$1`, `out="${BEGIN}ping:$ip"`, ...dfBeside, `r=$(${ping}); rc=$?`, `out="$out\n$r"`, mtuPart, `}`].join('\n');
}

/**
 * The ping round's script: every peer probed at once, by one fping where installed, else by one background job per
 * peer (perPeerFunction). The peers are the positional parameters (`set -- IP...`), so each address is written once
 * (issue 10: the script was N^2 text over a round of N nodes).
 */
export function pingScript(params: PingParams): string {
  const after = (params.after ?? []).map((a) => sectionScript(a.name, a.command));
  const perPeer = [perPeerFunction(params), 'for mc_ip in "$@"; do mc_peer "$mc_ip" & done', 'wait'].join('\n');
  // fping where installed: one process probes every peer at once (N-1 ping processes per node otherwise)
  const probes = [
    `set -- ${params.targets.map((t) => shellQuote(t.ip)).join(' ')}`,
    ...(params.mtu !== undefined ? [DFOK_FUNCTION, dfsureFunction(params.deadlineSeconds)] : []),
    `if command -v fping >/dev/null 2>&1; then\n${fpingScript(params)}\nelse\n${perPeer}\nfi`,
  ].join('\n');
  // beside: the probes in the background, the sections in the foreground (their output held until the probes end)
  const body = params.beside
    ? `{\n${probes}\n} & mc_probes=$!\nmc_beside=$(\n${params.beside.script}\n)\nwait $mc_probes\nprintf '%s\\n' "$mc_beside"`
    : probes;
  return [PATH_PRELUDE, body, ...after, sectionScript('done', 'true')].join('\n');
}

/**
 * Turns `fping -q -c` summaries (`IP : xmt/rcv/%loss = 3/3/0%, min/avg/max = 0.04/0.05/0.07`, fping 4 and 5) into
 * the sections the per-peer script prints: a ping:IP section in iputils' words (parsePingSummary reads both), rc 0
 * only when every echo request was answered (as `ping -c N -w D`). Lines that are not summaries are skipped.
 */
export const FPING_TO_SECTIONS_AWK = `$2 == ":" && index($0, "xmt/rcv") { split($0, a, "= "); split(a[2], s, "[/%]"); x = s[1] + 0; r = s[2] + 0; l = s[3] + 0
  printf "${BEGIN}ping:%s\\n--- %s ping statistics ---\\n%d packets transmitted, %d received, %d%% packet loss\\n", $1, $1, x, r, l
  if (a[3] != "") { split(a[3], t, "/"); printf "rtt min/avg/max/mdev = %s/%s/%s/0.000 ms\\n", t[1], t[2], t[3] + 0 }
  printf "\\n${END}ping:%s rc=%d\\n", $1, (r == x && x > 0) ? 0 : 1 }`;

/**
 * The fping branch of pingScript: one fping for all peers (-i 1: 1 ms between any two requests, -p the interval per
 * peer, -t the deadline as each request's timeout: a request queued behind a retried handshake is still answered).
 * Path MTU: one more fping with DF set at the expected size, beside the first (a healthy mesh costs no extra time);
 * a peer that answered the ping but failed it is tried once more (DF_CONFIRM: as patient as the ping), then gets
 * the per-peer binary search of the ping branch (rare).
 */
function fpingScript(params: PingParams): string {
  // the peers are the positional parameters (pingScript)
  const ips = '"$@"';
  const intervalMs = Math.max(1, Math.round(Number(params.intervalSeconds) * 1000));
  const fping = `fping -q -c ${Number(params.count)} -p ${intervalMs} -i 1 -t ${Number(params.deadlineSeconds) * 1000} ${ips} 2>&1`;
  const toSections = `printf '%s\\n' "$fp" | awk '${FPING_TO_SECTIONS_AWK}'`;
  if (params.mtu === undefined) return [`fp=$(${fping})`, toSections].join('\n');
  const expected = Number(params.mtu) - 28;
  // peers whose summary shows replies, each followed by a space (" a b ")
  const replied = `awk '$2 == ":" { split($0, a, "= "); split(a[2], s, "/"); if (s[2] > 0) printf "%s ", $1 }'`;
  return [
    // the DF fping at the expected size runs beside the ping; each line is tagged and written on its own (awk
    // flushes per line, far below PIPE_BUF), so the two cannot interleave within a line
    `both=$( { ${fping} | awk '{ print "P " $0; fflush() }' & fping -q -M -b ${expected} -c ${DF_PROBE.count} -p ${Math.round(DF_PROBE.intervalSeconds * 1000)} -i 1 -t ${Math.round(DF_PROBE.waitSeconds * 1000)} ${ips} 2>&1 | awk '{ print "D " $0; fflush() }'; wait; } )`,
    `fp=$(printf '%s\\n' "$both" | sed -n 's/^P //p')`,
    toSections,
    // peers that answered, and those that passed the DF probe
    `answered=" $(printf '%s\\n' "$fp" | ${replied})"`,
    `passed=" $(printf '%s\\n' "$both" | sed -n 's/^D //p' | ${replied})"`,
    `for ip in ${ips}; do`,
    `  case "$answered" in *" $ip "*) ;; *) printf '${BEGIN}mtu:%s\\nexpected=${expected} largest=-1 tries=skipped\\n${END}mtu:%s rc=0\\n' "$ip" "$ip"; continue ;; esac`,
    `  case "$passed" in *" $ip "*) printf '${BEGIN}mtu:%s\\nexpected=${expected} largest=${expected} tries=${expected}:ok\\n${END}mtu:%s rc=0\\n' "$ip" "$ip"; continue ;; esac`,
    // failed beside the ping (perhaps only while the session was being set up, or the peer was held up): once more,
    // waited for as long as the ping (DF_CONFIRM), then the search
    `  ( if dfsure "$ip" ${expected}; then printf '${BEGIN}mtu:%s\\nexpected=${expected} largest=${expected} tries=${expected}:fail ${expected}:ok\\n${END}mtu:%s rc=0\\n' "$ip" "$ip"; exit 0; fi`,
    `    tries="${expected}:fail ${expected}:fail"; lo=0; hi=${expected}`,
    `    while [ $((hi - lo)) -gt 1 ]; do mid=$(((lo + hi) / 2)); if dfok "$ip" $mid; then lo=$mid; tries="$tries $mid:ok"; else hi=$mid; tries="$tries $mid:fail"; fi; done`,
    `    largest=$lo; if [ $lo -eq 0 ] && ! dfok "$ip" 0; then largest=-1; fi`,
    `    printf '${BEGIN}mtu:%s\\nexpected=${expected} largest=%s tries=%s\\n${END}mtu:%s rc=0\\n' "$ip" "$largest" "$tries" "$ip" ) &`,
    'done',
    'wait',
  ].join('\n');
}

export interface NodePingResults {
  /** by target overlay IP */
  ping: Map<string, PingResult>;
  mtu: Map<string, PathMtuResult>;
  after: Map<string, Section>;
  /** the sections of PingParams.beside that came back (parsePingOutput always sets it) */
  beside?: Map<string, Section>;
  complete: boolean;
}

export function parsePathMtu(body: string): PathMtuResult | undefined {
  const m = /expected=(\d+) largest=(-?\d+) tries=(.*)$/m.exec(body);
  if (!m) return undefined;
  const expected = Number(m[1]);
  const largest = Math.max(0, Number(m[2]));
  const tries = m[3]!
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .filter((t) => t.includes(':'))
    .map((t) => {
      const [size, verdict] = t.split(':');
      return { size: Number(size), ok: verdict === 'ok' };
    });
  const skipped = m[3]!.trim() === 'skipped';
  return { expected, largest: Number(m[2]) < 0 ? 0 : largest, ok: largest >= expected, tries, ...(skipped ? { skipped } : {}) };
}

/** Reads the ping script's stdout (pingScript): every target's ping and path MTU, the `after` and `beside` sections. */
export function parsePingOutput(stdout: string, params: PingParams): NodePingResults {
  const reader = new PingOutputReader(params);
  for (const section of splitSections(stdout).values()) reader.add(section);
  return reader.results();
}

/**
 * parsePingOutput section by section, as the output arrives (../facts/sections.ts SectionStream; issue 10: a node's
 * ping output is ~0.3 MB at 1,000 nodes, ~2,000 sections, held whole and cut at once, every node's): each `ping:IP` and
 * `mtu:IP` section of a target is parsed as it is added and only its parse kept (a path MTU once per distinct body:
 * a node's peers mostly answer alike, `expected=1392 largest=1392 tries=1392:ok`; nothing writes to a parsed
 * result), the `after` and `beside` sections kept as they are. A name given twice takes its last section, as
 * splitSections' Map does. `results()` gives what parsePingOutput gives for the same sections.
 * Equal ping results are one frozen object (across the round's nodes with `shared`, one per round: ./ping-matrix.ts;
 * the matrix shares its cells the same way): a round's outputs arrive interleaved over SSH, and a result object per
 * pair (~200 bytes with its RTTs) held until each node's output ended was more than the text it was read from.
 */
export type PingResultTable = Map<string, PingResult>;

/**
 * What a round's readers share (one per round, ./ping-matrix.ts): `results`, equal ping results as one frozen object;
 * `ips`, every target's address as the round's targets write it, so that no result is kept under a key cut from the
 * output (a string cut from a longer one keeps it alive in V8: each node's whole output, until it ends).
 */
export interface PingReaderShared {
  results: PingResultTable;
  /** each target's address by its text, and its position in the round (a reader keeps its results by position) */
  ips: ReadonlyMap<string, { ip: string; at: number }>;
}

/** The round's shared tables for PingOutputReader, from all of its targets. */
export const pingReaderShared = (targets: readonly PingTarget[]): PingReaderShared => {
  const ips = new Map<string, { ip: string; at: number }>();
  for (const t of targets) if (!ips.has(t.ip)) ips.set(t.ip, { ip: t.ip, at: ips.size });
  return { results: new Map(), ips };
};

/** `r` as the one frozen object of its content in `table`. */
function sharedPingResult(r: PingResult, table: PingResultTable): PingResult {
  const t = r.rttMs;
  const key = `${r.transmitted} ${r.received} ${r.loss} ${t ? `${t.min}/${t.avg}/${t.max}` : '-'} ${r.errors ?? '-'} ${r.rc ?? '-'} ${r.error ?? ''}`;
  const known = table.get(key);
  if (known) return known;
  if (t) Object.freeze(t);
  table.set(key, Object.freeze(r));
  return r;
}

export class PingOutputReader {
  private readonly shared: PingReaderShared;
  /**
   * the results so far by the target's position in the round (PingReaderShared.ips): a slot each, not a Map entry
   * (issue 10: every node's reader is under way at once in a round, two Maps of N-1 entries each were ~56 kB a node)
   */
  private readonly ping: Array<PingResult | undefined>;
  private readonly mtu: Array<PathMtuResult | undefined>;
  private readonly mtuByBody = new Map<string, PathMtuResult | undefined>();
  private readonly kept = new Map<string, Section>();
  private readonly keep: Set<string>;
  private done = false;

  constructor(
    private readonly params: PingParams,
    shared?: PingReaderShared,
  ) {
    this.shared = shared ?? pingReaderShared(params.targets);
    this.ping = new Array<PingResult | undefined>(this.shared.ips.size);
    this.mtu = new Array<PathMtuResult | undefined>(this.shared.ips.size);
    this.keep = new Set([...(params.after ?? []).map((a) => a.name), ...(params.beside?.sections ?? [])]);
  }

  /** One section of the output, in output order. */
  add(section: Section): void {
    const { name } = section;
    if (name.startsWith('ping:')) {
      // results() reads only this node's targets: another address of the round is kept here and never read
      const target = this.shared.ips.get(name.slice(5));
      if (target === undefined) return;
      this.ping[target.at] = sharedPingResult(parsePingSummary(section.body, section.rc), this.shared.results);
    } else if (name.startsWith('mtu:')) {
      const target = this.shared.ips.get(name.slice(4));
      if (target === undefined) return;
      let parsed = this.mtuByBody.get(section.body);
      if (parsed === undefined && !this.mtuByBody.has(section.body)) {
        parsed = parsePathMtu(section.body);
        this.mtuByBody.set(ownText(section.body), parsed);
      }
      this.mtu[target.at] = parsed;
    }
    if (name === 'done') this.done = true;
    if (this.keep.has(name)) {
      const own = ownSection(section);
      this.kept.set(own.name, own);
    }
  }

  /** The results of the sections added so far, in target order (a target without a ping section: not reported). */
  results(): NodePingResults {
    const ping = new Map<string, PingResult>();
    const mtu = new Map<string, PathMtuResult>();
    for (const target of this.params.targets) {
      const at = this.shared.ips.get(target.ip)?.at;
      ping.set(
        target.ip,
        (at === undefined ? undefined : this.ping[at]) ?? {
          transmitted: 0,
          received: 0,
          loss: 100,
          error: 'ping did not report (script cut short)',
        },
      );
      const parsed = at === undefined ? undefined : this.mtu[at];
      if (parsed) mtu.set(target.ip, parsed);
    }
    const after = new Map<string, Section>();
    for (const a of this.params.after ?? []) {
      const section = this.kept.get(a.name);
      if (section) after.set(a.name, section);
    }
    const beside = new Map<string, Section>();
    for (const name of this.params.beside?.sections ?? []) {
      const section = this.kept.get(name);
      if (section) beside.set(name, section);
    }
    return { ping, mtu, after, beside, complete: this.done };
  }
}

export const pingProbe = (params: PingParams): Probe<NodePingResults> & { reader(shared?: PingReaderShared): PingOutputReader } => ({
  script: pingScript(params),
  parse: (stdout) => parsePingOutput(stdout, params),
  reader: (shared) => new PingOutputReader(params, shared),
});
