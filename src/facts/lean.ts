/**
 * Up's facts probe with fewer processes (issue 10): the same sections, the same parsers and the same answers as the
 * shared definitions (./definitions.ts), but one exec where they run several on a node:
 * - WireGuard: ONE `wg show all dump` per probe (it was seven `wg` runs and two awk: `wg show interfaces` twice,
 *   `public-key`, `listen-port` twice, `dump`, `allowed-ips`), read into a shell variable through an awk that drops
 *   the private key on the node (it never reaches the variable) and masks preshared keys; the sections `wginterfaces`,
 *   `pubkey`, `port`, `dump` and `wgdetails` print from it what the separate commands printed;
 * - files: ONE `stat` for the modes of the key and .pub and the size of the wg-quick file (two stats and a `wc -c`
 *   before; the file goes through `head -c` only when it is larger than the cap), ONE `sha256sum` for every file a
 *   section needs a checksum of (the wg-quick file, the sysctl file, the drop-in, the re-resolve timer's files);
 * - `wg pubkey < KEY` once: the .pub comparison reuses the keys section's answer.
 * - ONE `ip -4 -force -batch -` for the interface's routes, the rules and every address and route wgdetails reads
 *   (four `ip` runs before), ONE awk for the clock, the wg-quick file's key-line counts and the sysctl files' rp_filter
 *   lines (`date` and two awk), the secret-line grep inside the config's awk, `head` only past the firewall cap, no
 *   `modinfo` where /lib/modules/RELEASE is missing: 16 processes on a converged lab node, 24 before
 *   (test/unit/facts-probe-parity.test.ts).
 * Sections share one shell (./sections.ts): the helpers are shell functions every lean section defines again (so a
 * section also runs alone) and fill their variable once per probe (`mc_` names). Only up's probe uses these
 * (./node-facts.ts): verify reads peers AFTER its pings, so a value cached before them would be stale there.
 * The answers are compared with the shared definitions' on captures of lab nodes (test/unit/facts-lean.test.ts).
 */
import { SECRET_FILTER_AWK } from '../remote/redact.js';
import { raw, sh, shellQuote } from '../remote/shell.js';
import { fileModePaths, reresolvePaths, wireguardPaths } from '../remote/wireguard.js';
import {
  CONFIG_TEXT_CUT_NOTE,
  CONFIG_TEXT_MAX_BYTES,
  FACTS,
  LEFTOVER_UNIT_GLOBS,
  SECRET_LINE_ERE,
  SYSTEMD,
  peerDumpCommand,
  publicKeyFileCommand,
  WIREGUARD_FILE_STAT_FORMAT,
  type FactContext,
  type FactDef,
} from './definitions.js';
import { FIREWALL_PART_MAX_BYTES } from '../firewall/verdict.js';
import { SYSCTL_CONF, SYSCTL_DIRS } from './sysctl-order.js';
import { DPKG_PACKAGES } from '../steps/install.js';

const TAB = '\t';

/** Lines of the shell variable VAR, each read into the variables NAMES (split at IFS_CHARS), as a here-document. */
const eachLine = (variable: string, ifs: string, names: string, body: string) =>
  `while IFS='${ifs}' read -r ${names}; do ${body}; done <<MC_EOF\n$${variable}\nMC_EOF`;

/**
 * `mc_wgr`: reads `wg show all dump` once into `mc_wga`, as lines `I<TAB>IFACE<TAB>PUBLIC-KEY<TAB>LISTEN-PORT` and
 * `P<TAB>IFACE<TAB>` + the peer's fields as `wg show IFACE dump` prints them, the preshared key masked as
 * peerDumpCommand does (../remote/wireguard.ts). The interface line's private key is dropped by the awk on the node.
 */
const WG_READ = [
  'mc_wgr() {',
  '  [ -n "${mc_wg_done:-}" ] && return 0; mc_wg_done=1; mc_wga=',
  `  command -v wg >/dev/null 2>&1 && mc_wga=$(wg show all dump 2>/dev/null | awk 'BEGIN { FS = OFS = "\\t" } NF == 5 { print "I", $1, $3, $4 } NF == 9 { if ($3 != "(none)") $3 = "(hidden)"; print "P", $0 }')`,
  '  true',
  '}',
].join('\n');

/** stat's format of `mc_str`: FACTS.wireguardFiles' (WIREGUARD_FILE_STAT_FORMAT) with the size (%s) after the mode. */
export const LEAN_STAT_FORMAT = '%F|%a|%s|%u|%U|%n';
if (WIREGUARD_FILE_STAT_FORMAT !== LEAN_STAT_FORMAT.replace('|%s', ''))
  throw new Error('WIREGUARD_FILE_STAT_FORMAT changed: update LEAN_STAT_FORMAT');

/**
 * `mc_str`: one `stat` (no -L, as the separate ones) of /etc/wireguard, the key, the .pub, the wg-quick file and the
 * other files of ../remote/wireguard.ts fileModePaths into
 * `mc_st`, lines LEAN_STAT_FORMAT: the key's mode, the file's size and every path's owner and mode
 * (FACTS.wireguardFiles) from the one process.
 */
const statRead = (ctx: FactContext) => {
  return [
    'mc_str() {',
    `  [ -n "\${mc_st_done:-}" ] && return 0; mc_st_done=1; mc_st=$(stat -c '${LEAN_STAT_FORMAT}' -- ${sh`${fileModePaths(ctx.interface)}`.text} 2>/dev/null)`,
    '  true',
    '}',
    // mc_stf PATH: its type (%F), octal mode and size in mc_sf, mc_sa, mc_ss; empty when stat did not list it
    'mc_stf() {',
    '  mc_str; mc_sf=; mc_sa=; mc_ss=',
    `  ${eachLine('mc_st', '|', 'mc_1 mc_2 mc_3 mc_4 mc_5 mc_6', '[ "$mc_6" = "$1" ] && mc_sf=$mc_1 && mc_sa=$mc_2 && mc_ss=$mc_3')}`,
    '}',
  ].join('\n');
};

/** Every file a lean section wants the sha256 of (only the regular files among them are read). */
const shaFiles = (ctx: FactContext) => {
  const p = wireguardPaths(ctx.interface);
  const r = reresolvePaths(ctx.interface);
  return [p.config, p.sysctl, p.reloadDropIn, r.script, r.service, r.timer];
};

/** `mc_shf PATH`: sets `mc_sha` to PATH's sha256 (status 1, empty, when it is not a regular file), one sha256sum for all. */
const shaRead = (ctx: FactContext) =>
  [
    'mc_shf() {',
    `  [ -n "\${mc_sha_done:-}" ] || { mc_sha_done=1; mc_shas=$(set --; for mc_f in ${sh`${shaFiles(ctx)}`.text}; do [ -f "$mc_f" ] && set -- "$@" "$mc_f"; done; [ $# -eq 0 ] || sha256sum -- "$@" 2>/dev/null); }`,
    '  mc_sha=',
    `  ${eachLine('mc_shas', ' ', 'mc_1 mc_2', '[ "$mc_2" = "$1" ] && mc_sha=$mc_1')}`,
    '  [ -n "$mc_sha" ]',
    '}',
  ].join('\n');

/** The fact `def` with a leaner command: same section name, same parser. */
const lean = <T>(def: FactDef<T>, command: (ctx: FactContext) => string): FactDef<T> => ({ ...def, command });

const wg = (body: string) => `${WG_READ}\nmc_wgr\n${body}`;

// ---------------------------------------------------------------------------------------------------------------
// Issue 10, fourth part: the facts probe's own cost on the node (24 processes on a converged lab node before, 16 now)

/**
 * A device name no interface can have (the kernel refuses a `/` in one): `route show dev mc/end` fails with exactly
 * IP_MARK_LINE on stderr and `-force` goes on, so it separates the outputs of one `ip -batch` (iproute2 flushes stdout
 * after each command, so the message lands between them; the farm's simulated ip does the same).
 */
export const IP_MARK_DEV = 'mc/end';
/** What ip prints (stderr) for the IP_MARK_DEV command; `Command failed -:N` follows it and is dropped too. */
export const IP_MARK_LINE = `Cannot find device "${IP_MARK_DEV}"`;

/**
 * `mc_ipr`: ONE `ip -4 -force -batch -` per probe (was four `ip` runs: `-4 route show dev IFACE`, `-4 rule show`,
 * `-4 -o addr show`, `-4 route show table all`) into `mc_ipo`, parts cut by IP_MARK_LINE: 0 the interface's routes
 * (asked only while /sys/class/net/IFACE exists, as FACTS.interfaceRoutes), 1 the rules, and only when `wg show all
 * dump` listed an interface (as FACTS.wireguardInterfaceDetails), 2 every IPv4 address (multi-line: `-o` would also
 * fold a multipath route's nexthop lines into one in parts 0 and 3), 3 every route of every table. `mc_ipp N` prints
 * part N without ip's `Command failed` lines (and stops reading there: the long parts come last). `ip -j addr show dev IFACE` stays apart: -j is for the whole batch.
 */
const ipRead = (ctx: FactContext) =>
  [
    WG_READ,
    'mc_ipr() {',
    '  [ -n "${mc_ip_done:-}" ] && return 0; mc_ip_done=1; mc_wgr',
    `  mc_ipc='route show dev ${IP_MARK_DEV}`,
    "rule show'",
    `  [ -e ${shellQuote(`/sys/class/net/${ctx.interface}`)} ] && mc_ipc=${shellQuote(`route show dev ${ctx.interface}\n`)}"$mc_ipc"`,
    `  [ -n "$mc_wga" ] && mc_ipc="$mc_ipc"${shellQuote(`\nroute show dev ${IP_MARK_DEV}\naddr show\nroute show dev ${IP_MARK_DEV}\nroute show table all`)}`,
    '  mc_ipo=$(ip -4 -force -batch - 2>&1 <<MC_EOF',
    '$mc_ipc',
    'MC_EOF',
    ')',
    '  true',
    '}',
    'mc_ipp() {',
    '  mc_ipr; mc_n=0',
    `  ${eachLine('mc_ipo', '', 'mc_l', `case $mc_l in ${shellQuote(IP_MARK_LINE)}) mc_n=$((mc_n + 1)); [ $mc_n -gt $1 ] && break;; 'Command failed -:'*) ;; *) [ $mc_n -eq $1 ] && printf '%s\\n' "$mc_l";; esac`)}`,
    '  true',
    '}',
  ].join('\n');

/**
 * The reads up's facts probe shares with its ping round ahead (../engine/ping-ahead.ts factsBesidePingAhead), run
 * once in the script's own shell before either part starts: `wg show all dump` (mc_wgr: the round's guard reads it)
 * and the one `ip -batch` (mc_ipr: the round's `routes` section prints its part 0). Both parts then run in subshells
 * of that shell, which inherit the values and the `mc_*_done` flags, so neither runs `wg` or `ip` again: the same
 * processes as when the round followed the facts in one shell.
 */
export const sharedReads = (ctx: FactContext): string => `${ipRead(ctx)}\nmc_ipr`;

/** The sysctl files FACTS.rpFilterSysctlFiles lists, as shell words (globs unquoted). */
const sysctlGlobs = `${SYSCTL_DIRS.map((d) => `${shellQuote(d)}/*.conf`).join(' ')} ${SYSCTL_CONF}`;

/** dpkg's database: its status file and the journal of changes not yet folded into it (dpkg(1), /var/lib/dpkg). */
const DPKG_STATUS = '/var/lib/dpkg/status';
const DPKG_UPDATES = '/var/lib/dpkg/updates';

/**
 * `mc_awr`: ONE awk per probe for the clock (POSIX awk's `srand()` returns the previous seed, the time of day the first
 * call set: `date +%s` before), the key-line counts of the wg-quick file (FACTS.configMeta's awk) and the rp_filter
 * lines of every sysctl file (FACTS.rpFilterSysctlFiles' awk), into `mc_aw` as lines `n:SECONDS`,
 * `k:privatekeylines=N`, `k:presharedkeylines=N` (only when the file is a regular file), `r:PATH<TAB>LINE` and, where
 * dpkg's status file exists, `d:PACKAGE ABBREV` for the packages meshctl installs (FACTS.dpkgStatus as dpkg-query
 * prints it, read from the status file and dpkg's journal with no exec of its own: a Ctrl-C during `apt-get install`
 * leaves them half done with `wg` present); the
 * sysctl files' listing (`PATH<TAB>` each, masks too) goes to `mc_rpl`. Files are told apart by awk's command-line
 * assignments (`part=...`), which POSIX awk runs between files; stdin is /dev/null (no file at all: awk reads it).
 * `mc_awp TAG` prints the lines of one tag without it.
 */
const awkRead = (ctx: FactContext) => {
  const conf = shellQuote(wireguardPaths(ctx.interface).config);
  const program = [
    'BEGIN { srand(); printf "n:%d\\n", srand() }',
    'part == "conf" { l = tolower($0); if (l ~ /^[[:space:]]*privatekey/) p++; if (l ~ /^[[:space:]]*presharedkey/) s++; next }',
    'part == "rp" && /^[[:space:]]*-?net[./]ipv4[./]conf[./][^=]*rp_filter[[:space:]]*=/ { printf "r:%s\\t%s\\n", FILENAME, $0 }',
    // dpkg's status file, then its journal (updates/NNNN, newer records win, as dpkg reads them): FACTS.dpkgStatus
    `BEGIN { ${DPKG_PACKAGES.map((name) => `w["${name}"] = 1`).join('; ')} }`,
    'function ab(x, names, letters,   n, i, a) { n = split(names, a, " "); for (i = 1; i <= n; i++) if (a[i] == x) return substr(letters, i, 1); return "?" }',
    'part == "dpkg" && /^Package:/ { pk = $2; next }',
    'part == "dpkg" && /^Status:/ && (pk in w) { st[pk] = ab($2, "unknown install hold deinstall purge", "uihrp") ab($4, "not-installed config-files half-installed unpacked half-configured triggers-awaited triggers-pending installed", "ncHUFWti") ($3 == "ok" ? "" : "R"); next }',
    'part == "dpkg" && $0 == "" { pk = "" }',
    'END { if (hc) printf "k:privatekeylines=%d\\nk:presharedkeylines=%d\\n", p, s; if (hd) for (k in st) printf "d:%s %s\\n", k, st[k] }',
  ].join('\n');
  return [
    'mc_awr() {',
    '  [ -n "${mc_aw_done:-}" ] && return 0; mc_aw_done=1; mc_rpl=; set --',
    `  [ -f ${conf} ] && set -- hc=1 part=conf ${conf}`,
    '  set -- "$@" part=rp',
    // the listing's TAB and newline are literal (no printf process)
    `  for mc_f in ${sysctlGlobs}; do [ -e "$mc_f" ] || continue; mc_rpl="$mc_rpl$mc_f\t`,
    '"; [ -f "$mc_f" ] && set -- "$@" "$mc_f"; done',
    `  [ -f ${DPKG_STATUS} ] && { set -- "$@" hd=1 part=dpkg ${DPKG_STATUS}; for mc_f in ${DPKG_UPDATES}/[0-9]*; do [ -f "$mc_f" ] && set -- "$@" "$mc_f"; done; }`,
    `  mc_aw=$(awk ${shellQuote(program)} "$@" </dev/null 2>/dev/null)`,
    '  true',
    '}',
    'mc_awp() {',
    '  mc_awr',
    `  ${eachLine('mc_aw', '', 'mc_l', 'case $mc_l in "$1":*) printf \'%s\\n\' "${mc_l#"$1":}";; esac')}`,
    '  true',
    '}',
  ].join('\n');
};

/**
 * SECRET_LINE_ERE for awk, matched against the lower-cased line (as `grep -Evi` matches it in the C locale): the
 * classes lower-cased and `{42}` written out (mawk 1.3.4 20200120, Debian 12's awk, has no interval expressions).
 */
export const SECRET_LINE_ERE_AWK = (() => {
  const from = ['[A-Za-z0-9+/]{42}', '[AEIMQUYcgkosw048]'];
  if (!from.every((part) => SECRET_LINE_ERE.includes(part))) throw new Error('SECRET_LINE_ERE changed: update SECRET_LINE_ERE_AWK');
  return SECRET_LINE_ERE.replace(from[0]!, '[a-z0-9+/]'.repeat(42)).replace(from[1]!, '[aeimquycgkosw048]');
})();

/** filteredConfigCommand (./definitions.ts) in ONE awk: the grep's lines are dropped by the awk itself. */
const filteredConfigAwk = (path: string, keyPath: string) =>
  sh`awk -v keyfile=${keyPath} -v conf=${path} -v mc_re=${SECRET_LINE_ERE_AWK} ${`tolower($0) ~ mc_re { next }\n${SECRET_FILTER_AWK}`} ${path}`
    .text;

/**
 * `mc_cap CMD...`: prints CMD's output (stderr with it) cut at FIREWALL_PART_MAX_BYTES as `CMD 2>&1 | head -c MAX` did,
 * with no `head` process unless the output is longer (it is read whole into the shell first; the `x` keeps its
 * trailing newlines).
 */
const CAP_READ = [
  'mc_cap() {',
  '  mc_o=$("$@" 2>&1; echo x); mc_o=${mc_o%x}',
  `  if [ \${#mc_o} -gt ${FIREWALL_PART_MAX_BYTES} ]; then printf '%s' "$mc_o" | head -c ${FIREWALL_PART_MAX_BYTES}; else printf '%s' "$mc_o"; fi`,
  '}',
].join('\n');

/**
 * `mc_scr`: the states of wg-quick@IFACE and, when one of the re-resolve timer's files exists (as FACTS.reresolve
 * asks it), of meshctl-reresolve@IFACE.timer, from ONE `systemctl is-enabled` and ONE `systemctl is-active` for both
 * units (issue 10: four systemctl runs, each a D-Bus connection PID 1 serves, on a node with the timer; two now).
 * Into `mc_se1`/`mc_sa1` (the service's is-enabled/is-active) and `mc_se2`/`mc_sa2` (the timer's), each what the
 * one-unit run printed. Both print one line per unit, in order; but `is-enabled` stops at the first unit it cannot
 * answer (systemd 252, src/systemctl/systemctl-is-enabled.c: "Failed to get unit file state", nothing more on stdout),
 * so its N lines are the first N units': a service it could not answer (no line) leaves the timer to a run of its own,
 * and a timer it could not answer after the service printed nothing, as its own run would. `is-active` prints
 * `inactive` for an unknown unit; were a line missing, both are asked one by one as before.
 */
const systemctlRead = (ctx: FactContext) => {
  const service = wireguardPaths(ctx.interface).service;
  const r = reresolvePaths(ctx.interface);
  const one = (verb: string, unit: string) => sh`$(systemctl ${verb} ${unit} 2>/dev/null)`.text;
  return [
    // mc_scl TEXT: its first two lines in mc_l1, mc_l2 and its number of lines in mc_ln (0 for an empty TEXT)
    'mc_scl() {',
    '  mc_l1=; mc_l2=; mc_ln=0; [ -n "$1" ] || return 0',
    `  ${eachLine('1', '', 'mc_l', 'mc_ln=$((mc_ln + 1)); [ $mc_ln -eq 1 ] && mc_l1=$mc_l; [ $mc_ln -eq 2 ] && mc_l2=$mc_l')}`,
    '  true',
    '}',
    'mc_scr() {',
    '  [ -n "${mc_sc_done:-}" ] && return 0; mc_sc_done=1; mc_se2=; mc_sa2=',
    sh`  if ! { [ -e ${r.script} ] || [ -e ${r.service} ] || [ -e ${r.timer} ]; }; then`.text,
    `    mc_se1=${one('is-enabled', service)}; mc_sa1=${one('is-active', service)}; return 0`,
    '  fi',
    sh`  mc_scl "$(systemctl is-enabled ${service} ${r.timerUnit} 2>/dev/null)"; mc_se1=$mc_l1; mc_se2=$mc_l2`.text,
    `  [ $mc_ln -eq 0 ] && mc_se2=${one('is-enabled', r.timerUnit)}`,
    sh`  mc_scl "$(systemctl is-active ${service} ${r.timerUnit} 2>/dev/null)"; mc_sa1=$mc_l1; mc_sa2=$mc_l2`.text,
    `  [ $mc_ln -eq 2 ] || { mc_sa1=${one('is-active', service)}; mc_sa2=${one('is-active', r.timerUnit)}; }`,
    '  true',
    '}',
  ].join('\n');
};

/** The tables iptables-nft-save prints when nftables holds them (its builtin tables of family ip). */
const IPTABLES_TABLES = ['filter', 'nat', 'mangle', 'raw', 'security'];
/** How `nft -j list ruleset` (libnftables: jansson, keys in print order) begins; any other start: not trusted. */
const NFT_JSON_START = '{"nftables": [{"metainfo": {';

/**
 * fwrules as FACTS.firewallRuleset prints it, with `nft -j list ruleset` read first into `mc_nj` and iptables-nft-save
 * run only when that JSON is not complete (cut at the cap, or not shaped as expected) or shows a table iptables-nft
 * would print. Without such a table iptables-nft-save prints nothing, so its part is printed empty. Sets `mc_ipt_ok`
 * when the iptables-save text of the ruleset `iptables` itself reads (the nf_tables backend) is whole in the output,
 * so the relay section may derive its lines from it; `mc_nj_ok` when the JSON is whole. verify's checklist runs it
 * (../checks/checklist-lean.ts), and up's probe too (LEAN_FACTS.firewallRuleset, issue 10: one exec fewer on a node
 * whose nftables holds no iptables table).
 */
export const NFT_FIRST_FIREWALL = lean(FACTS.firewallRuleset, () => {
  const cap = FIREWALL_PART_MAX_BYTES;
  const tables = IPTABLES_TABLES.map((t) => `*'{"table": {"family": "ip", "name": "${t}", '*`).join('|');
  const shared = FACTS.firewallRuleset.command({ interface: 'x', listenPort: 0 }).split('\n');
  const [version, printVersion, legacyTables, legacy] = shared;
  return [
    version,
    printVersion,
    legacyTables,
    legacy,
    'mc_nj=; mc_nt=; mc_nj_ok=; mc_ipt_ok=',
    'if command -v nft >/dev/null 2>&1; then mc_nt=1; mc_nj=$(nft -j list ruleset 2>&1); fi',
    `if [ -n "$mc_nt" ] && [ \${#mc_nj} -lt ${cap} ]; then case $mc_nj in '${NFT_JSON_START}'*) mc_nj_ok=1 ;; esac; fi`,
    // iptables-nft-save's part: read unless the whole JSON shows it would print nothing
    `mc_ins=; mc_need=1; if [ -n "$mc_nj_ok" ]; then case $mc_nj in ${tables}) ;; *) mc_need= ;; esac; fi`,
    'mc_insave=; if command -v iptables-nft-save >/dev/null 2>&1; then mc_insave=iptables-nft-save; else case "$fw_v" in *nf_tables*) mc_insave=iptables-save ;; esac; fi',
    `if [ -n "$mc_insave" ]; then echo '@@ iptables-nft'; [ -z "$mc_need" ] || mc_ins=$($mc_insave 2>&1); printf '%.${cap}s\\n' "$mc_ins"; case "$fw_v" in *nf_tables*) [ \${#mc_ins} -lt ${cap} ] && mc_ipt_ok=1 ;; esac; fi`,
    `if [ -n "$mc_nt" ]; then echo '@@ nft'; printf '%.${cap}s\\n' "$mc_nj"; fi`,
    ...shared.slice(6),
  ].join('\n');
});

/** systemd's unit search path in system mode (`systemd-analyze unit-paths`, Debian 12 and others), a superset. */
export const UNIT_DIRS = [
  '/etc/systemd/system.control',
  '/run/systemd/system.control',
  '/run/systemd/transient',
  '/run/systemd/generator.early',
  '/etc/systemd/system',
  '/etc/systemd/system.attached',
  '/run/systemd/system',
  '/run/systemd/system.attached',
  '/run/systemd/generator',
  '/usr/local/lib/systemd/system',
  '/usr/lib/systemd/system',
  '/run/systemd/generator.late',
  '/lib/systemd/system',
];

/** The lean definitions, by the name of the shared definition they replace in up's probe. */
export const LEAN_FACTS = {
  wireguardInterfaces: lean(FACTS.wireguardInterfaces, () =>
    wg(`${eachLine('mc_wga', TAB, 'mc_t mc_i mc_r', '[ "$mc_t" = I ] && echo "$mc_i"')}\ntrue`),
  ),
  interfacePublicKey: lean(FACTS.interfacePublicKey, (ctx) =>
    wg(
      `${eachLine('mc_wga', TAB, 'mc_t mc_i mc_k mc_r', sh`[ "$mc_t" = I ] && [ "$mc_i" = ${ctx.interface} ] && echo "$mc_k"`.text)}\ntrue`,
    ),
  ),
  // the section's status says whether wg could read the interface (NodeFacts.live.wgReadable): 1 when not listed
  interfaceListenPort: lean(FACTS.interfaceListenPort, (ctx) =>
    wg(
      `mc_p=; mc_f=\n${eachLine('mc_wga', TAB, 'mc_t mc_i mc_k mc_l', sh`[ "$mc_t" = I ] && [ "$mc_i" = ${ctx.interface} ] && mc_f=1 && mc_p=$mc_l`.text)}\n[ -n "$mc_f" ] && echo "$mc_p"`,
    ),
  ),
  peers: lean(FACTS.peers, (ctx) =>
    wg(
      `${eachLine('mc_wga', TAB, 'mc_t mc_i mc_r', sh`[ "$mc_t" = P ] && [ "$mc_i" = ${ctx.interface} ] && printf '%s\\n' "$mc_r"`.text)}\ntrue`,
    ),
  ),
  // as FACTS.wireguardInterfaceDetails, with the ports and AllowedIPs read from the dump (comma-separated there)
  wireguardInterfaceDetails: lean(FACTS.wireguardInterfaceDetails, (ctx) =>
    wg(
      `${ipRead(ctx)}\n` +
        [
          // the addresses and routes from mc_ipr's batch (parts 2 and 3); an address line as `-o` printed it (the farm's
          // simulated ip) or as a multi-line listing does (`N: NAME: <FLAGS>` then `inet ADDR ...`)
          `mc_ipr; [ -n "$mc_wga" ] && { printf '%s\\n' "$mc_wga"; echo @@; printf '%s\\n' "$mc_ipo"; } | awk -v mark=${shellQuote(IP_MARK_LINE)} '`,
          '  $0 == "@@" && !part { part = 1; next }',
          '  part == 0 && $1 == "I" { f = $2; name[++n] = f; port[f] = $4; next }',
          '  part == 0 && $1 == "P" { c = split($6, a, ","); for (k = 1; k <= c; k++) out[$2] = out[$2] "allowed=" a[k] "\\n"; next }',
          '  part == 0 { next }',
          '  $0 == mark { ip++; next }',
          '  /^Command failed -:/ || ip < 2 { next }',
          '  ip == 2 && /^[0-9]+: / { d = $2; sub(/:$/, "", d); sub(/@.*/, "", d); if ($3 == "inet") adr[d] = adr[d] "addr=" $4 "\\n"; next }',
          '  ip == 2 { if ($1 == "inet") adr[d] = adr[d] "addr=" $2 "\\n"; next }',
          '  { for (k = 1; k < NF; k++) if ($k == "dev") { rt[$(k + 1)] = rt[$(k + 1)] "route=" $0 "\\n"; break } }',
          '  END { for (i = 1; i <= n; i++) { f = name[i]; printf "iface=%s\\nport=%s\\n%s%s%s", f, port[f], adr[f], rt[f], out[f] } }',
          "'; true",
        ].join('\n'),
    ),
  ),
  // the key's mode from the shared stat; its public half kept in mc_kpub for the .pub comparison (pubstate)
  keyFile: lean(FACTS.keyFile, (ctx) => {
    const k = wireguardPaths(ctx.interface).privateKey;
    return `${statRead(ctx)}\n${sh`if [ -s ${k} ]; then echo exists=yes; mc_stf ${k}; echo "mode=$mc_sa"; command -v wg >/dev/null 2>&1 && { mc_kpub=$(wg pubkey < ${k}); mc_kpub_done=1; echo "public=$mc_kpub"; }; else echo exists=no; fi; true`.text}`;
  }),
  // every path's owner and mode from the shared stat (mc_str), printed as FACTS.wireguardFiles' own stat prints them
  wireguardFiles: lean(FACTS.wireguardFiles, (ctx) =>
    [
      statRead(ctx),
      'mc_str',
      eachLine(
        'mc_st',
        '|',
        'mc_1 mc_2 mc_3 mc_4 mc_5 mc_6',
        `[ -n "$mc_6" ] && printf '%s|%s|%s|%s|%s\\n' "$mc_1" "$mc_2" "$mc_4" "$mc_5" "$mc_6"`,
      ),
      'true',
    ].join('\n'),
  ),
  publicKeyFileState: lean(FACTS.publicKeyFileState, (ctx) => {
    const p = wireguardPaths(ctx.interface);
    const publicOfKey = sh`if [ -n "\${mc_kpub_done:-}" ]; then mc_kp=$mc_kpub; else mc_kp=$(wg pubkey < ${p.privateKey} 2>/dev/null); fi`
      .text;
    return `${statRead(ctx)}\n${publicKeyFileCommand(ctx.interface, 'state', publicOfKey)}; mc_stf ${sh`${p.publicKey}`.text}; echo "mode=$mc_sa"`;
  }),
  // the file's size from the shared stat (wc -c for anything but a regular file): head -c only past the cap
  configText: lean(FACTS.configText, (ctx) => {
    const p = wireguardPaths(ctx.interface);
    const max = CONFIG_TEXT_MAX_BYTES;
    // the secret-line filter in one awk (was grep | awk: filteredConfigAwk)
    const filter = filteredConfigAwk(p.config, p.privateKey);
    return `${statRead(ctx)}\n${sh`if [ -f ${p.config} ]; then mc_stf ${p.config}; case $mc_sf in 'regular file'|'regular empty file') mc_cs=$mc_ss;; *) mc_cs=$(wc -c < ${p.config});; esac; if [ "\${mc_cs:-0}" -gt ${max} ]; then `.text}${filter}${sh` | head -c ${max}; printf '\\n%s\\n' ${CONFIG_TEXT_CUT_NOTE}; else `.text}${filter}; fi; fi; true`;
  }),
  sysctlFileSha256: lean(FACTS.sysctlFileSha256, (ctx) => {
    const f = wireguardPaths(ctx.interface).sysctl;
    return `${shaRead(ctx)}\n${sh`[ -f ${f} ] && mc_shf ${f} && echo "$mc_sha"; true`.text}`;
  }),
  reloadDropInSha256: lean(FACTS.reloadDropInSha256, (ctx) => {
    const f = wireguardPaths(ctx.interface).reloadDropIn;
    return `${shaRead(ctx)}\n${sh`[ -f ${f} ] && mc_shf ${f} && echo "$mc_sha"; true`.text}`;
  }),
  reresolve: lean(FACTS.reresolve, (ctx) => {
    const r = reresolvePaths(ctx.interface);
    const shaOf = (key: string, file: string) => sh`mc_shf ${file}; echo ${key}=$mc_sha`.text;
    // the timer's state only when one of its files exists, as FACTS.reresolve; asked with the service's (mc_scr)
    const timer =
      sh`if { [ -e ${r.script} ] || [ -e ${r.service} ] || [ -e ${r.timer} ]; } && ${raw(SYSTEMD)}; then mc_scr; echo "enabled=$mc_se2"; echo "active=$mc_sa2"; fi; true`
        .text;
    return [shaRead(ctx), systemctlRead(ctx), shaOf('script', r.script), shaOf('service', r.service), shaOf('timer', r.timer), timer].join(
      '\n',
    );
  }),
  // wg-quick@IFACE's is-enabled and is-active, asked with the re-resolve timer's (mc_scr): the same lines as FACTS.service
  service: lean(FACTS.service, (ctx) =>
    [
      systemctlRead(ctx),
      `if ${SYSTEMD}; then echo systemd=yes; mc_scr; echo "enabled=$mc_se1"; echo "active=$mc_sa1"; else echo systemd=no; fi`,
    ].join('\n'),
  ),
  // list-unit-files only when a file of that name is in a unit directory (it lists nothing else): the common
  // answer, nothing, without a systemctl run (the most expensive exec of a converged probe)
  // Issue 10, fourth part: ONE glob per directory, of the globs' first letters (`[ckfr]*`; it was one glob per unit glob
  // and directory, 78 directory reads, 3.6 ms of a 65 ms probe on a lab node), its names matched by `case`
  leftoverUnits: lean(FACTS.leftoverUnits, () => {
    const initials = [...new Set(LEFTOVER_UNIT_GLOBS.map((g) => g[0]!))].join('');
    if (!LEFTOVER_UNIT_GLOBS.every((g) => /^[a-z][\w.-]*\*$/.test(g)))
      throw new Error('LEFTOVER_UNIT_GLOBS changed: update its lean version');
    return `mc_u=; for mc_d in ${sh`${UNIT_DIRS}`.text}; do for mc_f in "$mc_d"/[${initials}]*; do case \${mc_f##*/} in ${LEFTOVER_UNIT_GLOBS.join('|')}) { [ -e "$mc_f" ] || [ -L "$mc_f" ]; } && mc_u=1 && break 2;; esac; done; done\n[ -n "$mc_u" ] && ${FACTS.leftoverUnits.command({ interface: '', listenPort: 0 })}; true`;
  }),
  // Issue 10, fourth part: the clock, the key-line counts and the sysctl files' rp_filter lines from one awk (mc_awr)
  now: lean(FACTS.now, (ctx) =>
    [
      awkRead(ctx),
      `mc_awr; mc_now=\n${eachLine('mc_aw', '', 'mc_l', 'case $mc_l in n:*) mc_now=${mc_l#n:};; esac')}`,
      // an awk without srand's answer (none on PATH): the clock as before
      'if [ -n "$mc_now" ]; then echo "$mc_now"; else date +%s; fi',
    ].join('\n'),
  ),
  configMeta: lean(FACTS.configMeta, (ctx) => {
    const f = wireguardPaths(ctx.interface).config;
    return `${shaRead(ctx)}\n${awkRead(ctx)}\n${sh`if [ -f ${f} ]; then echo exists=yes; mc_shf ${f} && echo "sha256=$mc_sha"; mc_awp k; else echo exists=no; fi`.text}`;
  }),
  rpFilterSysctlFiles: lean(FACTS.rpFilterSysctlFiles, (ctx) => `${awkRead(ctx)}\nmc_awr; printf '%s' "$mc_rpl"; mc_awp r; true`),
  // dpkg's state of meshctl's packages from the same awk (mc_awr): dpkg-query would be one exec more
  dpkgStatus: lean(FACTS.dpkgStatus, (ctx) => `${awkRead(ctx)}\nmc_awp d`),
  // modinfo looks in /lib/modules/RELEASE only (kmod; /usr/lib/modules where kmod is built so): without that directory
  // it fails, so the answer is `missing` without a modinfo run (none in a container without the host's modules)
  kernelModule: lean(
    FACTS.kernelModule,
    () =>
      '[ -d /sys/module/wireguard ] && echo loaded || { mc_r=; [ -r /proc/sys/kernel/osrelease ] && IFS= read -r mc_r < /proc/sys/kernel/osrelease; if [ -n "$mc_r" ] && [ ! -d "/lib/modules/$mc_r" ] && [ ! -d "/usr/lib/modules/$mc_r" ]; then echo missing; else modinfo wireguard >/dev/null 2>&1 && echo available || echo missing; fi; }',
  ),
  // one `ip -batch` for the routes, the rules and wgdetails' addresses and routes (mc_ipr)
  interfaceRoutes: lean(FACTS.interfaceRoutes, (ctx) => `${ipRead(ctx)}\nmc_ipp 0`),
  ipRules: lean(FACTS.ipRules, (ctx) => `${ipRead(ctx)}\nmc_ipp 1`),
  // no `head` unless a part is longer than the cap (mc_cap)
  // and nft's JSON first: iptables-nft-save only when it would print a table (NFT_FIRST_FIREWALL; issue 10)
  firewallRuleset: lean(FACTS.firewallRuleset, (ctx) => {
    const nftFirst = NFT_FIRST_FIREWALL.command(ctx);
    const capped = / ?([^;]*?) 2>&1 \| head -c \d+/g;
    if ((nftFirst.match(capped) ?? []).length !== 2) throw new Error('FACTS.firewallRuleset changed: update its lean version');
    return `${CAP_READ}\n${nftFirst.replace(capped, ' mc_cap $1')}`;
  }),
  // The units' states stay `is-enabled` + `is-active` (one run each for both units: mc_scr), not `systemctl show`:
  // its UnitFileState is systemd's cached answer and still says `enabled` after the wants symlink was removed by hand,
  // where is-enabled, which reads the unit files, says `disabled` (test/fixtures/probes/issue10/drifted-home-1.systemctl.txt).
} satisfies Partial<Record<keyof typeof FACTS, FactDef<unknown>>>;

/**
 * Shell whose status is 0 when the peers of `iface` (from the probe's one `wg show all dump`, WG_READ: no exec of its
 * own) allow every one of `ips` as a /32, i.e. the node's WireGuard already routes to every peer meshctl would ping.
 * Up's ping round ahead (../engine/ping-ahead.ts) pings only then: a peer missing from the live interface would
 * make its ping wait for the deadline in a run that is going to change the node anyway.
 */
export const wgAllowsEvery = (iface: string, ips: readonly string[]): string =>
  wg(
    [
      'mc_al=,',
      eachLine(
        'mc_wga',
        TAB,
        'mc_t mc_i mc_k mc_p mc_e mc_a mc_r',
        sh`[ "$mc_t" = P ] && [ "$mc_i" = ${iface} ] && mc_al="$mc_al$mc_a,"`.text,
      ),
      `mc_ok=1; for mc_ip in ${sh`${[...ips]}`.text}; do case $mc_al in *,"$mc_ip"/32,*) ;; *) mc_ok=;; esac; done; [ -n "$mc_ok" ]`,
    ].join('\n'),
  );

/** The line after which a peers section of peersWithClock has the node's clock (its awk's END). */
const CLOCK_MARK = '@@meshctl-clock ';

/**
 * The sections `peers` and `now` (FACTS.peers and FACTS.now, the same output for their parsers) read after a ping
 * round from ONE `wg show IFACE dump` whose awk prints the node's clock at its END (`srand()`, once the whole dump is
 * read, so the clock is never before a handshake it shows), not a `date` beside it (issue 10: one exec fewer per node
 * and round); `date` only when that awk gave no clock. `peers` first: `now` reads what it kept (`mc_pnow`).
 * Used by up's round ahead (../engine/ping-ahead.ts) and verify's ping round (../checks/collect.ts).
 */
export function peersWithClock(iface: string): Array<{ name: string; command: string }> {
  const ctx = { interface: iface, listenPort: 0 };
  // the shared peers section's own command (FACTS.peers), with the clock line at its awk's end
  const withClock = peerDumpCommand(iface, CLOCK_MARK);
  return [
    {
      name: FACTS.peers.name,
      command: [
        // the dump and wg's own errors, as the shared section prints them; the clock line last (awk ends last)
        `mc_pd=$( { ${withClock}\n} 2>&1 ); mc_pnow=`,
        `case $mc_pd in *'${CLOCK_MARK}'*) mc_pnow=\${mc_pd##*'${CLOCK_MARK}'}; mc_pd=\${mc_pd%'${CLOCK_MARK}'*};; esac`,
        `printf '%s\\n' "$mc_pd"`,
      ].join('\n'),
    },
    { name: FACTS.now.name, command: `case $mc_pnow in ''|*[!0-9]*|0) ${FACTS.now.command(ctx)};; *) echo "$mc_pnow";; esac` },
  ];
}
