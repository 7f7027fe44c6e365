/**
 * verify's pre script and checklist with fewer processes (issue 10): the same sections, the same parsers and the
 * same answers as the shared definitions (../facts/definitions.ts), but one exec where they ran several:
 * - WireGuard (pre script): ONE `wg show IFACE dump` through an awk that drops the private key on the node (it never
 *   reaches a variable) and masks preshared keys, for the `pubkey`, `port` and `dump` sections (three `wg` runs
 *   before); the UDP counters are read by the shell (two `grep` before);
 * - iproute2: ONE `ip -j -force -batch -` for `addr show dev IFACE` and every peer's `route get IP` (one `ip` per
 *   peer before: 31 per node at 32 nodes);
 * - the wg-quick file: its size comes from the awk that counts its key lines (no `wc -c`, no `head -c` below the cap);
 * - the ruleset: `nft -j list ruleset` first; iptables-nft-save only when nftables holds a table iptables-nft would
 *   print (an `ip` table named filter, nat, mangle, raw or security) or the JSON is not what is expected; the relay
 *   check's `iptables -S` lines are derived from the iptables-save text already read (relayIptablesFromSave) and
 *   its `nft list table` runs only when the JSON names meshctl's table.
 * Whenever the one read does not give a section's answer (a command failed, a line is missing, the output is not the
 * shape expected, a part hit the size cap), the section runs the shared definition's own command instead, so the
 * answer, its error text included, is the one the shared definition gives. The answers are compared on captures of
 * lab nodes, healthy and drifted (test/unit/checklist-lean.test.ts).
 * Sections share one shell (../facts/sections.ts): helpers are shell functions each section defines again and
 * fills once per script (`mc_` names).
 */
import { sh } from '../remote/shell.js';
import { peerDumpCommand, wireguardPaths } from '../remote/wireguard.js';
import {
  CONFIG_TEXT_CUT_NOTE,
  CONFIG_TEXT_MAX_BYTES,
  FACTS,
  filteredConfigCommand,
  routeLookupFact,
  routeSectionName,
  type FactContext,
  type FactDef,
} from '../facts/definitions.js';
import { relayNftTableName } from '../render/relay.js';
import { beginMarker, endMarker, sectionScript } from '../facts/sections.js';
import { COUNTERS_COMMAND, COUNTERS_READ, UDP_COUNTERS_FACT } from './cold-start.js';
import { NFT_FIRST_FIREWALL } from '../facts/lean.js';
import { RELAY_FACT } from './relay-check.js';

const TAB = '\t';
/** `mc_nl`: a newline, for parameter expansions that cut at line ends. */
const NL = "mc_nl='\n'";

/** The fact `def` with a leaner command: same section name, same parser. */
const lean = <T>(def: FactDef<T>, command: (ctx: FactContext) => string): FactDef<T> => ({ ...def, command });

/** A plain token (interface name, IPv4 address) that may stand in a quoted here-document and a case pattern. */
function token(value: string): string {
  if (!/^[\w.:-]+$/.test(value)) throw new Error(`not a plain token: ${value}`);
  return value;
}

// ---------------------------------------------------------------------------------------------------------------
// Pre script: clock, live key, listen port, peers, UDP counters

/**
 * `mc_wgr`: ONE `wg show IFACE dump` into `mc_wgi` (its interface line as `PUBLIC-KEY<TAB>LISTEN-PORT`; the private
 * key is dropped by the awk on the node) and `mc_wgp` (the peer lines as peerDumpCommand prints them, preshared keys
 * masked the same way). Both empty when wg could not read the interface.
 */
const wgRead = (iface: string) =>
  [
    NL,
    'mc_wgr() {',
    '  [ -n "${mc_wg_done:-}" ] && return 0; mc_wg_done=1; mc_wgi=; mc_wgp=; mc_wgd=',
    `  command -v wg >/dev/null 2>&1 && mc_wgd=$(wg show ${token(iface)} dump 2>/dev/null | awk 'BEGIN { FS = OFS = "\\t" } NR == 1 { print $2, $3; next } { if ($2 != "(none)") $2 = "(hidden)"; print }')`,
    '  [ -n "$mc_wgd" ] || return 0',
    '  mc_wgi=${mc_wgd%%"$mc_nl"*}',
    '  case $mc_wgd in *"$mc_nl"*) mc_wgp=${mc_wgd#*"$mc_nl"} ;; esac',
    '}',
    'mc_wgr',
  ].join('\n');

/** The lean pre facts, by the name of the shared definition they replace. */
export const LEAN_PRE_FACTS = {
  interfacePublicKey: lean(
    FACTS.interfacePublicKey,
    (ctx) =>
      `${wgRead(ctx.interface)}\nif [ -n "$mc_wgi" ]; then printf '%s\\n' "\${mc_wgi%%${TAB}*}"; else ${FACTS.interfacePublicKey.command(ctx)}; fi`,
  ),
  interfaceListenPort: lean(
    FACTS.interfaceListenPort,
    (ctx) =>
      `${wgRead(ctx.interface)}\nif [ -n "$mc_wgi" ]; then printf '%s\\n' "\${mc_wgi#*${TAB}}"; else ${FACTS.interfaceListenPort.command(ctx)}; fi`,
  ),
  peers: lean(
    FACTS.peers,
    (ctx) =>
      `${wgRead(ctx.interface)}\nif [ -n "$mc_wgi" ]; then [ -z "$mc_wgp" ] || printf '%s\\n' "$mc_wgp"; else ${peerDumpCommand(ctx.interface)}; fi`,
  ),
  // the lines COUNTERS_COMMAND's two greps print, read by the shell
  udpCounters: lean(UDP_COUNTERS_FACT, () => COUNTERS_READ),
} satisfies Record<string, FactDef<unknown>>;

/** The counters command the lean fact replaces (kept for the tests that compare the two). */
export { COUNTERS_COMMAND };

// ---------------------------------------------------------------------------------------------------------------
// Checklist

/**
 * The shell variable that holds the batch's `route get` line for `ip` (mc_ipr): `.` and `:` spelt `_` and `x`, so
 * no two addresses share a name (neither letter is a hex digit).
 */
export const routeLineVar = (ip: string): string => `mc_rt_${token(ip).replace(/\./g, '_').replace(/:/g, 'x')}`;

/**
 * `mc_vn ADDR`: sets `mc_v` to the shell variable of ADDR's `route get` line (routeLineVar's name, made by the shell
 * with builtins: `.` and `:` spelt `_` and `x`). ADDR must be a plain address (hex digits, `.` and `:`).
 */
const VAR_NAME_FN = [
  'mc_vn() { mc_d=$1; mc_v=mc_rt_',
  '  while :; do case $mc_d in *[.:]*) mc_s=${mc_d%%[.:]*}; mc_d=${mc_d#"$mc_s"}; case $mc_d in .*) mc_v=${mc_v}${mc_s}_ ;; *) mc_v=${mc_v}${mc_s}x ;; esac; mc_d=${mc_d#?} ;; *) mc_v=$mc_v$mc_d; break ;; esac; done; }',
].join('\n');

/**
 * `mc_ips`: the peers' addresses, written ONCE in a node's script, separated by spaces (each a plain token: no
 * quoting, no glob character, so the shell's field splitting reads them back). The batch of mc_ipr and the route
 * loop (routeLoop) both read it: the script grows by an address per peer, not by a section (264 bytes) per peer.
 */
export const peerListLine = (peerIps: readonly string[]): string => `mc_ips='${peerIps.map(token).join(' ')}'`;

/**
 * `mc_ipr`: ONE `ip -j -force -batch -` for `addr show dev IFACE` and `route get IP` of every peer in `mc_ips`
 * (printf's format used again for each address: no loop, no process per peer; each command prints its JSON on a
 * line of its own; one that fails prints nothing there, its error goes to /dev/null, and its section then runs the
 * command alone), then each line read ONCE: the interface's into `mc_ipa`, each route's into the variable of its
 * `dst` (routeLineVar, named by mc_vn), so a section takes its line without searching the batch's text.
 * Issue 10: each section used to cut its line out of the whole text with `${text#*"$1"}`, which dash matches in
 * time quadratic in the text's length: O(N^3) per node over N peers, 0.3 s of CPU per node at 32 nodes, 2.5 s at 64.
 * A `dst` that is not a plain address (hex digits, `.` and `:`) is left unnamed: its section runs its command alone.
 * `listed`: the script defines `mc_ips` itself (checklistScript: once, for the route loop too); otherwise the
 * addr section defines it.
 */
const ipRead = (iface: string, peerIps: readonly string[], listed: boolean) =>
  [
    NL,
    ...(listed ? [] : [peerListLine(peerIps)]),
    VAR_NAME_FN,
    'mc_ipr() {',
    '  [ -n "${mc_ip_done:-}" ] && return 0; mc_ip_done=1; mc_ipa=',
    `  mc_ipj=$( { echo 'addr show dev ${token(iface)}'; [ -z "$mc_ips" ] || printf 'route get %s\\n' $mc_ips; } | ip -j -force -batch - 2>/dev/null); true`,
    '  while IFS= read -r mc_l; do',
    `    case $mc_l in *'"ifname":"${token(iface)}",'*) [ -n "$mc_ipa" ] || mc_ipa=$mc_l; continue ;; *'"dst":"'*) ;; *) continue ;; esac`,
    `    mc_d=\${mc_l#*'"dst":"'}; mc_d=\${mc_d%%'"'*}`,
    '    case $mc_d in "" | *[!0-9A-Fa-f.:]*) continue ;; esac',
    '    mc_vn "$mc_d"',
    // the first line of an address counts, as a search from the start would find it
    String.raw`    eval "mc_x=\${$mc_v:-}"; [ -n "$mc_x" ] || eval "$mc_v=\$mc_l"`,
    '  done <<MC_EOF',
    '$mc_ipj',
    'MC_EOF',
    '}',
    'mc_ipr',
  ].join('\n');

/** The addr fact: the batch's line for the interface, else `ip -j addr show dev IFACE` alone. */
const leanAddr = (peerIps: readonly string[], listed: boolean): FactDef<ReturnType<typeof FACTS.interfaceAddr.parse>> =>
  lean(
    FACTS.interfaceAddr,
    (ctx) =>
      `${ipRead(ctx.interface, peerIps, listed)}\nif [ -n "$mc_ipa" ]; then printf '%s\\n' "$mc_ipa"; else ${FACTS.interfaceAddr.command(ctx)}; fi`,
  );

/**
 * One peer's route lookup: the batch's line for it (read by mc_ipr), else `ip -j route get IP` alone. The batch is
 * read by the addr section (defined once there: the peers' list in every route section would grow the script as
 * N^2); without it before, each lookup runs alone.
 */
const leanRoute = (ip: string) => {
  const def = routeLookupFact(ip);
  const line = routeLineVar(ip);
  return lean(
    def,
    (ctx) => `if [ -n "\${mc_ip_done:-}" ] && [ -n "\${${line}:-}" ]; then printf '%s\\n' "$${line}"; else ${def.command(ctx)}; fi`,
  );
};

/*
 * The unit's state stays two systemctl runs (FACTS.service): `systemctl show -p UnitFileState` answers from the
 * manager's cache, so a wants symlink removed without daemon-reload still shows `enabled` there while is-enabled,
 * which reads the unit files, says `disabled` (captured: test/fixtures/probes/issue10/drifted-home-1.systemctl.txt)
 * and the service check must warn.
 */

/**
 * confmeta with the file's size too (`bytes=`, from the awk that counts the key lines: the sum of its lines' lengths
 * plus one newline each, one more than the size when the last line has no newline), kept in `mc_cb` for `conf`.
 * The parser reads no `bytes=` key.
 */
const leanConfigMeta = lean(FACTS.configMeta, (ctx) => {
  const f = wireguardPaths(ctx.interface).config;
  const count =
    '{ b += length($0) + 1; l = tolower($0) } l ~ /^[[:space:]]*privatekey/ { p++ } l ~ /^[[:space:]]*presharedkey/ { s++ } END { printf "privatekeylines=%d\\npresharedkeylines=%d\\nbytes=%d\\n", p, s, b }';
  return sh`mc_cb=; if [ -f ${f} ]; then echo exists=yes; mc_sha=$(sha256sum < ${f}) && echo "sha256=\${mc_sha%% *}"; mc_cm=$(awk ${count} ${f}); printf '%s\\n' "$mc_cm"; mc_cb=\${mc_cm##*bytes=}; else echo exists=no; fi`
    .text;
});

/**
 * conf without `wc -c` and `head -c` when the file is under the cap (the size from confmeta; `wc -c` confirms a size
 * over it, as the shared command reads it); over the cap, the shared command's cut and note.
 */
const leanConfigText = lean(FACTS.configText, (ctx) => {
  const p = wireguardPaths(ctx.interface);
  const max = CONFIG_TEXT_MAX_BYTES;
  const filter = filteredConfigCommand(p.config, p.privateKey);
  return [
    `mc_cf() { ${filter}; }`,
    sh`if [ -f ${p.config} ]; then case \${mc_cb:-x} in *[!0-9]*) mc_cb=$(wc -c < ${p.config}) ;; esac`.text,
    sh`if [ "\${mc_cb:-0}" -gt ${max} ] && [ "$(wc -c < ${p.config})" -gt ${max} ]; then mc_cf | head -c ${max}; printf '\\n%s\\n' ${CONFIG_TEXT_CUT_NOTE}; else mc_cf; fi`
      .text,
    'fi; true',
  ].join('\n');
});

/**
 * relay as RELAY_FACT prints it, but: with the nf_tables backend and its iptables-save text whole in fwrules
 * (`mc_ipt_ok`), the node prints `ipt-from=fwrules` instead of running `iptables -S` (the lines are taken from that
 * text: relayIptablesFromSave); `nft list table` runs only when nft's whole JSON names meshctl's table (or is not
 * whole). Run alone (no fwrules before it), it runs both commands as RELAY_FACT does.
 */
const leanRelay = lean(RELAY_FACT, (ctx) => {
  const shared = RELAY_FACT.command(ctx).split('; if command -v ');
  // shared: [forwarding read, 'iptables ... fi', 'nft ... fi; true']
  const [forwarding, iptables, nftAndTrue] = shared as [string, string, string];
  const nft = nftAndTrue.replace(/; true$/, '');
  const table = token(relayNftTableName(ctx.interface));
  return [
    forwarding,
    `if [ -n "\${mc_ipt_ok:-}" ]; then command -v iptables >/dev/null 2>&1 && echo ipt-from=fwrules; else if command -v ${iptables}; fi`,
    `if [ -n "\${mc_nj_ok:-}" ]; then case $mc_nj in *'"${table}"'*) if command -v ${nft} ;; esac; else if command -v ${nft}; fi`,
    'true',
  ].join('\n');
});

/**
 * One peer's route section with the shared definition's command (`lean` false: the `shared` checklist of the
 * captures that compare the two) or the lean one (leanRoute: its own section per peer, as checklistScript wrote them
 * before routeLoop; kept for the tests that compare the two): the same text in every node's script that has the
 * peer, so made once per address and kept. The command reads no FactContext. The cache is emptied when it holds
 * ROUTE_SECTIONS_KEPT texts (a long-lived process verifying many meshes).
 */
export function routeSection(ip: string, lean: boolean): string {
  const cache = lean ? leanRouteSections : sharedRouteSections;
  let text = cache.get(ip);
  if (text === undefined) {
    const def = lean ? leanRoute(ip) : routeLookupFact(ip);
    text = sectionScript(def.name, def.command(NO_CONTEXT));
    routeSectionStats.made++;
    if (cache.size >= ROUTE_SECTIONS_KEPT) cache.clear();
    cache.set(ip, text);
  }
  return text;
}

const ROUTE_SECTIONS_KEPT = 65_536;
/** Counts of work, for tests: `made`, the route sections routeSection has written (not taken from its cache). */
export const routeSectionStats = { made: 0 };
const leanRouteSections = new Map<string, string>();
const sharedRouteSections = new Map<string, string>();
/** What a route command is given: it reads none of it. */
const NO_CONTEXT: FactContext = { interface: '', listenPort: 0 };

/**
 * Every peer's route section (`route:IP`, routeSectionName) as ONE loop over the addresses, written once per script
 * whatever the peers: `ips` in the script's text, or (undefined) the `mc_ips` list the script defined
 * (peerListLine). Each pass prints, byte for byte, what leanRoute's own section printed: the begin marker, the batch's
 * line for the address (mc_ipr's variable, named by mc_vn) or else `ip -j route get IP` alone with its error, and the
 * end marker with that command's status (sectionScript's format). Shell builtins only: no process per peer, unless its
 * lookup runs alone. Issue 10: a section per peer was 264 bytes of script per peer, 283 KB per node's first script
 * at 1,000 nodes (N x that sent, and held at once, by verify).
 */
export function routeLoop(ips?: readonly string[]): string {
  const list = ips === undefined ? '$mc_ips' : ips.map(token).join(' ');
  return [
    'mc_rg() { mc_v=; if [ -n "${mc_ip_done:-}" ]; then case $1 in "" | *[!0-9A-Fa-f.:]*) ;; *) mc_vn "$1" ;; esac; fi',
    String.raw`  if [ -n "$mc_v" ] && eval "mc_x=\${$mc_v:-}" && [ -n "$mc_x" ]; then printf '%s\n' "$mc_x"; else ip -j route get "$1"; fi; }`,
    `for mc_a in ${list}; do echo "${beginMarker(routeSectionName(''))}$mc_a"; { mc_rg "$mc_a"; } 2>&1; printf '\\n${endMarker(routeSectionName(''))}%s rc=%s\\n' "$mc_a" "$?"; done`,
  ].join('\n');
}

/**
 * The checklist's facts in their lean form, by section name (the others run as shared). `routes: false` leaves out
 * the per-peer route facts: the script then writes the peers' list (peerListLine) before its sections and their
 * route sections as routeLoop (checklistScript); otherwise the addr section defines the list itself.
 */
export function leanChecklistFacts(peerIps: readonly string[], options: { routes?: boolean } = {}): Map<string, FactDef<unknown>> {
  const defs: Array<FactDef<unknown>> = [
    leanAddr(peerIps, options.routes === false),
    ...(options.routes === false ? [] : peerIps.map(leanRoute)),
    leanConfigMeta,
    leanConfigText,
    NFT_FIRST_FIREWALL,
    leanRelay,
    ...Object.values(LEAN_PRE_FACTS),
  ];
  return new Map(defs.map((d) => [d.name, d]));
}
