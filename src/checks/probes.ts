/**
 * Read-only remote probes of `verify` and `debug`. Each probe is defined once, as a script and a parser of its
 * stdout (pyinfra style), so the command a node runs and the way its output is read cannot drift apart. Parsers are
 * pure and tested with fixtures captured from the real tools (test/fixtures/probes/).
 *
 * Few round trips: a probe that needs many commands runs them in ONE script whose output is cut into sections by
 * marker lines (`@@meshctl begin NAME` ... `@@meshctl end NAME rc=N`), each with the exit status of its command.
 *
 * Private keys never leave a node:
 * - `wg show IFACE dump` is read from its second line on (the first one is the interface line with the private key),
 *   and its preshared-key column is replaced on the node by "(none)" or "(hidden)";
 * - the wg-quick file is filtered on the node: every line mentioning PrivateKey or PresharedKey is dropped;
 * - `wg show IFACE private-key`, `wg showconf` and reading the .key file are never used.
 * The parsers apply the same filters again, as a second belt.
 */
import { shellQuote } from '../transport/types.js';
import { parseWgDumpPeers, type LivePeer } from '../render/wgdump.js';
import { parseWgQuickConfig, type ParsedWgQuickConfig } from '../render/wgquick.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';

export interface Probe<T> {
  /** a POSIX sh script; read-only on the node */
  script: string;
  parse(stdout: string): T;
}

// ---------------------------------------------------------------------------------------------------------------
// Sections

export interface Section {
  name: string;
  /** stdout and stderr of the section's command, trailing white space removed */
  body: string;
  /** exit status of the command; undefined when the end marker never came (script cut short) */
  rc?: number;
}

const BEGIN = '@@meshctl begin ';
const END = '@@meshctl end ';

/** One section of a combined script. `name` must be a plain token (letters, digits, . : - _). */
export function sectionScript(name: string, command: string): string {
  if (!/^[\w.:-]+$/.test(name)) throw new Error(`bad section name ${name}`);
  // The leading newline of the end marker guards against commands whose output does not end with one.
  return `echo '${BEGIN}${name}'\n{ ${command}\n} 2>&1\nprintf '\\n${END}${name} rc=%s\\n' "$?"`;
}

export function splitSections(stdout: string): Map<string, Section> {
  const sections = new Map<string, Section>();
  let current: { name: string; lines: string[] } | undefined;
  const close = (rc?: number) => {
    if (!current) return;
    sections.set(current.name, { name: current.name, body: current.lines.join('\n').trimEnd(), ...(rc !== undefined ? { rc } : {}) });
    current = undefined;
  };
  for (const line of stdout.split(/\r?\n/)) {
    if (line.startsWith(BEGIN)) {
      close();
      current = { name: line.slice(BEGIN.length).trim(), lines: [] };
      continue;
    }
    const end = line.startsWith(END) ? /^(\S+) rc=(\d+)$/.exec(line.slice(END.length).trim()) : null;
    if (end && current && end[1] === current.name) {
      close(Number(end[2]));
      continue;
    }
    current?.lines.push(line);
  }
  close();
  return sections;
}

/** Every probe starts with it: a known locale and a PATH that has the sbin tools, whatever the login shell set. */
export const PATH_PRELUDE = 'export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

// ---------------------------------------------------------------------------------------------------------------
// Secret filters (the scripts' building blocks; the only way verify/debug read WireGuard state)

/** Peer lines of the dump, preshared key masked on the node. Never the first (interface) line. */
export const peerDumpCommand = (iface: string) =>
  `wg show ${shellQuote(iface)} dump | tail -n +2 | awk 'BEGIN { FS = OFS = "\\t" } { if ($2 != "(none)") $2 = "(hidden)"; print }'`;

/** The wg-quick file without any line that could hold a private or preshared key. */
export const filteredConfigCommand = (path: string) => `grep -Evi 'privatekey|presharedkey' ${shellQuote(path)}`;

/** Drops, on our side too, any line that mentions a private or preshared key. */
export function dropSecretLines(text: string): string {
  return text
    .split('\n')
    .filter((line) => !/private-?key|preshared-?key/i.test(line) || /^\s*PostUp\s*=\s*wg set \S+ private-key \S+\s*$/i.test(line))
    .join('\n');
}

// ---------------------------------------------------------------------------------------------------------------
// Small parsers for single command outputs

export interface IfaceAddr {
  exists: boolean;
  up: boolean;
  operstate?: string;
  flags: string[];
  mtu?: number;
  ifindex?: number;
  /** IPv4 addresses with prefix, e.g. 172.27.15.12/32 */
  addresses: string[];
  /** the tool's message when the interface is missing */
  error?: string;
}

/** `ip -j addr show dev IFACE` (it carries the link's flags, MTU and state too). */
export function parseIpAddr(section: Section | undefined): IfaceAddr {
  const body = section?.body ?? '';
  const missing = (error: string): IfaceAddr => ({ exists: false, up: false, flags: [], addresses: [], error });
  if (!section) return missing('not probed');
  let data: unknown;
  try {
    data = JSON.parse(body.slice(Math.max(0, body.indexOf('['))));
  } catch {
    return missing(body.split('\n')[0] || `ip exited ${section.rc}`);
  }
  const entry = Array.isArray(data) ? (data[0] as Record<string, unknown> | undefined) : undefined;
  if (!entry) return missing(body || 'no such interface');
  const flags = Array.isArray(entry.flags) ? (entry.flags as string[]) : [];
  const addrInfo = Array.isArray(entry.addr_info) ? (entry.addr_info as Array<Record<string, unknown>>) : [];
  return {
    exists: true,
    up: flags.includes('UP'),
    ...(typeof entry.operstate === 'string' ? { operstate: entry.operstate } : {}),
    flags,
    ...(typeof entry.mtu === 'number' ? { mtu: entry.mtu } : {}),
    ...(typeof entry.ifindex === 'number' ? { ifindex: entry.ifindex } : {}),
    addresses: addrInfo.filter((a) => a.family === 'inet').map((a) => `${String(a.local)}/${String(a.prefixlen)}`),
  };
}

export interface RouteLookup {
  dst: string;
  /** device the kernel would send to dst through; undefined when there is no route */
  dev?: string;
  gateway?: string;
  prefsrc?: string;
  error?: string;
}

/** `ip -j route get DST` */
export function parseRouteGet(dst: string, section: Section | undefined): RouteLookup {
  const body = section?.body ?? '';
  try {
    const data = JSON.parse(body.slice(Math.max(0, body.indexOf('[')))) as Array<Record<string, unknown>>;
    const entry = data[0];
    if (!entry) return { dst, error: 'no route' };
    return {
      dst,
      ...(typeof entry.dev === 'string' ? { dev: entry.dev } : {}),
      ...(typeof entry.gateway === 'string' ? { gateway: entry.gateway } : {}),
      ...(typeof entry.prefsrc === 'string' ? { prefsrc: entry.prefsrc } : {}),
      ...(entry.type === 'unreachable' || entry.type === 'blackhole' || entry.type === 'prohibit' ? { error: String(entry.type) } : {}),
    };
  } catch {
    return { dst, error: body.split('\n').pop() || (section ? `ip exited ${section.rc}` : 'not probed') };
  }
}

export interface UdpListener {
  /** local address:port as ss prints it */
  local: string;
  port: number;
  /** process names from users:(("name",pid=..)) ; empty for the kernel module (no process) */
  processes: string[];
  line: string;
}

/** `ss -Hulnp 'sport = :PORT'` (headerless). */
export function parseSsUdp(text: string): UdpListener[] {
  const listeners: UdpListener[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 5 || !/^(UNCONN|ESTAB)$/.test(fields[0]!)) continue;
    const local = fields[3]!;
    const port = Number(/:(\d+)$/.exec(local)?.[1]);
    if (!Number.isInteger(port)) continue;
    const processes = [...line.matchAll(/\("([^"]+)",pid=/g)].map((m) => m[1]!);
    listeners.push({ local, port, processes, line: line.trim() });
  }
  return listeners;
}

export interface RpFilter {
  all?: number;
  default?: number;
  /** the WireGuard interface's own value; absent when the interface does not exist */
  iface?: number;
  /** the kernel uses max(all, iface) for packets arriving on the interface */
  effective?: number;
}

/** Lines "all 2", "default 2", "wg0 2" ("-" when unreadable). */
export function parseRpFilter(text: string, iface: string): RpFilter {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) values.set(key, Number(value));
  }
  const all = values.get('all');
  const own = values.get(iface);
  const result: RpFilter = {
    ...(all !== undefined ? { all } : {}),
    ...(values.has('default') ? { default: values.get('default')! } : {}),
    ...(own !== undefined ? { iface: own } : {}),
  };
  if (all !== undefined || own !== undefined) result.effective = Math.max(all ?? 0, own ?? 0);
  return result;
}

export interface ServiceState {
  systemd: boolean;
  /** systemctl is-active: active, inactive, failed, activating ... */
  active?: string;
  enabled?: string;
}

export function parseService(text: string): ServiceState {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  if (lines[0] === 'no-systemd') return { systemd: false };
  return { systemd: true, ...(lines[0] ? { active: lines[0] } : {}), ...(lines[1] ? { enabled: lines[1] } : {}) };
}

// ---------------------------------------------------------------------------------------------------------------
// The verify checklist: one script per node

export interface ChecklistParams {
  interface: string;
  listenPort: number;
  /** overlay IPs of the node's peers: one `ip route get` each */
  peerIps: string[];
  /** add the firewall rules (debug) */
  firewall?: boolean;
}

export interface NodeChecklist {
  /** the node's clock, Unix seconds (handshake ages are computed against it, not against ours) */
  now?: number;
  iface: IfaceAddr;
  listeners: UdpListener[];
  /** `wg show IFACE public-key` */
  livePublicKey?: string;
  /** /etc/wireguard/IFACE.pub */
  filePublicKey?: string;
  liveListenPort?: number;
  /** `wg show` could talk to the interface */
  wgAvailable: boolean;
  wgError?: string;
  peers: LivePeer[];
  /** wg0.conf on disk, secret lines removed; undefined when the file does not exist */
  configText?: string;
  config?: ParsedWgQuickConfig;
  routes: RouteLookup[];
  rpFilter: RpFilter;
  service: ServiceState;
  /** firewall rules (iptables-save / nft), when asked for */
  firewall?: string[];
  /** sections whose output could not be read */
  problems: string[];
}

export function checklistScript(params: ChecklistParams): string {
  const i = shellQuote(params.interface);
  const conf = `/etc/wireguard/${params.interface}.conf`;
  const pub = `/etc/wireguard/${params.interface}.pub`;
  const parts = [
    PATH_PRELUDE,
    sectionScript('now', 'date +%s'),
    sectionScript('addr', `ip -j addr show dev ${i}`),
    sectionScript('listen', `ss -Hulnp 'sport = :${Number(params.listenPort)}'`),
    sectionScript('pubkey', `wg show ${i} public-key`),
    sectionScript('pubfile', `cat ${shellQuote(pub)}`),
    sectionScript('port', `wg show ${i} listen-port`),
    sectionScript('dump', peerDumpCommand(params.interface)),
    sectionScript('conf', `if [ -e ${shellQuote(conf)} ]; then echo present; ${filteredConfigCommand(conf)}; true; else echo absent; fi`),
    ...params.peerIps.map((ip) => sectionScript(`route:${ip}`, `ip -j route get ${shellQuote(ip)}`)),
    sectionScript(
      'rpfilter',
      `for k in all default ${i}; do printf '%s %s\\n' "$k" "$(cat /proc/sys/net/ipv4/conf/$k/rp_filter 2>/dev/null || echo -)"; done`,
    ),
    sectionScript(
      'service',
      `if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then systemctl is-active ${shellQuote(`wg-quick@${params.interface}`)}; systemctl is-enabled ${shellQuote(`wg-quick@${params.interface}`)}; else echo no-systemd; fi`,
    ),
  ];
  if (params.firewall) parts.push(sectionScript('firewall', '{ iptables-save -c 2>/dev/null || nft list ruleset 2>/dev/null; }'));
  parts.push(sectionScript('done', 'true'));
  return parts.join('\n');
}

export function parseChecklist(stdout: string, params: ChecklistParams): NodeChecklist {
  const s = splitSections(stdout);
  const problems: string[] = [];
  if (!s.has('done')) problems.push('the checklist script did not run to its end');
  const body = (name: string) => s.get(name)?.body ?? '';
  const ok = (name: string) => s.get(name)?.rc === 0;

  const now = /^\d+$/.test(body('now')) ? Number(body('now')) : undefined;
  const livePublicKey = ok('pubkey') && looksLikeWireGuardKey(body('pubkey')) ? body('pubkey') : undefined;
  const filePublicKey = ok('pubfile') && looksLikeWireGuardKey(body('pubfile').trim()) ? body('pubfile').trim() : undefined;
  const liveListenPort = ok('port') && /^\d+$/.test(body('port')) ? Number(body('port')) : undefined;
  const wgAvailable = ok('port');

  const dump = parseWgDumpPeers(body('dump'));
  // the dump's own error lines ("Unable to access interface") are not peer lines: only report them when wg works
  if (wgAvailable) for (const p of dump.problems) problems.push(`wg dump line ${p.line}: ${p.reason}`);

  const confLines = body('conf').split('\n');
  let configText: string | undefined;
  let config: ParsedWgQuickConfig | undefined;
  if (confLines[0] === 'present') {
    configText = dropSecretLines(confLines.slice(1).join('\n'));
    config = parseWgQuickConfig(configText);
  }

  const firewall = s.has('firewall') ? dropSecretLines(body('firewall')).split('\n').filter(Boolean) : undefined;

  return {
    ...(now !== undefined ? { now } : {}),
    iface: parseIpAddr(s.get('addr')),
    listeners: parseSsUdp(body('listen')),
    ...(livePublicKey ? { livePublicKey } : {}),
    ...(filePublicKey ? { filePublicKey } : {}),
    ...(liveListenPort !== undefined ? { liveListenPort } : {}),
    wgAvailable,
    ...(!wgAvailable ? { wgError: body('port').split('\n')[0] || body('pubkey').split('\n')[0] || 'wg show failed' } : {}),
    peers: wgAvailable ? dump.peers : [],
    ...(configText !== undefined ? { configText } : {}),
    ...(config ? { config } : {}),
    routes: params.peerIps.map((ip) => parseRouteGet(ip, s.get(`route:${ip}`))),
    rpFilter: parseRpFilter(body('rpfilter'), params.interface),
    service: parseService(body('service')),
    ...(firewall ? { firewall } : {}),
    problems,
  };
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
  /** payload sizes tried, in order, and whether each passed */
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
  const errorLine = text
    .split('\n')
    .map((l) => l.trim())
    .find((l) => /^ping: /.test(l) || /^From \S+ .*(unreachable|Frag needed|too long)/i.test(l));
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
 * One background job per peer: the ping, then (when asked) the path-MTU probe, its output gathered in a variable
 * and written with a single printf so that jobs finishing together cannot interleave their lines.
 * The MTU probe tries the expected payload first (one probe in the healthy case); only when that fails does it
 * binary-search the largest payload that passes with DF set (`ping -M do`).
 */
export function pingScript(params: PingParams): string {
  const jobs = params.targets.map((target, index) => {
    const ip = shellQuote(target.ip);
    const name = `ping:${target.ip}`;
    const ping = `ping -n -q -c ${Number(params.count)} -i ${Number(params.intervalSeconds)} -w ${Number(params.deadlineSeconds)} ${ip} 2>&1`;
    let mtuPart = '';
    if (params.mtu !== undefined) {
      const expected = Number(params.mtu) - 28;
      // df SIZE: 0 when a DF probe of SIZE bytes of payload got an answer
      mtuPart = [
        `dfok() { ping -n -q -M do -s "$1" -c 2 -i 0.2 -W 1 ${ip} >/dev/null 2>&1; }`,
        `tries=''`,
        // a peer that answered nothing at all has no path MTU to find
        `case "$r" in *' 0 received'*|'') largest=-1; tries=skipped ;; *)`,
        `if dfok ${expected}; then largest=${expected}; tries="${expected}:ok"; else`,
        `  tries="${expected}:fail"; lo=0; hi=${expected}`,
        `  while [ $((hi - lo)) -gt 1 ]; do mid=$(((lo + hi) / 2)); if dfok $mid; then lo=$mid; tries="$tries $mid:ok"; else hi=$mid; tries="$tries $mid:fail"; fi; done`,
        `  largest=$lo; if [ $lo -eq 0 ] && ! dfok 0; then largest=-1; fi`,
        `fi ;; esac`,
        `out="$out$(printf '\\n@@meshctl end ${name} rc=%s\\n${BEGIN}mtu:${target.ip}\\nexpected=${expected} largest=%s tries=%s\\n' "$rc" "$largest" "$tries")"`,
        `printf '%s\\n${END}mtu:${target.ip} rc=0\\n' "$out"`,
      ].join('\n');
    } else {
      mtuPart = `printf '%s\\n${END}${name} rc=%s\\n' "$out" "$rc"`;
    }
    return [`( out="${BEGIN}${name}"`, `r=$(${ping}); rc=$?`, `out="$out\n$r"`, mtuPart, `) &`, `pid${index}=$!`].join('\n');
  });
  const after = (params.after ?? []).map((a) => sectionScript(a.name, a.command));
  return [PATH_PRELUDE, ...jobs, 'wait', ...after, sectionScript('done', 'true')].join('\n');
}

export interface NodePingResults {
  /** by target overlay IP */
  ping: Map<string, PingResult>;
  mtu: Map<string, PathMtuResult>;
  after: Map<string, Section>;
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

export function parsePingOutput(stdout: string, params: PingParams): NodePingResults {
  const s = splitSections(stdout);
  const ping = new Map<string, PingResult>();
  const mtu = new Map<string, PathMtuResult>();
  for (const target of params.targets) {
    const section = s.get(`ping:${target.ip}`);
    ping.set(
      target.ip,
      section
        ? parsePingSummary(section.body, section.rc)
        : { transmitted: 0, received: 0, loss: 100, error: 'ping did not report (script cut short)' },
    );
    const m = s.get(`mtu:${target.ip}`);
    const parsed = m ? parsePathMtu(m.body) : undefined;
    if (parsed) mtu.set(target.ip, parsed);
  }
  const after = new Map<string, Section>();
  for (const a of params.after ?? []) {
    const section = s.get(a.name);
    if (section) after.set(a.name, section);
  }
  return { ping, mtu, after, complete: s.has('done') };
}

export const pingProbe = (params: PingParams): Probe<NodePingResults> => ({
  script: pingScript(params),
  parse: (stdout) => parsePingOutput(stdout, params),
});
