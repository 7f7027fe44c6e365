/**
 * Keeping the private key through a reload.
 *
 * meshctl's wg-quick file holds no PrivateKey (PostUp loads it from the key file on the node). `wg syncconf` given a
 * config without PrivateKey clears the interface's key, and the stock wg-quick@.service reloads with exactly that
 * (`wg syncconf %i <(wg-quick strip %i)`): one `systemctl reload wg-quick@wg0`, the usual advice after editing the
 * file, would silently cut the node off the mesh. So the key is appended on the node, inside a pipe (never in argv),
 * both when meshctl syncs peers and in a drop-in that replaces the unit's ExecReload.
 */
import { raw, sh } from '../remote/shell.js';
import { peerDumpCommand } from '../remote/wireguard.js';
import { privateKeyPathFor } from '../topology/desired.js';

/**
 * The shell command that syncs the interface with its file plus the key file. It stops before `wg syncconf` when
 * `wg-quick strip` fails, as syncconf given only the key would remove every peer.
 */
export function syncconfKeepingKeyCommand(iface: string, privateKeyPath: string): string {
  // the drop-in passes %i and /etc/wireguard/%i.key: words the quoting leaves bare, so systemd still expands them
  return sh`stripped=$(wg-quick strip ${iface}) && { echo "$stripped"; echo "[Interface]"; printf "PrivateKey = "; cat ${privateKeyPath}; } | wg syncconf ${iface} /dev/stdin`
    .text;
}

/** The line between the live values and the stripped config in SYNC_FILTER_AWK's input. */
const SYNC_MARK = '--meshctl-sync--';

/**
 * The awk program of syncPeersCommand. Input: the live listen port (one line, `wg show IFACE listen-port`), the live
 * peers (peerDumpCommand: `KEY PSK ENDPOINT ALLOWED-IPS HANDSHAKE RX TX KEEPALIVE`, tab-separated, the preshared
 * key masked), a line SYNC_MARK, then `wg-quick strip IFACE`. Output, for `wg addconf`:
 * - the [Interface] lines, without ListenPort when it equals the live port;
 * - each [Peer] block that is new or differs from its live peer (AllowedIPs as a set, Endpoint when the file has
 *   one, PersistentKeepalive, a preshared key); a block the live peer already matches is left out. When the live peer
 *   has a keepalive or preshared key the block lacks, `PersistentKeepalive = off` / an all-zero PresharedKey is
 *   added, as `wg syncconf` does;
 * - `-remove KEY` for every live peer the file does not have.
 * POSIX awk (mawk, gawk, busybox).
 */
const SYNC_FILTER_AWK = [
  'function trim(s) { sub(/^[ \\t]+/, "", s); sub(/[ \\t]+$/, "", s); return s }',
  'function flush(  i, same, c) {',
  '  if (!inpeer) return',
  '  inpeer = 0; seen[key] = 1',
  '  same = (key in ips) && !psk && nips == ips[key]',
  '  if (same) for (c in want) if (!((key SUBSEP c) in live)) same = 0',
  '  if (same && ep != "" && ep != eps[key]) same = 0',
  '  if (ka == "" && (key in kas) && kas[key] != "off") { line[++nl] = "PersistentKeepalive = off"; same = 0 }',
  '  if (ka != "" && ka != kas[key]) same = 0',
  '  if (!psk && (key in pskd) && pskd[key] != "(none)") { line[++nl] = "PresharedKey = " ZERO; same = 0 }',
  '  if (!same) for (i = 1; i <= nl; i++) print line[i]',
  '  nl = 0; nips = 0; key = ""; ep = ""; ka = ""; psk = 0; split("", want)',
  '}',
  'BEGIN { ZERO = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=" }',
  'part == 0 && NR == 1 { port = $1; next }',
  `part == 0 && $0 == "${SYNC_MARK}" { part = 1; next }`,
  'part == 0 {',
  '  split($0, f, "\\t"); k = f[1]; pskd[k] = f[2]; eps[k] = f[3]; kas[k] = (f[8] == "0" ? "off" : f[8]); ips[k] = 0',
  '  if (f[4] != "(none)") { m = split(f[4], parts, ","); for (j = 1; j <= m; j++) { live[k SUBSEP parts[j]] = 1; ips[k]++ } }',
  '  next',
  '}',
  '{',
  '  s = $0; eq = index(s, "=")',
  '  k = tolower(trim(eq ? substr(s, 1, eq - 1) : s)); v = eq ? trim(substr(s, eq + 1)) : ""',
  '  if (k ~ /^\\[/) { flush(); section = k; if (k == "[peer]") inpeer = 1 }',
  '  if (!inpeer) { if (!(section == "[interface]" && k == "listenport" && v == port)) print s; next }',
  '  line[++nl] = s',
  '  if (k == "publickey") key = v',
  '  else if (k == "endpoint") ep = v',
  '  else if (k == "persistentkeepalive") ka = (v == "0" ? "off" : v)',
  '  else if (k == "presharedkey") psk = 1',
  '  else if (k == "allowedips") { m = split(v, parts, ","); for (j = 1; j <= m; j++) { c = trim(parts[j]); if (c != "" && !(c in want)) { want[c] = 1; nips++ } } }',
  '}',
  'END { flush(); for (k in ips) if (!(k in seen)) print "-remove " k }',
].join('\n');

/**
 * The shell command meshctl runs to sync a live interface with its file, the way `wg syncconf` would (new peers
 * added, changed ones set, peers the file lacks removed), keeping the private key as syncconfKeepingKeyCommand
 * does, and without touching a peer the interface already runs as the file says.
 *
 * Why not `wg syncconf`: wg(8)'s config parser marks EVERY [Peer] of a file "replace allowed IPs" (config.c), and
 * syncconf sends ListenPort whenever the file has one. wireguard-go handles `replace_allowed_ips` by removing the
 * peer's CIDRs and inserting them again one UAPI line later (device/uapi.go), and any `listen_port` by closing and
 * re-opening its UDP sockets even when the port is the same (device.BindUpdate); the kernel module compares the
 * port but has the same remove-then-insert window for AllowedIPs. A packet to or from an UNCHANGED peer that falls
 * in either window is lost: a CI run lost one echo request of a ping loop while a fifth node was added. So the file
 * is compared on the node, at the moment of the sync, with the live interface (SYNC_FILTER_AWK), and only what
 * differs goes to `wg addconf`, which removes nothing; the peers to remove go to `wg set IFACE peer KEY remove`,
 * after the additions so that a CIDR moving to another peer is never without one. Stops before changing anything
 * when a step fails or the stripped file is empty (every live peer would be removed).
 * Its exit status: 0 exactly when the live interface is the file's now (synced, or nothing differed) and non-zero
 * when any step failed (`wg-quick strip`, an empty stripped file, reading the live interface, `wg addconf`, any
 * `wg set ... remove`, every remove tried): the revert counts that as not reverted (a reviewer's finding RV-6: a
 * failed sync said `reverted`). It is one AND-OR list, and `set -e` ignores a failure inside one (POSIX sh, "set
 * -e": except the last command of the list): a script that must stop on it runs syncPeersStep.
 * @param iface the WireGuard interface (wg-quick's name)
 * @param privateKeyPath the key file on the node: its content goes into the pipe, never into argv or a variable
 */
export function syncPeersCommand(iface: string, privateKeyPath: string): string {
  const dump = raw(peerDumpCommand(iface));
  const plan =
    sh`stripped=$(wg-quick strip ${iface}) && [ -n "$stripped" ] && live=$(wg show ${iface} listen-port && ${dump}) && plan=$(printf '%s\\n' "$live" ${SYNC_MARK} "$stripped" | awk ${SYNC_FILTER_AWK})`
      .text;
  const send =
    sh`{ printf '%s\\n' "$plan" | sed '/^-remove /d'; echo "[Interface]"; printf "PrivateKey = "; cat ${privateKeyPath}; } | wg addconf ${iface} /dev/stdin`
      .text;
  const removed = sh`$(printf '%s\\n' "$plan" | sed -n 's/^-remove //p')`.text;
  // every remove is tried, and any that failed fails the whole
  return `${plan} && { [ -z "$plan" ] || { ${send} && mc_rm=0 && for k in ${removed}; do ${sh`wg set ${iface} peer "$k" remove`.text} || mc_rm=1; done && [ $mc_rm = 0 ]; }; }`;
}

/**
 * syncPeersCommand as a step of a `set -e` script (the enable step, rotate-keys' peer update): a failed sync ends the
 * script with status 1 and says so on stderr, where the bare AND-OR list would let the script go on and report the
 * step done with the live peers unchanged (`set -e` ignores a failure before the last command of such a list).
 * @param iface the WireGuard interface (wg-quick's name)
 * @param privateKeyPath the key file on the node (its path only)
 */
export function syncPeersStep(iface: string, privateKeyPath: string): string {
  const said =
    sh`echo ${`meshctl: the peer sync of ${iface} failed (wg-quick strip, wg show, wg addconf or wg set ... remove; its message above)`} >&2`
      .text;
  return `${syncPeersCommand(iface, privateKeyPath)} || { ${said}; exit 1; }`;
}

/**
 * The shell command that makes the routes via `iface` exactly one per peer AllowedIPs entry (IPv4), what wg-quick
 * adds when it brings the interface up and what `wg syncconf` / syncPeersCommand do not touch: each wanted route
 * `ip -4 route replace`d, and every `proto boot scope link` route via the interface that is not wanted deleted
 * (`ip route show` prints a host route without its /32, so a route is wanted in either spelling). The enable step's
 * 'peers' path and the revert's peers-only path (../engine/revert.ts) both run it after syncPeersCommand.
 * @param peerRoutes the routes (CIDRs) as planned; undefined: read on the node from the live interface
 * (`wg show IFACE allowed-ips`, after the sync), as a revert must, whose restored file is known only there
 */
export function syncPeerRoutesCommand(iface: string, peerRoutes?: readonly string[]): string {
  const prune = (wanted: string) =>
    `${sh`ip -4 route show dev ${iface} proto boot scope link | cut -d' ' -f1 | while read r; do case`.text} ${wanted} ${sh`in *" $r "*) ;; *) ip -4 route del "$r" dev ${iface};; esac; done`.text}`;
  if (peerRoutes) {
    const wanted = peerRoutes.flatMap((r) => (r.endsWith('/32') ? [r, r.slice(0, -3)] : [r])).join(' ');
    return [sh`for r in ${[...peerRoutes]}; do ip -4 route replace "$r" dev ${iface}; done`.text, prune(sh`${` ${wanted} `}`.text)].join(
      '\n',
    );
  }
  return [
    // one word per IPv4 CIDR of any peer ("(none)" for a peer without; IPv6 ones have a colon)
    sh`mc_routes=$(wg show ${iface} allowed-ips | cut -f2- | tr ' \\t' '\\n\\n' | grep -v -e '^$' -e '(none)' -e ':') || mc_routes=`.text,
    'mc_wanted=; for r in $mc_routes; do mc_wanted="$mc_wanted $r ${r%/32}"; done',
    sh`for r in $mc_routes; do ip -4 route replace "$r" dev ${iface}; done`.text,
    prune('"$mc_wanted "'),
  ].join('\n');
}

export { reloadDropInPath } from '../remote/wireguard.js';

/**
 * The drop-in for wg-quick@IFACE.service. Written for the one interface meshctl manages; the command uses the
 * unit's %i so it reads the same on every node. systemd expands `$$` to `$`, and the command has no `%` of its own.
 */
export function renderReloadDropIn(iface: string): string {
  const command = syncconfKeepingKeyCommand('%i', privateKeyPathFor('%i')).replaceAll('$', '$$$$');
  return [
    `# Managed by meshctl: a reload of ${iface} keeps its private key, which ${iface}.conf does not carry.`,
    '# The stock reload syncs from `wg-quick strip` alone, and that would clear the key.',
    '[Service]',
    'ExecReload=',
    `ExecReload=/bin/bash -c '${command}'`,
    '',
  ].join('\n');
}
