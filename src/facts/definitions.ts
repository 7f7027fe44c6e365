/**
 * The facts layer: every fact about a node that `up`, `verify` and `debug` read is defined ONCE here, as a named
 * section of a probe script (the command) and a pure parser of that section. The probes of the three commands
 * (../facts/node-facts.ts, ../checks/probes.ts, ../debug/*) compose their scripts from these definitions with
 * `factsScript` and read them back with `readFact`, so the command a node runs and the way its output is read cannot
 * drift apart between commands.
 *
 * Output format: named sections (./sections.ts). A fact with several values prints one `key=value` line per value,
 * so an empty value is an empty value, never a shifted line.
 *
 * Private keys never leave a node:
 * - `wg show IFACE dump` is read from its second line on (the first one is the interface line with the private key),
 *   and its preshared-key column is replaced on the node by "(none)" or "(hidden)";
 * - the wg-quick file is filtered on the node (`SECRET_LINE_ERE`): PrivateKey/PresharedKey lines and any line naming a
 *   private or preshared key next to a key-shaped value are dropped; `dropSecretLines` applies the same filter again
 *   on our side;
 * - the key file is only ever fed to `wg pubkey` on the node, so only its public half is printed;
 * - `wg show IFACE private-key` and `wg showconf` are never used.
 */
import { isSecretSettingLine, redactSecretsSparingPublicKeyLines, SECRET_FILTER_AWK } from '../remote/redact.js';
import { raw, sh, shellQuote } from '../remote/shell.js';
import { fileModePaths, peerDumpCommand, reresolvePaths, wireguardPaths } from '../remote/wireguard.js';
import { SYSCTL_CONF, SYSCTL_DIRS, type SysctlFileSettings } from './sysctl-order.js';
import { parseWgDumpPeers, type LivePeer } from '../render/wgdump.js';
import { looksLikeWireGuardKey } from '../topology/desired.js';
import { keyValues, linesOf, PATH_PRELUDE, sectionScript, splitSections, type Section } from './sections.js';
import { FIREWALL_PART_MAX_BYTES, parseFirewallFacts, type FirewallFacts } from '../firewall/verdict.js';
import { DPKG_PACKAGES } from '../steps/install.js';

/** What every fact command is parameterised with: the WireGuard interface and the node's listen port. */
export interface FactContext {
  interface: string;
  listenPort: number;
}

/**
 * One named fact. `name` is the section the command's output lands in (a plain token, see sectionScript);
 * `command` is read-only POSIX sh whose every interpolated value went through ../remote/shell.ts; `parse` is pure
 * and gets `undefined` when the section is missing (script cut short).
 */
export interface FactDef<T> {
  name: string;
  command(ctx: FactContext): string;
  parse(section: Section | undefined, ctx: FactContext): T;
}

/** The script that gathers `defs` in one round trip, ending with an `end` section that proves it ran to its end. */
export function factsScript(defs: ReadonlyArray<FactDef<unknown>>, ctx: FactContext, endSection = 'end'): string {
  return [PATH_PRELUDE, ...defs.map((d) => sectionScript(d.name, d.command(ctx))), sectionScript(endSection, 'true')].join('\n');
}

/** Parses one fact out of the sections of a probe's stdout (from `splitSections`). */
export const readFact = <T>(def: FactDef<T>, sections: Map<string, Section>, ctx: FactContext): T => def.parse(sections.get(def.name), ctx);

export { splitSections };

const first = (section: Section | undefined): string | undefined => linesOf(section)[0];
const wgKeyOrUndefined = (section: Section | undefined) => {
  const body = section?.body.trim() ?? '';
  return looksLikeWireGuardKey(body) ? body : undefined;
};
const intOrUndefined = (text: string | undefined) => (text !== undefined && /^\d+$/.test(text) ? Number(text) : undefined);
const sha256OrUndefined = (text: string | undefined) => (text !== undefined && /^[0-9a-f]{64}$/.test(text) ? text : undefined);
const list = (name: string, command: string): FactDef<string[]> => ({ name, command: () => command, parse: (s) => linesOf(s) });

// ---------------------------------------------------------------------------------------------------------------
// Secret filters

/**
 * Lines that may carry a private or preshared key, as a grep -E pattern (run with -i): a PrivateKey/PresharedKey
 * setting (also commented out), or a line naming such a key next to a key-shaped value (a hand-written
 * `PostUp = wg set %i private-key <(echo KEY)`). The rendered file's comment about the key and its PostUp that
 * names the key FILE survive, so the text still equals what meshctl renders.
 */
export const SECRET_LINE_ERE =
  '^[[:space:]]*#?[[:space:]]*(privatekey|presharedkey)|(private|preshared)-?key.*[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=';
const SECRET_LINE = new RegExp(SECRET_LINE_ERE.replaceAll('[[:space:]]', '\\s'), 'i');

/** Drops, on our side too, any line that may hold a private or preshared key (SECRET_LINE_ERE). */
export function dropSecretLines(text: string): string {
  return text
    .split('\n')
    .filter((line) => !SECRET_LINE.test(line) && !isSecretSettingLine(line))
    .join('\n');
}

/**
 * What our side keeps of a node's wg-quick file: secret lines dropped (as on the node) and every other key-shaped
 * value redacted (../remote/redact.ts) except the values of `PublicKey =` lines, which the diff must show; those are
 * redacted again, against the mesh's known public keys, wherever the text is shown.
 */
export function filterConfigText(text: string): string {
  // one pass over the whole text, not one per line (issue 10: ../remote/redact.ts redactSecretsSparingPublicKeyLines)
  return redactSecretsSparingPublicKeyLines(dropSecretLines(text));
}

export { peerDumpCommand };

/**
 * The wg-quick file without any line that could hold a private or preshared key and with every other key-shaped value
 * redacted on the node (SECRET_FILTER_AWK in ../remote/redact.ts; `keyPath`, the node's private key file, lets it
 * redact that key even on a PublicKey line). The grep keeps the older filter as a second net.
 */
export const filteredConfigCommand = (path: string, keyPath = '') =>
  sh`grep -Evi ${SECRET_LINE_ERE} ${path} | awk -v keyfile=${keyPath} -v conf=${path} ${SECRET_FILTER_AWK}`.text;

// ---------------------------------------------------------------------------------------------------------------
// Parsers of single command outputs (pure; tested with real captures in test/fixtures)

export interface IfaceAddr {
  exists: boolean;
  up: boolean;
  operstate?: string;
  flags: string[];
  mtu?: number;
  ifindex?: number;
  /** IPv4 addresses with prefix, e.g. 172.27.15.12/32 */
  addresses: string[];
  /**
   * those of `addresses` set with a peer (`ip address add A peer B`, the WireGuard quick start's form; ip(8)): only
   * `ip address del A peer B` deletes one, so the enable step restarts rather than delete it live (RV5 F1)
   */
  pointToPoint: string[];
  /** the tool's message when the interface is missing */
  error?: string;
}

/** `ip -j addr show dev IFACE` (it carries the link's flags, MTU, ifindex and state too). */
export function parseIpAddr(section: Section | undefined): IfaceAddr {
  const body = section?.body ?? '';
  const missing = (error: string): IfaceAddr => ({ exists: false, up: false, flags: [], addresses: [], pointToPoint: [], error });
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
  const inet = addrInfo.filter((a) => a.family === 'inet');
  const spelled = (a: Record<string, unknown>) => `${String(a.local)}/${String(a.prefixlen)}`;
  return {
    exists: true,
    up: flags.includes('UP'),
    ...(typeof entry.operstate === 'string' ? { operstate: entry.operstate } : {}),
    flags,
    ...(typeof entry.mtu === 'number' ? { mtu: entry.mtu } : {}),
    ...(typeof entry.ifindex === 'number' ? { ifindex: entry.ifindex } : {}),
    addresses: inet.map(spelled),
    pointToPoint: inet.filter((a) => a.address !== undefined && a.address !== a.local).map(spelled),
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
  /** the kernel uses max(all, iface) for packets arriving on the interface (ip-sysctl.rst, rp_filter) */
  effective?: number;
}

/** Lines `all=2`, `default=2`, `iface=2` (empty when unreadable). */
export function parseRpFilter(text: string): RpFilter {
  const values = keyValues(text);
  const get = (key: string) => intOrUndefined(values.get(key));
  const all = get('all');
  const own = get('iface');
  const dflt = get('default');
  const result: RpFilter = {
    ...(all !== undefined ? { all } : {}),
    ...(dflt !== undefined ? { default: dflt } : {}),
    ...(own !== undefined ? { iface: own } : {}),
  };
  if (all !== undefined || own !== undefined) result.effective = Math.max(all ?? 0, own ?? 0);
  return result;
}

/**
 * Reads the `rpfiles` section: `PATH<TAB>` for each file, `PATH<TAB>LINE` for each rp_filter line in it. Keeps
 * net.ipv4.conf.{all,default,IFACE}.rp_filter (dots or slashes, a leading `-` ignored) with an integer value.
 */
export function parseRpFilterSysctlFiles(text: string, iface: string): SysctlFileSettings[] {
  const files = new Map<string, SysctlFileSettings>();
  const wanted = new Set(['all', 'default', iface].map((d) => `net.ipv4.conf.${d}.rp_filter`));
  for (const line of text.split('\n')) {
    const tab = line.indexOf('\t');
    if (tab <= 0) continue;
    const path = line.slice(0, tab);
    const entry = files.get(path) ?? { path, settings: [] };
    files.set(path, entry);
    const m = /^\s*-?([^=\s]+)\s*=\s*(\d+)\s*$/.exec(line.slice(tab + 1));
    if (!m) continue;
    // sysctl.d(5): a key with slashes is the same key with dots (interface names here have no dots)
    const key = m[1]!.replaceAll('/', '.');
    if (wanted.has(key)) entry.settings.push({ key, value: Number(m[2]) });
  }
  return [...files.values()];
}

export interface ServiceState {
  systemd: boolean;
  /** systemctl is-active: active, inactive, failed, activating ...; absent when it printed nothing */
  active?: string;
  /** systemctl is-enabled: enabled, disabled ...; absent when it printed nothing (no such unit file) */
  enabled?: string;
}

/** Lines `systemd=yes|no`, `enabled=...`, `active=...` (each printed even when its value is empty). */
export function parseService(text: string): ServiceState {
  const v = keyValues(text);
  if (v.get('systemd') !== 'yes') return { systemd: false };
  const active = v.get('active');
  const enabled = v.get('enabled');
  return { systemd: true, ...(active ? { active } : {}), ...(enabled ? { enabled } : {}) };
}

/** The re-resolve timer's files (sha256, absent when missing) and the timer's `is-enabled`/`is-active` ('' without). */
export interface ReresolveState {
  scriptSha256?: string;
  serviceSha256?: string;
  timerSha256?: string;
  enabled: string;
  active: string;
}

export function parseReresolve(text: string): ReresolveState {
  const v = keyValues(text);
  const sha = (key: string) => sha256OrUndefined(v.get(key));
  const optional = (key: string, value: string | undefined) => (value ? { [key]: value } : {});
  return {
    ...optional('scriptSha256', sha('script')),
    ...optional('serviceSha256', sha('service')),
    ...optional('timerSha256', sha('timer')),
    enabled: v.get('enabled') ?? '',
    active: v.get('active') ?? '',
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Firewall rules

const rangeHas = (line: string, port: number) =>
  [...line.matchAll(/--dports? (?:\S*,)?(\d+):(\d+)/g)].some((m) => Number(m[1]) <= port && port <= Number(m[2]));

/** iptables-save / nft rules that drop or reject incoming UDP to `port` (WireGuard's datagrams). */
export function udpDropRules(rules: string[] | undefined, port: number): string[] {
  return (rules ?? []).filter((line) => {
    const l = line.toLowerCase();
    if (!/(-j|\s)(drop|reject)\b/.test(l)) return false;
    const iptables =
      /-p udp/.test(l) &&
      (new RegExp(`--dports? (\\S*,)?${port}(,|\\s|$)`).test(l) || rangeHas(l, port)) &&
      !/-a (output|postrouting)\b/.test(l);
    const nft = new RegExp(`udp dport (\\{[^}]*\\b${port}\\b[^}]*\\}|${port})\\b`).test(l);
    return iptables || nft;
  });
}

/** Rules that drop or reject ICMP (or everything) on the WireGuard interface. */
export function icmpDropOnIfaceRules(rules: string[] | undefined, iface: string): string[] {
  const esc = iface.replace(/[^\w]/g, '\\$&');
  return (rules ?? []).filter((line) => {
    const l = line.toLowerCase();
    if (!/(-j|\s)(drop|reject)\b/.test(l)) return false;
    const onIface = new RegExp(`(-i|-o) ${esc}(\\s|$)|(iifname|oifname) "?${esc}"?`).test(l);
    const icmpOrAll = /-p icmp|\bicmp\b/.test(l) || !/-p |\b(udp|tcp)\b/.test(l);
    return onIface && icmpOrAll;
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The facts

/** Directories and units left by Kubernetes distributions and CNIs that break a clean mesh (runbook "pristine"). */
export const LEFTOVER_PATHS = [
  '/etc/cni',
  '/var/lib/cni',
  '/etc/rancher',
  '/var/lib/rancher',
  '/var/lib/calico',
  '/etc/calico',
  '/run/flannel',
];
export const LEFTOVER_UNIT_GLOBS = ['k3s*', 'rke2*', 'calico*', 'flannel*', 'cilium*', 'kubelet*'];

/** the firewall fact's filter, applied on the node (grep -Ei) and again here */
const DROP_OR_REJECT = /drop|reject/i;

/** Shell whose status is 0 on a node run by systemd with systemctl on PATH (sd_booted(3): /run/systemd/system exists). */
export const SYSTEMD = '[ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1';

// Issue 10: in the lab's containers every exec costs 15-20 ms of CPU (35-50 ms of wall time under load) and the four
// nodes' probes share two cores, so the probe reads /proc, /sys and small files with the shell's own `read` and
// trims command output with parameter expansion instead of `cat`, `cut`, `tail` or `tr` processes. `sh` is dash on
// Debian: no `$(<file)`, no arrays; these helpers are POSIX. Their variables start with `mc_` (sections share a shell).

/** Reads the first line of PATH into the shell variable VAR with `read` (VAR is empty when PATH is unreadable). */
const readFirstLine = (path: string, variable: string) =>
  sh`${raw(variable)}=; [ -r ${path} ] && IFS= read -r ${raw(variable)} < ${path}`.text;

/** Sets `mc_sha` to the sha256 of FILE (sha256sum's own "  -" cut by the shell); its status is sha256sum's. */
const sha256Of = (file: string) => sh`mc_sha=$(sha256sum < ${file}) && mc_sha=\${mc_sha%% *}`.text;

/** Prints the sha256 of FILE when it is a regular file, else nothing (status 0). */
const sha256IfFile = (file: string) => sh`[ -f ${file} ] && ${raw(sha256Of(file))} && echo "$mc_sha"; true`.text;

export interface OsRelease {
  id: string;
  versionId: string;
  idLike: string[];
  prettyName: string;
}

export interface ConfigMeta {
  exists: boolean;
  sha256?: string;
  /** lines setting a PrivateKey (meshctl's own file has none) */
  privateKeyLines: number;
  presharedKeyLines: number;
}

export interface KeyFile {
  exists: boolean;
  /** octal mode, e.g. "600" */
  mode?: string;
  /** `wg pubkey < KEY` run on the node */
  publicKey?: string;
}

/**
 * How much of the wg-quick file the facts probe sends (1 MiB; ~5000 peers of a rendered file): a node's file must
 * not make meshctl read without limit (a 66 MB wg0.conf took 1.2 GB in a dry run). Its sha256 is of the whole file.
 */
export const CONFIG_TEXT_MAX_BYTES = 1024 * 1024;
/** The line the probe adds after a cut wg-quick file. */
export const CONFIG_TEXT_CUT_NOTE = `# (meshctl: the file is larger than ${CONFIG_TEXT_MAX_BYTES} bytes; only its start was read)`;

export interface PublicKeyFileState {
  /** 'match': the .pub holds `wg pubkey < key`; 'unchecked': no key file or no wg to compare with */
  state: 'match' | 'mismatch' | 'missing' | 'unchecked';
  /** octal mode of the .pub, e.g. "644" */
  mode?: string;
}

/**
 * The owner and mode of one of meshctl's paths on a node (../remote/wireguard.ts fileModePaths), as
 * `stat -c WIREGUARD_FILE_STAT_FORMAT` (no -L: a symbolic link is described, not its target) printed it on the node.
 * Judged by ../checks/file-modes.ts (up's baseline check `wireguard-file-modes`, verify's `file-modes`).
 */
export interface WireGuardFileMode {
  /** the path as stat was given it, e.g. "/etc/wireguard/wg0.key" */
  path: string;
  /** stat's %F: "regular file", "regular empty file", "directory", "symbolic link", ... */
  type: string;
  /** the permission bits in octal as stat's %a prints them, e.g. "600", "2775" */
  mode: string;
  /** the owner's uid */
  uid: number;
  /** the owner's user name (%U; "UNKNOWN" for a uid without a passwd entry) */
  owner: string;
}

/** stat(1)'s format of FACTS.wireguardFiles: type, octal mode, uid, user name, path (last: the only free text). */
export const WIREGUARD_FILE_STAT_FORMAT = '%F|%a|%u|%U|%n';

/** Lines `TYPE|MODE|UID|USER|PATH` (WIREGUARD_FILE_STAT_FORMAT) into WireGuardFileModes; malformed lines are dropped. */
export function parseWireGuardFileModes(body: string | undefined): WireGuardFileMode[] {
  const out: WireGuardFileMode[] = [];
  for (const line of (body ?? '').split('\n')) {
    const [type, mode, uid, owner, ...rest] = line.split('|');
    const path = rest.join('|');
    if (!type || !mode || !/^[0-7]{1,4}$/.test(mode) || !uid || !/^\d+$/.test(uid) || owner === undefined || !path) continue;
    out.push({ path, type, mode, uid: Number(uid), owner });
  }
  return out;
}

/**
 * Compares IFACE.pub with `wg pubkey < IFACE.key` on the node. `print` 'cat' prints the file when it matches (and
 * a word otherwise), 'state' only the word: match, mismatch, missing or unchecked. `publicOfKey`: shell commands
 * that set `mc_kp` to `wg pubkey < IFACE.key` (up's lean probe reuses the keys section's answer: ./lean.ts); without
 * it the command derives it itself.
 */
export function publicKeyFileCommand(iface: string, print: 'cat' | 'state', publicOfKey?: string): string {
  const p = wireguardPaths(iface);
  const onMatch = print === 'cat' ? 'printf \'%s\\n\' "$mc_pub"' : 'echo match';
  // The .pub is read by the shell (was "$(cat)", one exec; issue 10) with the same meaning: its text with trailing
  // newlines dropped must equal the key, so a second non-empty line is a mismatch.
  const readPub =
    sh`mc_pub=; mc_n=0; while IFS= read -r mc_l || [ -n "$mc_l" ]; do mc_n=$((mc_n + 1)); [ $mc_n -eq 1 ] && mc_pub=$mc_l || { [ -n "$mc_l" ] && mc_pub="$mc_pub x"; }; done < ${p.publicKey}`
      .text;
  const compare =
    publicOfKey === undefined
      ? sh`[ "$(wg pubkey < ${p.privateKey} 2>/dev/null)" = "$mc_pub" ]`.text
      : `${publicOfKey}; [ "$mc_kp" = "$mc_pub" ]`;
  return sh`if [ ! -e ${p.publicKey} ]; then echo missing; elif [ ! -s ${p.privateKey} ] || ! command -v wg >/dev/null 2>&1; then echo unchecked; elif ${raw(readPub)}; ${raw(compare)}; then ${raw(onMatch)}; else echo mismatch; fi`
    .text;
}

/**
 * dpkg's state of packages (FACTS.dpkgStatus): package name -> its Status-Abbrev without the trailing blank, e.g.
 * `ii` (installed), `iF` (half-configured), `iU` (unpacked), `iHR` (half-installed, reinstall required), `un`/`rc`
 * (not installed). Letters as dpkg-query(1) documents them: desired action, package status, error flag.
 */
export type DpkgStatus = Record<string, string>;

/** Reads `PACKAGE ABBREV` lines (FACTS.dpkgStatus); a line of another shape is dropped. */
export function parseDpkgStatus(lines: readonly string[]): DpkgStatus {
  const status: DpkgStatus = {};
  for (const line of lines) {
    const m = /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9-]+)? ([uihrp][ncHUFWti]R?) ?$/.exec(line);
    if (m) status[m[1]!] = m[2]!;
  }
  return Object.fromEntries(Object.entries(status).sort(([a], [b]) => a.localeCompare(b)));
}

/** The fact definitions, by name. Section names are part of the fixtures' format (test/fixtures/facts, probes). */
export const FACTS = {
  /** the node's clock, Unix seconds (handshake ages are judged against it, not against ours) */
  now: { name: 'now', command: () => 'date +%s', parse: (s) => intOrUndefined(first(s)) } as FactDef<number | undefined>,
  /** the effective uid (the second `Uid:` field of /proc/self/status, read by the shell; `id -u` without /proc) */
  uid: {
    name: 'uid',
    command: () =>
      'mc_u=; [ -r /proc/self/status ] && while read -r mc_k mc_r mc_e mc_x; do [ "$mc_k" = Uid: ] && mc_u=$mc_e && break; done < /proc/self/status; if [ -n "$mc_u" ]; then echo "$mc_u"; else id -u; fi',
    parse: (s) => intOrUndefined(first(s)) ?? Number.NaN,
  } as FactDef<number>,
  /** the UTS name `hostname` prints, read by the shell from /proc (`hostname` without it) */
  hostname: {
    name: 'hostname',
    command: () => `${readFirstLine('/proc/sys/kernel/hostname', 'mc_h')}; if [ -n "$mc_h" ]; then echo "$mc_h"; else hostname; fi`,
    parse: (s) => first(s) ?? '',
  } as FactDef<string>,
  os: {
    name: 'os',
    // in a subshell: sourcing os-release must not set variables for the sections after it
    command: () =>
      `( [ -r /etc/os-release ] && . /etc/os-release; printf 'id=%s\\nversion_id=%s\\nid_like=%s\\npretty_name=%s\\n' "\${ID:-}" "\${VERSION_ID:-}" "\${ID_LIKE:-}" "\${PRETTY_NAME:-}" )`,
    parse: (s) => {
      const v = keyValues(s?.body);
      return {
        id: v.get('id') ?? '',
        versionId: v.get('version_id') ?? '',
        idLike: (v.get('id_like') ?? '').split(/\s+/).filter(Boolean),
        prettyName: v.get('pretty_name') ?? '',
      };
    },
  } as FactDef<OsRelease>,
  /** package manager commands present, in order of preference */
  packageManagers: list('pm', 'for pm in apt-get dnf yum apk pacman; do command -v $pm >/dev/null 2>&1 && echo $pm; done; true'),
  systemd: { name: 'systemd', command: () => `${SYSTEMD} && echo yes || echo no`, parse: (s) => first(s) === 'yes' } as FactDef<boolean>,
  kernelModule: {
    name: 'module',
    command: () =>
      '[ -d /sys/module/wireguard ] && echo loaded || { modinfo wireguard >/dev/null 2>&1 && echo available || echo missing; }',
    parse: (s) => {
      const value = first(s);
      return value === 'loaded' || value === 'available' ? value : 'missing';
    },
  } as FactDef<'loaded' | 'available' | 'missing'>,
  /** the tools found on PATH */
  tools: list('tools', 'for t in wg wg-quick wireguard-go tcpdump ping; do command -v $t >/dev/null 2>&1 && echo $t; done; true'),
  /**
   * dpkg's state of the packages meshctl installs with apt (DPKG_PACKAGES): `PACKAGE ABBREV` lines as dpkg-query's
   * `\${db:Status-Abbrev}` prints them (`ii`, `iF` half-configured, `iHR` half-installed and reinstall-required: a
   * Ctrl-C during `apt-get install` leaves such a package with its programs present). Nothing without dpkg; a
   * package dpkg does not know is not listed. Up's probe reads it from its one awk instead (./lean.ts).
   */
  dpkgStatus: {
    name: 'dpkg',
    command: () =>
      `command -v dpkg-query >/dev/null 2>&1 && dpkg-query -W -f='\${Package} \${db:Status-Abbrev}\n' ${DPKG_PACKAGES.join(' ')} 2>/dev/null; true`,
    parse: (s) => (s ? parseDpkgStatus(linesOf(s)) : undefined),
  } as FactDef<DpkgStatus | undefined>,
  // the shell's glob lists what `ls` did, sorted the same way (LC_ALL=C), without an exec (issue 10)
  interfaces: list('interfaces', 'for mc_i in /sys/class/net/*; do [ -e "$mc_i" ] && echo "${mc_i##*/}"; done; true'),
  wireguardInterfaces: list(
    'wginterfaces',
    'command -v wg >/dev/null 2>&1 && for mc_i in $(wg show interfaces 2>/dev/null); do echo "$mc_i"; done; true',
  ),
  wireguardConfigs: {
    name: 'wgconfigs',
    // `[ -L ]`: `ls` listed a dangling symlink too
    command: (ctx) =>
      sh`for mc_f in ${wireguardPaths(ctx.interface).dir}/*.conf; do { [ -e "$mc_f" ] || [ -L "$mc_f" ]; } && echo "\${mc_f##*/}"; done; true`
        .text,
    parse: (s) => linesOf(s),
  } as FactDef<string[]>,
  /** whether IFACE.conf exists, its sha256 and how many key lines it has (their values never leave the node) */
  configMeta: {
    name: 'confmeta',
    command: (ctx) => {
      const f = wireguardPaths(ctx.interface).config;
      // one awk counts both kinds of key line (two `grep -c` before) and the shell cuts sha256sum's "  -" (issue 10)
      return sh`if [ -f ${f} ]; then echo exists=yes; ${raw(sha256Of(f))} && echo "sha256=$mc_sha"; awk '{ l = tolower($0) } l ~ /^[[:space:]]*privatekey/ { p++ } l ~ /^[[:space:]]*presharedkey/ { s++ } END { printf "privatekeylines=%d\\npresharedkeylines=%d\\n", p, s }' ${f}; else echo exists=no; fi`
        .text;
    },
    parse: (s) => {
      const v = keyValues(s?.body);
      const sha256 = sha256OrUndefined(v.get('sha256'));
      return {
        exists: v.get('exists') === 'yes',
        ...(sha256 ? { sha256 } : {}),
        privateKeyLines: intOrUndefined(v.get('privatekeylines')) ?? 0,
        presharedKeyLines: intOrUndefined(v.get('presharedkeylines')) ?? 0,
      };
    },
  } as FactDef<ConfigMeta>,
  /**
   * IFACE.conf without secret lines (SECRET_LINE_ERE), with the one final newline a rendered file has; undefined when
   * absent. At most CONFIG_TEXT_MAX_BYTES of it leave the node (`head -c`), then a note line: the text is only shown
   * (a diff), while decisions use confmeta's sha256 of the whole file.
   */
  configText: {
    name: 'conf',
    command: (ctx) => {
      const f = wireguardPaths(ctx.interface).config;
      const max = CONFIG_TEXT_MAX_BYTES;
      return sh`if [ -f ${f} ]; then ${raw(filteredConfigCommand(f, wireguardPaths(ctx.interface).privateKey))} | head -c ${max}; [ "$(wc -c < ${f})" -gt ${max} ] && printf '\\n%s\\n' ${CONFIG_TEXT_CUT_NOTE}; fi; true`
        .text;
    },
    // the section body lost its trailing newlines; a wg-quick file written by meshctl ends with exactly one
    parse: (s) => (s && s.body !== '' ? `${filterConfigText(s.body)}\n` : undefined),
  } as FactDef<string | undefined>,
  keyFile: {
    name: 'keys',
    command: (ctx) => {
      const k = wireguardPaths(ctx.interface).privateKey;
      return sh`if [ -s ${k} ]; then echo exists=yes; echo "mode=$(stat -c %a ${k})"; command -v wg >/dev/null 2>&1 && echo "public=$(wg pubkey < ${k})"; else echo exists=no; fi; true`
        .text;
    },
    parse: (s) => {
      const v = keyValues(s?.body);
      const mode = v.get('mode');
      const publicKey = v.get('public');
      return {
        exists: v.get('exists') === 'yes',
        ...(mode ? { mode } : {}),
        ...(publicKey && looksLikeWireGuardKey(publicKey) ? { publicKey } : {}),
      };
    },
  } as FactDef<KeyFile>,
  /**
   * /etc/wireguard/IFACE.pub, only when it holds the public half of IFACE.key: compared on the node, so a `.pub` that
   * holds anything else (a copy of the private key, say) never leaves it; then the section says `mismatch` (or
   * `missing`, or `unchecked` without a key file or wg) and this is undefined.
   */
  publicKeyFile: {
    name: 'pubfile',
    command: (ctx) => publicKeyFileCommand(ctx.interface, 'cat'),
    parse: wgKeyOrUndefined,
  } as FactDef<string | undefined>,
  /** Whether IFACE.pub holds the public half of IFACE.key (compared on the node; the file is never printed) and its mode. */
  publicKeyFileState: {
    name: 'pubstate',
    command: (ctx) =>
      `${publicKeyFileCommand(ctx.interface, 'state')}; echo "mode=$(stat -c %a ${shellQuote(wireguardPaths(ctx.interface).publicKey)} 2>/dev/null)"`,
    parse: (s) => {
      const v = keyValues(s?.body);
      const state = linesOf(s)[0];
      const mode = v.get('mode');
      return {
        state: state === 'match' || state === 'mismatch' || state === 'missing' ? state : 'unchecked',
        ...(mode ? { mode } : {}),
      };
    },
  } as FactDef<PublicKeyFileState>,
  /**
   * Owner and mode of /etc/wireguard, IFACE.key, IFACE.pub, IFACE.conf and the other files meshctl installs that root
   * runs or reads (../remote/wireguard.ts fileModePaths; WireGuardFileMode; those that exist), from
   * ONE stat. Up's lean probe prints the same lines from the stat it already runs for the key's mode and the file's
   * size (./lean.ts), verify's checklist runs this command.
   */
  wireguardFiles: {
    name: 'wgfiles',
    command: (ctx) => {
      return sh`stat -c ${WIREGUARD_FILE_STAT_FORMAT} -- ${fileModePaths(ctx.interface)} 2>/dev/null; true`.text;
    },
    parse: (s) => parseWireGuardFileModes(s?.body),
  } as FactDef<WireGuardFileMode[]>,
  sysctlFileSha256: {
    name: 'sysctlfile',
    command: (ctx) => sha256IfFile(wireguardPaths(ctx.interface).sysctl),
    parse: (s) => sha256OrUndefined(first(s)),
  } as FactDef<string | undefined>,
  rpFilter: {
    name: 'rpfilter',
    command: (ctx) =>
      sh`for k in all default iface; do d=$k; [ $k = iface ] && d=${ctx.interface}; mc_v=; [ -r "/proc/sys/net/ipv4/conf/$d/rp_filter" ] && read -r mc_v < "/proc/sys/net/ipv4/conf/$d/rp_filter"; printf '%s=%s\\n' "$k" "$mc_v"; done`
        .text,
    parse: (s) => parseRpFilter(s?.body ?? ''),
  } as FactDef<RpFilter>,
  /**
   * Every sysctl configuration file systemd-sysctl reads (./sysctl-order.ts SYSCTL_DIRS, then /etc/sysctl.conf), each
   * with the rp_filter assignments for all, default and the interface in it; a file without any is listed too, so a
   * same-named file (or a /dev/null mask) in /etc still shadows one elsewhere. Unordered: orderSysctlFiles orders them.
   */
  rpFilterSysctlFiles: {
    name: 'rpfiles',
    // One awk over every regular file instead of a grep and a read loop per file: the section cost 0.2-0.4 s of a
    // 2.4 s facts probe on a lab node (issue 10). Files are listed by the shell's builtin printf (masks too).
    command: () =>
      sh`( set --; for f in ${raw(SYSCTL_DIRS.map((d) => `${shellQuote(d)}/*.conf`).join(' '))} ${SYSCTL_CONF}; do [ -e "$f" ] || continue; printf '%s\t\n' "$f"; [ -f "$f" ] && set -- "$@" "$f"; done; [ $# -eq 0 ] || awk '/^[[:space:]]*-?net[.\/]ipv4[.\/]conf[.\/][^=]*rp_filter[[:space:]]*=/ { printf "%s\\t%s\\n", FILENAME, $0 }' "$@" 2>/dev/null ); true`
        .text,
    parse: (s, ctx) => parseRpFilterSysctlFiles(s?.body ?? '', ctx.interface),
  } as FactDef<SysctlFileSettings[]>,
  service: {
    name: 'service',
    command: (ctx) => {
      const unit = wireguardPaths(ctx.interface).service;
      return sh`if ${raw(SYSTEMD)}; then echo systemd=yes; echo "enabled=$(systemctl is-enabled ${unit} 2>/dev/null)"; echo "active=$(systemctl is-active ${unit} 2>/dev/null)"; else echo systemd=no; fi`
        .text;
    },
    parse: (s) => parseService(s?.body ?? ''),
  } as FactDef<ServiceState>,
  /** sha256 of meshctl's wg-quick@ drop-in (../render/systemd.ts) */
  reloadDropInSha256: {
    name: 'dropin',
    command: (ctx) => sha256IfFile(wireguardPaths(ctx.interface).reloadDropIn),
    parse: (s) => sha256OrUndefined(first(s)),
  } as FactDef<string | undefined>,
  /** meshctl's re-resolve timer (../render/reresolve.ts): sha256 of its three files and the timer's state */
  reresolve: {
    name: 'reresolve',
    command: (ctx) => {
      const r = reresolvePaths(ctx.interface);
      const shaOf = (key: string, file: string) => sh`mc_sha=; [ -f ${file} ] && ${raw(sha256Of(file))}; echo ${key}=$mc_sha`.text;
      // Issue 10: the timer's state is asked only when one of its files exists: without them planReresolve
      // (../remote/reresolve.ts) never reads it, and a mesh without DNS endpoints saves two systemctl execs.
      return [
        shaOf('script', r.script),
        shaOf('service', r.service),
        shaOf('timer', r.timer),
        sh`if { [ -e ${r.script} ] || [ -e ${r.service} ] || [ -e ${r.timer} ]; } && ${raw(SYSTEMD)}; then echo "enabled=$(systemctl is-enabled ${r.timerUnit} 2>/dev/null)"; echo "active=$(systemctl is-active ${r.timerUnit} 2>/dev/null)"; fi; true`
          .text,
      ].join('\n');
    },
    parse: (s) => parseReresolve(s?.body ?? ''),
  } as FactDef<ReresolveState>,
  /** ifindex of the interface (a restart changes it); from /sys, so it needs no iproute2 JSON */
  interfaceIndex: {
    name: 'ifindex',
    command: (ctx) => `${readFirstLine(`/sys/class/net/${ctx.interface}/ifindex`, 'mc_v')}; [ -n "$mc_v" ] && echo "$mc_v"; true`,
    parse: (s) => intOrUndefined(first(s)),
  } as FactDef<number | undefined>,
  /** `ip -j addr show dev IFACE`: present, up, MTU, addresses, ifindex */
  interfaceAddr: {
    name: 'addr',
    command: (ctx) => sh`ip -j addr show dev ${ctx.interface}`.text,
    parse: (s) => parseIpAddr(s),
  } as FactDef<IfaceAddr>,
  /** the public half of the key the interface runs with (`wg show IFACE public-key`); undefined without one */
  interfacePublicKey: {
    name: 'pubkey',
    command: (ctx) => sh`wg show ${ctx.interface} public-key`.text,
    parse: wgKeyOrUndefined,
  } as FactDef<string | undefined>,
  /** `wg show IFACE listen-port`; the section's rc says whether wg could talk to the interface at all */
  interfaceListenPort: {
    name: 'port',
    command: (ctx) => sh`wg show ${ctx.interface} listen-port`.text,
    parse: (s) => (s?.rc === 0 ? intOrUndefined(first(s)) : undefined),
  } as FactDef<number | undefined>,
  /**
   * net.ipv4.conf.IFACE.forwarding (0 or 1), read with the shell's builtin `read` from /proc (no process): a relay's
   * PostUp sets it to 1 (../render/relay.ts), and `sysctl -w net.ipv4.ip_forward=0` sets every interface's back to 0.
   * Undefined when unreadable (no interface). The enable step compares it with the design (../steps/service.ts).
   */
  interfaceForwarding: {
    name: 'ifacefwd',
    command: (ctx) =>
      sh`mc_v=; [ -r ${`/proc/sys/net/ipv4/conf/${ctx.interface}/forwarding`} ] && read -r mc_v < ${`/proc/sys/net/ipv4/conf/${ctx.interface}/forwarding`}; printf 'forwarding=%s\n' "$mc_v"`
        .text,
    parse: (s) => {
      const value = /^forwarding=([01])$/m.exec(s?.body ?? '')?.[1];
      return value === undefined ? undefined : Number(value);
    },
  } as FactDef<number | undefined>,
  /** live peers (`wg show IFACE dump` without its interface line, preshared keys masked) */
  peers: {
    name: 'dump',
    command: (ctx) => peerDumpCommand(ctx.interface),
    parse: (s) => parseWgDumpPeers(s?.body ?? ''),
  } as FactDef<ReturnType<typeof parseWgDumpPeers>>,
  /** destinations routed via the interface, as `ip route show` prints them: host routes WITHOUT /32 */
  interfaceRoutes: {
    name: 'routes',
    command: (ctx) => sh`[ -e ${`/sys/class/net/${ctx.interface}`} ] && ip -4 route show dev ${ctx.interface}; true`.text,
    parse: (s) => linesOf(s).map((line) => line.split(/\s+/)[0]!),
  } as FactDef<string[]>,
  /** sockets on the listen port, as `ss` prints them (with the process holding each) */
  listenPortUsers: {
    name: 'listen',
    command: (ctx) => sh`ss -Hulnp ${`sport = :${Number(ctx.listenPort)}`}`.text,
    parse: (s) => linesOf(s).filter((line) => /^(UNCONN|ESTAB)\b/.test(line)),
  } as FactDef<string[]>,
  ipRules: list('iprules', 'ip -4 rule show'),
  leftoverPaths: {
    name: 'leftoverpaths',
    command: () => sh`for d in ${LEFTOVER_PATHS}; do [ -e "$d" ] && echo "$d"; done; true`.text,
    parse: (s) => linesOf(s),
  } as FactDef<string[]>,
  leftoverUnits: {
    name: 'leftoverunits',
    command: () => sh`${raw(SYSTEMD)} && systemctl list-unit-files --no-legend ${LEFTOVER_UNIT_GLOBS} 2>/dev/null; true`.text,
    // the unit is the first word of list-unit-files' line (it was cut on the node, one exec more; issue 10)
    parse: (s) => linesOf(s).map((line) => line.split(/\s+/)[0]!),
  } as FactDef<string[]>,
  /**
   * The firewall rules that drop or reject anything (every rule udpDropRules and icmpDropOnIfaceRules can match),
   * secret lines dropped. Both iptables-save (legacy or nft backend) and nft's own ruleset: a host may use either,
   * so a rule may show twice. Filtered on the node: a Kubernetes node's full ruleset runs to megabytes.
   */
  firewall: {
    name: 'firewall',
    command: () => "{ iptables-save -c; nft list ruleset; } 2>/dev/null | grep -Ei 'drop|reject'; true",
    parse: (s) => linesOf({ name: 'firewall', body: dropSecretLines(s?.body ?? '') }).filter((line) => DROP_OR_REJECT.test(line)),
  } as FactDef<string[]>,
  /**
   * The whole packet filter ruleset, for judging its effect on WireGuard's datagrams (../firewall/verdict.ts; issue
   * 8, kind 4): `iptables -V`, iptables-legacy-save (only when legacy tables exist, as /proc/net/ip_tables_names lists: reading them must not load the
   * legacy modules), iptables-nft-save (or iptables-save on the nf_tables backend) and `nft -j list ruleset`, each part
   * opened by an `@@ NAME` line and cut at FIREWALL_PART_MAX_BYTES. Read-only.
   */
  firewallRuleset: {
    name: 'fwrules',
    command: () => {
      const cap = FIREWALL_PART_MAX_BYTES;
      return [
        'fw_v=$(iptables -V 2>/dev/null)',
        `[ -n "$fw_v" ] && printf '@@ version\\n%s\\n' "$fw_v"`,
        // the shell reads /proc/net/ip_tables_names itself (was `grep -q .`): any non-empty line means legacy tables
        'mc_t=; [ -r /proc/net/ip_tables_names ] && while IFS= read -r mc_l || [ -n "$mc_l" ]; do [ -n "$mc_l" ] && mc_t=1 && break; done < /proc/net/ip_tables_names',
        `if [ -n "$mc_t" ]; then if command -v iptables-legacy-save >/dev/null 2>&1; then echo '@@ legacy'; iptables-legacy-save 2>&1 | head -c ${cap}; echo; else case "$fw_v" in *nf_tables*) ;; *) echo '@@ legacy'; iptables-save 2>&1 | head -c ${cap}; echo;; esac; fi; fi`,
        `if command -v iptables-nft-save >/dev/null 2>&1; then echo '@@ iptables-nft'; iptables-nft-save 2>&1 | head -c ${cap}; echo; else case "$fw_v" in *nf_tables*) echo '@@ iptables-nft'; iptables-save 2>&1 | head -c ${cap}; echo;; esac; fi`,
        `if command -v nft >/dev/null 2>&1; then echo '@@ nft'; nft -j list ruleset 2>&1 | head -c ${cap}; echo; fi`,
        // legacy ip6tables tables of this namespace (none when the file is absent: ip6_tables is not even loaded)
        'echo \'@@ ip6legacy\'; [ -r /proc/net/ip6_tables_names ] && while IFS= read -r mc_l || [ -n "$mc_l" ]; do printf \'%s\\n\' "$mc_l"; done < /proc/net/ip6_tables_names',
        'true',
      ].join('\n');
    },
    parse: (s) => (s ? parseFirewallFacts(s.body) : undefined),
  } as FactDef<FirewallFacts | undefined>,
  /**
   * Where the operator's SSH connection comes from, as the node sees it: $SSH_CONNECTION ("CLIENT-IP CLIENT-PORT
   * SERVER-IP SERVER-PORT", set by sshd for the login). `sudo` resets the environment, so when the probe's own
   * shell lacks it, it is read from the nearest ancestor process that has it (the login's shell or sudo itself;
   * the probe runs as root, so /proc/PID/environ is readable). Up's facts gate refuses a mesh that would route
   * this address into the tunnel (issue 8, kind 5).
   */
  operatorAddress: {
    name: 'operator',
    command: () =>
      // Issue 10: the shell reads PPid itself and one `tr` per ancestor feeds its `read` loop (it was tr, sed, head and
      // sed per ancestor, from the probe's own shell on: its environ is what $SSH_CONNECTION already shows).
      `( c=\${SSH_CONNECTION:-}; p=$$; while [ -z "$c" ] && [ "\${p:-0}" -gt 1 ]; do n=; [ -r /proc/$p/status ] && while read -r k v; do [ "$k" = PPid: ] && n=$v && break; done < /proc/$p/status; p=$n; [ "\${p:-0}" -gt 1 ] && c=$(tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | while IFS= read -r l; do case $l in SSH_CONNECTION=*) printf '%s' "\${l#SSH_CONNECTION=}"; break;; esac; done); done; printf 'ssh_connection=%s\\n' "$c" )`,
    parse: (s) => parseSshConnection(keyValues(s?.body).get('ssh_connection')),
  } as FactDef<OperatorAddress | undefined>,
  /**
   * Every WireGuard interface on the node with what could clash with a mesh (issue 8, kind 3): listen port, IPv4
   * addresses, IPv4 routes via it in every table (wg-quick puts a full tunnel's default route in its own table) and
   * its peers' AllowedIPs. One `iface=` line opens each interface (parseWireGuardInterfaces). Public keys are cut off
   * on the node; no private key is read.
   */
  wireguardInterfaceDetails: {
    name: 'wgdetails',
    // Issue 10: four execs plus two per interface (it was seven per interface): `wg show IFACE listen-port` and
    // `allowed-ips` (never the dump: no line with a private key is printed), one `ip` each for all addresses and all
    // routes, and one awk that groups them by interface in `wg show interfaces` order. A route line keeps its
    // `dev NAME` now; only its first words are read (routeDestination). No `exit`: the section runs in the probe's
    // own shell.
    command: () =>
      [
        'mc_w=; command -v wg >/dev/null 2>&1 && mc_w=$(wg show interfaces 2>/dev/null)',
        '[ -n "$mc_w" ] && { for mc_i in $mc_w; do echo "@@if $mc_i"; wg show "$mc_i" listen-port; echo @@allowed; wg show "$mc_i" allowed-ips; done; echo @@; ip -4 -o addr show; echo @@; ip -4 route show table all; } 2>/dev/null | awk \'',
        '  $0 == "@@" { part++; next }',
        '  part == 0 && $1 == "@@if" { f = $2; name[++n] = f; want = "port"; next }',
        '  part == 0 && $0 == "@@allowed" { want = "allowed"; next }',
        '  part == 0 && want == "port" { port[f] = $1; next }',
        '  part == 0 { for (k = 2; k <= NF; k++) out[f] = out[f] "allowed=" $k "\\n"; next }',
        '  part == 1 { sub(/@.*/, "", $2); adr[$2] = adr[$2] "addr=" $4 "\\n"; next }',
        '  { for (k = 1; k < NF; k++) if ($k == "dev") { rt[$(k + 1)] = rt[$(k + 1)] "route=" $0 "\\n"; break } }',
        '  END { for (i = 1; i <= n; i++) { f = name[i]; printf "iface=%s\\nport=%s\\n%s%s%s", f, port[f], adr[f], rt[f], out[f] } }',
        "'; true",
      ].join('\n'),
    parse: (s) => (s ? parseWireGuardInterfaces(s.body) : undefined),
  } as FactDef<WireGuardInterfaceFacts[] | undefined>,
} satisfies Record<string, FactDef<unknown>>;

/** One WireGuard interface on the node, as the `wgdetails` section reports it (FACTS.wireguardInterfaceDetails). */
export interface WireGuardInterfaceFacts {
  name: string;
  /** UDP listen port; undefined when wg could not read it */
  listenPort?: number;
  /** IPv4 addresses with prefix, e.g. 10.66.0.2/24 */
  addresses: string[];
  /** IPv4 destinations routed via the interface in any table, as CIDRs (`default` is 0.0.0.0/0, a host a /32) */
  routes: string[];
  /** its peers' AllowedIPs (IPv4 and IPv6, as wg prints them) */
  allowedIps: string[];
}

/** Route types of `ip route show table all` that are the kernel's own bookkeeping for an address, not a route via it. */
const LOCAL_ROUTE_TYPES = new Set(['local', 'broadcast', 'anycast', 'multicast']);

/** The destination of one `ip -4 route show` line as a CIDR; undefined for the kernel's local/broadcast entries. */
export function routeDestination(line: string): string | undefined {
  const words = line.trim().split(/\s+/);
  const dst = words[0] === 'unicast' ? words[1] : words[0];
  if (!dst || LOCAL_ROUTE_TYPES.has(dst)) return undefined;
  if (dst === 'default') return '0.0.0.0/0';
  return dst.includes('/') ? dst : `${dst}/32`;
}

/** The `wgdetails` section: `iface=NAME` opens an interface, `port=`, `addr=`, `route=`, `allowed=` lines follow. */
export function parseWireGuardInterfaces(body: string): WireGuardInterfaceFacts[] {
  const found: WireGuardInterfaceFacts[] = [];
  for (const line of body.split('\n')) {
    const at = line.indexOf('=');
    if (at <= 0) continue;
    const key = line.slice(0, at).trim();
    const value = line.slice(at + 1).trim();
    if (key === 'iface') {
      found.push({ name: value, addresses: [], routes: [], allowedIps: [] });
      continue;
    }
    const current = found[found.length - 1];
    if (!current || !value) continue;
    if (key === 'port' && /^\d+$/.test(value)) current.listenPort = Number(value);
    else if (key === 'addr') current.addresses.push(value);
    else if (key === 'route') {
      const dst = routeDestination(value);
      if (dst) current.routes.push(dst);
    } else if (key === 'allowed' && value !== '(none)') current.allowedIps.push(value);
  }
  return found;
}

export interface OperatorAddress {
  /** the operator's address as the node sees it (IPv4 dotted quad, or IPv6 text), e.g. 192.168.15.100 */
  address: string;
  /** the node's own address the connection arrived on */
  nodeAddress?: string;
}

const IP_TEXT = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

/**
 * "CLIENT-IP CLIENT-PORT SERVER-IP SERVER-PORT" (sshd's SSH_CONNECTION) -> the two addresses. IPv4-mapped IPv6
 * (::ffff:a.b.c.d, a dual-stack sshd) becomes the IPv4 address. undefined for anything that is not that shape.
 */
export function parseSshConnection(text: string | undefined): OperatorAddress | undefined {
  const [client, , server] = (text ?? '').trim().split(/\s+/);
  const plain = (ip: string | undefined) => {
    const value = ip?.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, '');
    return value !== undefined && IP_TEXT.test(value) ? value : undefined;
  };
  const address = plain(client);
  if (address === undefined) return undefined;
  const nodeAddress = plain(server);
  return { address, ...(nodeAddress !== undefined ? { nodeAddress } : {}) };
}

/** The name of the section (and fact) of one peer's route lookup, `route:IP` (routeLookupFact). */
export const routeSectionName = (ip: string): string => `route:${ip}`;

/** `ip -j route get IP`: where the kernel sends traffic for one peer's overlay address (one fact per peer). */
export const routeLookupFact = (ip: string): FactDef<RouteLookup> => ({
  name: routeSectionName(ip),
  command: () => sh`ip -j route get ${ip}`.text,
  parse: (s) => parseRouteGet(ip, s),
});

export type { LivePeer };
