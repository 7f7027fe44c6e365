/**
 * Setting peers' endpoints back where WireGuard lost them: peers dialled by DNS name (issue 11, dynamic public
 * addresses) and endpoints roamed to a NAT port that died.
 *
 * wg-quick resolves an `Endpoint = home.example.net:41001` once, when the interface comes up; WireGuard itself never
 * looks the name up again. A home whose dynamic address changes is then dialled at the old address for ever (its
 * own keepalives only fix the pairs where it dials out itself). wireguard-tools' contrib/reresolve-dns/reresolve-dns.sh
 * is the known remedy, but it acts only after a handshake is older than 135 s, which with the timer's interval
 * misses a two-minute promise. So this script compares, every RERESOLVE_INTERVAL_S, the address each name resolves
 * to now with the peer's live endpoint (`wg show IFACE endpoints`) and sets the peer's endpoint by name again
 * (`wg set IFACE peer KEY endpoint HOST:PORT`, wg resolves it) when the live address is none of the name's addresses.
 *
 * WireGuard also roams a peer to wherever its authenticated packets come from, and that can be a port that lives only
 * as long as a NAT router's conntrack entry: behind a DNAT + MASQUERADE router whose own flow to a public peer clashes
 * with the peer's flow to the forward, nf_nat gives the peer's packets a new source port (test/lab/relay.test.ts saw
 * :39600 for :51820); after the router forgets it (a reboot, `conntrack -F`) every packet to that port is lost, and
 * a public peer without keepalive never sends first to show the way back. So, as reresolve-dns.sh does for every
 * endpoint, a peer whose latest handshake is older than RERESOLVE_STALE_S (or never happened) and whose live endpoint
 * (address or port) is not the configured one is set back to the configured one. The port is compared only then:
 * across a NAT WireGuard legitimately roams to the port the peer's packets come from, and a peer with a fresh
 * handshake keeps it (setting it back every 30 s would fight that). The script reads the key-less wg-quick file
 * (PublicKey and Endpoint lines only) and two `wg show` views without keys; it never touches a private key.
 */
import type { DesiredNodeConfig } from '../topology/desired.js';
import { splitEndpoint } from './drift.js';
import { isIpv4 } from '../net/ipv4.js';
import { RERESOLVE_INTERVAL_S, RERESOLVE_STALE_S, reresolvePaths } from '../remote/wireguard.js';

/** The files the timer consists of, as rendered text (the same on every node). */
export interface ReresolveFiles {
  script: string;
  service: string;
  timer: string;
}

/** True for a host WireGuard takes as it is: an IPv4 or IPv6 literal (split from host:port, brackets removed). */
const isAddressLiteral = (host: string) => isIpv4(host) || host.includes(':');

/** Whether a rendered `host:port` endpoint dials a DNS name (not an IPv4 or bracketed IPv6 address). */
export function endpointIsName(endpoint: string): boolean {
  const parsed = splitEndpoint(endpoint);
  return parsed !== undefined && !isAddressLiteral(parsed.host);
}

/** The peers of `config` dialled by DNS name, as `PEER at HOST:PORT`, in peer order. */
export function dialledNames(config: DesiredNodeConfig): string[] {
  return config.peers.flatMap((peer) =>
    peer.endpoint !== undefined && endpointIsName(peer.endpoint) ? [`${peer.name} at ${peer.endpoint}`] : [],
  );
}

/**
 * Whether `config` needs the re-resolve timer: at least one peer has an Endpoint (an address or a name). Any dialled
 * endpoint can be roamed to a NAT port that later dies, and a name can move; a node that dials nobody has nothing to
 * set back (its peers' endpoints come only from their own packets).
 */
export const needsReresolve = (config: DesiredNodeConfig): boolean => config.peers.some((peer) => peer.endpoint !== undefined);

/**
 * The script (POSIX sh; `reresolve-endpoints IFACE [STALE_SECONDS]`, STALE_SECONDS default RERESOLVE_STALE_S). For
 * each [Peer] of /etc/wireguard/IFACE.conf with an Endpoint that the interface has:
 * - a DNS name: resolve it (getent ahosts: every address, either family, as wg-quick's getaddrinfo), and when the live
 *   endpoint's address is not among them, `wg set` the endpoint by name (whatever the handshake);
 * - any endpoint (name or address): when the peer's latest handshake is older than STALE_SECONDS (0, never, counts as
 *   stale) and the live endpoint is not the configured one (address or port), `wg set` it back to the configured one.
 *   A peer with a fresh handshake keeps the endpoint WireGuard roamed it to.
 * Three processes on a node where nothing is to do (`wg show IFACE endpoints`, `latest-handshakes`, one awk that reads
 * the config), plus a getent per distinct name and `date` only when a moved endpoint's age is to be judged. The two
 * `wg show` views instead of one `wg show IFACE dump` (whose first line is the private key) keep the key inside wg.
 * Exits 0 when the interface is down or a name does not resolve (said on stderr, i.e. in the journal): the next run
 * tries again; 2 when STALE_SECONDS is not a number.
 */
export function renderReresolveScript(): string {
  return `#!/bin/sh
# Managed by meshctl (src/render/reresolve.ts). Run by meshctl-reresolve@IFACE.timer every ${RERESOLVE_INTERVAL_S} s.
# Usage: reresolve-endpoints IFACE [STALE_SECONDS]. For each peer of IFACE.conf with an Endpoint:
# - dialled by DNS name: when the live address is none of the name's addresses now, sets the endpoint by name again;
# - any: when its latest handshake is older than STALE_SECONDS (default ${RERESOLVE_STALE_S}, WireGuard's REJECT_AFTER_TIME: no
#   session is left; never counts as stale) and the live endpoint (address or port) is not the configured one, e.g. a
#   port a NAT router gave and then forgot, sets it back to the configured one. A fresh handshake keeps any endpoint.
# Reads only PublicKey and Endpoint lines of IFACE.conf, and \`wg show IFACE endpoints\` and \`latest-handshakes\`.
set -u
iface=\${1:?usage: reresolve-endpoints IFACE [STALE_SECONDS]}
stale=\${2:-${RERESOLVE_STALE_S}}
case $stale in '' | *[!0-9]*) echo "reresolve-endpoints: STALE_SECONDS is not a number: $stale" >&2; exit 2 ;; esac
conf=/etc/wireguard/$iface.conf
[ -r "$conf" ] || exit 0
mc_live=$(wg show "$iface" endpoints 2>/dev/null) || exit 0
mc_handshakes=$(wg show "$iface" latest-handshakes 2>/dev/null) || exit 0
export mc_live mc_handshakes
# one line per peer to judge: "name KEY HANDSHAKE ENDPOINT LIVE", or "ip ..." for an address whose live endpoint differs
todo=$(awk '
  function table(text, into,   n, i, lines, f) {
    n = split(text, lines, "\\n")
    for (i = 1; i <= n; i++) if (split(lines[i], f, "\\t") == 2) into[f[1]] = f[2]
  }
  function peer() {
    if (key != "" && endpoint != "" && (key in live)) {
      if (endpoint ~ /^\\[/ || endpoint ~ /^[0-9.]+:[0-9]+$/) {
        if (live[key] != endpoint) print "ip", key, handshake[key] + 0, endpoint, live[key]
      } else print "name", key, handshake[key] + 0, endpoint, live[key]
    }
    key = ""; endpoint = ""
  }
  BEGIN { table(ENVIRON["mc_live"], live); table(ENVIRON["mc_handshakes"], handshake) }
  { line = $0; sub(/#.*/, "", line); gsub(/[ \\t\\r]/, "", line); lower = tolower(line) }
  line ~ /^\\[/ { peer(); inpeer = lower == "[peer]"; next }
  inpeer && lower ~ /^publickey=/ { key = substr(line, 11) }
  inpeer && lower ~ /^endpoint=/ { endpoint = substr(line, 10) }
  END { peer() }
' "$conf")

now=''
# is_stale HANDSHAKE: true when the latest handshake (epoch seconds, 0 for none) is older than $stale seconds
is_stale() {
  [ -n "$now" ] || now=$(date +%s)
  [ "$1" -eq 0 ] || [ $((now - $1)) -gt "$stale" ]
}
# set_back KEY ENDPOINT HANDSHAKE LIVE
set_back() {
  if [ "$3" -eq 0 ]; then age='no handshake yet'; else age="latest handshake $((now - $3)) s ago"; fi
  if wg set "$iface" peer "$1" endpoint "$2"; then
    echo "$iface: peer $1: $age, live endpoint $4 is not the configured $2: set back"
  fi
}

rhost='' addresses=''
while read -r kind key handshake endpoint live; do
  case $kind in
    ip) if is_stale "$handshake"; then set_back "$key" "$endpoint" "$handshake" "$live"; fi ;;
    name)
      host=\${endpoint%:*}
      port=\${endpoint##*:}
      if [ "$host" != "$rhost" ]; then
        rhost=$host
        addresses=$(getent ahosts "$host" | awk '!seen[$1]++ { printf "%s ", $1 }')
      fi
      if [ -z "$addresses" ]; then
        echo "$iface: $host does not resolve; peer $key keeps its endpoint" >&2
        continue
      fi
      address=\${live%:*}
      address=\${address#[}
      address=\${address%]}
      case " $addresses" in
        *" $address "*)
          if [ "\${live##*:}" != "$port" ] && is_stale "$handshake"; then set_back "$key" "$endpoint" "$handshake" "$live"; fi ;;
        *)
          if wg set "$iface" peer "$key" endpoint "$endpoint"; then
            echo "$iface: $host is now \${addresses% } (live was $live): endpoint of peer $key set again"
          fi ;;
      esac ;;
  esac
done <<EOF
$todo
EOF
exit 0
`;
}

/** The oneshot service the timer starts (a template: %i is the interface). */
export function renderReresolveService(): string {
  const { script } = reresolvePaths('%i');
  return [
    '# Managed by meshctl: re-resolves the DNS names the peers of WireGuard interface %i are dialled at, and sets an',
    `# endpoint back when its handshake is older than ${RERESOLVE_STALE_S} s (run \`${script} %i STALE_SECONDS\` by hand for another age).`,
    '[Unit]',
    'Description=meshctl: re-resolve the endpoints of WireGuard %i peers',
    'After=wg-quick@%i.service network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    `ExecStart=${script} %i`,
    '',
  ].join('\n');
}

/**
 * The timer: first run shortly after it starts, then every RERESOLVE_INTERVAL_S after the previous run;
 * AccuracySec=1s because systemd's default of one minute would spend half the two-minute promise.
 */
export function renderReresolveTimer(): string {
  return [
    `# Managed by meshctl: runs meshctl-reresolve@%i.service every ${RERESOLVE_INTERVAL_S} s.`,
    '[Unit]',
    'Description=meshctl: re-resolve the endpoints of WireGuard %i peers periodically',
    '',
    '[Timer]',
    'OnActiveSec=5s',
    `OnUnitActiveSec=${RERESOLVE_INTERVAL_S}s`,
    'AccuracySec=1s',
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n');
}

/** All three files. */
export const renderReresolveFiles = (): ReresolveFiles => ({
  script: renderReresolveScript(),
  service: renderReresolveService(),
  timer: renderReresolveTimer(),
});
