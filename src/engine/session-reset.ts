/**
 * The ping phase's session reset (../checks/ping-matrix.ts sessionResets, PingMatrixOptions.resetSessions): before
 * the round (a pair whose first contact got no answer) and before the second round (a pair that failed the first),
 * the pair's dialer clears its WireGuard session with the other end, so that its next echo request starts a fresh handshake instead of waiting for WireGuard's own, KEEPALIVE_TIMEOUT +
 * REKEY_TIMEOUT (15 s) after the deaf end began sending (docs/transport-cost.md, "The cold ping phase at 32 nodes").
 *
 * How: neither wg(8) nor the kernel module nor wireguard-go has a command that drops a peer's keys and keeps the
 * peer, so the peer is removed (`wg set IFACE peer KEY remove`: its keys, handshake state and staged packets go) and
 * added again at once with `wg addconf` from its own [Peer] block of the node's wg-quick file (`wg-quick strip`).
 * Only those blocks: the enable step's full sync (../render/systemd.ts syncPeersCommand) would also set back every
 * other peer whose live endpoint WireGuard has roamed from the file's, which would touch working pairs. `wg addconf`
 * without an [Interface] section leaves the private key as it is, so no key is read. Routes via the interface are
 * not the peer's and stay. The peers are removed only once every one of their blocks was read from the file; a
 * failed `wg addconf` is said on stderr and leaves the peer missing, which the second round's pings and the
 * routes/peers checks after them then fail (nothing is hidden), and the next `up` adds it again.
 */
import { sh } from '../remote/shell.js';
import type { DesiredNodeConfig } from '../topology/desired.js';

/**
 * The shell command that clears `config`'s node's sessions with `peers` (inventory node names) as described above;
 * undefined when none of them is a peer of the node's config (nothing to clear).
 * @param config the node's desired config (its interface and its peers' public keys)
 * @param peers the peers whose sessions to clear, by inventory node name
 */
export function sessionResetCommand(config: DesiredNodeConfig, peers: readonly string[]): string | undefined {
  const wanted = new Set(peers);
  const keys = config.peers.filter((p) => wanted.has(p.name)).map((p) => p.publicKey);
  if (keys.length === 0) return undefined;
  const iface = config.interface;
  const said = sh`echo ${`meshctl: the session reset of ${iface} could not add its peers back (wg addconf; its message above)`} >&2`.text;
  // each [Peer] block of the file whose PublicKey is one of the keys (the awk fails unless every key had one), then
  // the removes and the blocks back, as one AND-OR list: nothing is removed unless the blocks were read
  const blocks = sh`mc_blocks=$(wg-quick strip ${iface} | awk -v keys=${` ${keys.join(' ')} `} ${BLOCKS_AWK}) && [ -n "$mc_blocks" ]`.text;
  const removes = sh`for k in ${keys}; do wg set ${iface} peer "$k" remove; done`.text;
  const addBack = sh`printf '%s\\n' "$mc_blocks" | wg addconf ${iface} /dev/stdin`.text;
  return `${blocks} && { ${removes}; ${addBack} || ${said}; }`;
}

/**
 * awk: the [Peer] blocks of a wg-quick file (as `wg-quick strip` prints it) whose PublicKey is in `keys` (one string,
 * each key between spaces); exits 1 unless every key had a block. POSIX awk (mawk, gawk, busybox).
 */
const BLOCKS_AWK = [
  String.raw`function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }`,
  'function flush(  i) { if (want) { for (i = 1; i <= n; i++) print line[i]; found++ } n = 0; want = 0 }',
  'BEGIN { wanted = split(trim(keys), unused, " ") }',
  String.raw`/^[ \t]*\[/ { flush(); inpeer = (tolower(trim($0)) == "[peer]") }`,
  'inpeer { line[++n] = $0; eq = index($0, "="); if (eq && tolower(trim(substr($0, 1, eq - 1))) == "publickey" && index(keys, " " trim(substr($0, eq + 1)) " ")) want = 1 }',
  'END { flush(); exit found == wanted ? 0 : 1 }',
].join('\n');
