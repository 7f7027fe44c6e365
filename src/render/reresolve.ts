/**
 * Re-resolving peers dialled by DNS name (issue 11, dynamic public addresses).
 *
 * wg-quick resolves an `Endpoint = home.example.net:41001` once, when the interface comes up; WireGuard itself never
 * looks the name up again. A home whose dynamic address changes is then dialled at the old address for ever (its
 * own keepalives only fix the pairs where it dials out itself). wireguard-tools' contrib/reresolve-dns/reresolve-dns.sh
 * is the known remedy, but it acts only after a handshake is older than 135 s, which with the timer's interval
 * misses a two-minute promise. So this script compares, every RERESOLVE_INTERVAL_S, the address each name resolves
 * to now with the peer's live endpoint (`wg show IFACE endpoints`) and sets the peer's endpoint by name again
 * (`wg set IFACE peer KEY endpoint HOST:PORT`, wg resolves it) only when the live address is none of the name's
 * addresses. The live PORT is not compared: across a NAT WireGuard roams to the port the peer's packets came from,
 * and setting it back every 30 s would fight that. The script reads the key-less wg-quick file (PublicKey and
 * Endpoint lines only); it never touches a private key.
 */
import type { DesiredNodeConfig } from '../topology/desired.js';
import { splitEndpoint } from './drift.js';
import { isIpv4 } from '../net/ipv4.js';
import { RERESOLVE_INTERVAL_S, reresolvePaths } from '../remote/wireguard.js';

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

/** Whether `config` needs the re-resolve timer: at least one peer is dialled by DNS name. */
export const needsReresolve = (config: DesiredNodeConfig): boolean => dialledNames(config).length > 0;

/**
 * The script (POSIX sh; `reresolve-endpoints IFACE`). For each [Peer] of /etc/wireguard/IFACE.conf with a
 * name as Endpoint host: resolve it (getent ahosts: every address, either family, as wg-quick's getaddrinfo),
 * and when the live endpoint's address is not among them, `wg set` the endpoint by name. Exits 0 when the interface
 * is down or a name does not resolve (said on stderr, i.e. in the journal): the next run tries again.
 */
export function renderReresolveScript(): string {
  return `#!/bin/sh
# Managed by meshctl (src/render/reresolve.ts): re-resolves the DNS names WireGuard peers of IFACE are dialled at
# and sets a peer's endpoint again when its live address is none of the name's addresses. Run by
# meshctl-reresolve@IFACE.timer every ${RERESOLVE_INTERVAL_S} s. Reads only PublicKey and Endpoint lines of IFACE.conf.
set -u
iface=\${1:?usage: reresolve-endpoints IFACE}
conf=/etc/wireguard/$iface.conf
[ -r "$conf" ] || exit 0
live=$(wg show "$iface" endpoints 2>/dev/null) || exit 0

check() {
  key=$1 endpoint=$2
  [ -n "$key" ] && [ -n "$endpoint" ] || return 0
  host=\${endpoint%:*} port=\${endpoint##*:}
  case $host in
    *[!0-9.]*) ;;
    *) return 0 ;;
  esac
  case $host in \\[*|*:*) return 0 ;; esac
  addresses=$(getent ahosts "$host" | awk '{ print $1 }' | sort -u)
  if [ -z "$addresses" ]; then
    echo "$iface: $host does not resolve; peer $key keeps its endpoint" >&2
    return 0
  fi
  now=$(printf '%s\\n' "$live" | awk -v k="$key" '$1 == k { print $2 }')
  address=\${now%:*}
  address=\${address#[}
  address=\${address%]}
  if printf '%s\\n' "$addresses" | grep -qxF -- "$address"; then return 0; fi
  if wg set "$iface" peer "$key" endpoint "$host:$port"; then
    # shellcheck disable=SC2086 # the addresses, one per line, joined by spaces
    echo "$iface: $host is now $(echo $addresses) (live was \${now:-none}): endpoint of peer $key set again"
  fi
}

key='' endpoint=''
while IFS= read -r line || [ -n "$line" ]; do
  line=$(printf '%s' "$line" | tr -d ' \\t')
  case $line in
    '['*) check "$key" "$endpoint"; key='' endpoint='' ;;
    PublicKey=*) key=\${line#PublicKey=} ;;
    Endpoint=*) endpoint=\${line#Endpoint=} ;;
  esac
done < "$conf"
check "$key" "$endpoint"
exit 0
`;
}

/** The oneshot service the timer starts (a template: %i is the interface). */
export function renderReresolveService(): string {
  const { script } = reresolvePaths('%i');
  return [
    '# Managed by meshctl: re-resolves the DNS names the peers of WireGuard interface %i are dialled at.',
    '[Unit]',
    'Description=meshctl: re-resolve the DNS names of WireGuard %i peers',
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
    'Description=meshctl: re-resolve the DNS names of WireGuard %i peers periodically',
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
