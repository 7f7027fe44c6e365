/**
 * The ping phase's session reset (../checks/ping-matrix.ts sessionResets, PingMatrixOptions.resetSessions): before
 * the second round, the dialer of a pair that failed the first clears its WireGuard session with the other end, so
 * that its next echo request starts a fresh handshake instead of waiting for WireGuard's own, KEEPALIVE_TIMEOUT +
 * REKEY_TIMEOUT (15 s) after the deaf end began sending (docs/transport-cost.md, "The cold ping phase at 32 nodes").
 *
 * How: neither wg(8) nor the kernel module nor wireguard-go has a command that drops a peer's keys and keeps the
 * peer, so the peer is removed (`wg set IFACE peer KEY remove`: its keys, handshake state and staged packets go) and
 * added again at once from the node's own wg-quick file by the same sync the enable step runs
 * (../render/systemd.ts syncPeersCommand: it adds what the live interface lacks, keeping the private key in a pipe).
 * Routes via the interface are not the peer's and stay. Nothing else changes: the peer comes back as the file has
 * it, which is what the enable step made live a moment before. The peer is removed only once `wg-quick strip`
 * reads a non-empty file (from which the sync restores it); a failed sync is said on stderr and leaves the peer
 * missing, which the second round's pings and the routes/peers checks after them then fail (nothing is hidden),
 * and the next `up` adds it again.
 */
import { sh } from '../remote/shell.js';
import { syncPeersCommand } from '../render/systemd.js';
import type { DesiredNodeConfig } from '../topology/desired.js';

/**
 * The shell command that clears `config`'s node's sessions with `peers` (inventory node names) as described above;
 * undefined when none of them is a peer of the node's config (nothing to clear).
 * @param config the node's desired config (its interface, key file path and peers' public keys)
 * @param peers the peers whose sessions to clear, by inventory node name
 */
export function sessionResetCommand(config: DesiredNodeConfig, peers: readonly string[]): string | undefined {
  const wanted = new Set(peers);
  const keys = config.peers.filter((p) => wanted.has(p.name)).map((p) => p.publicKey);
  if (keys.length === 0) return undefined;
  const iface = config.interface;
  const said =
    sh`echo ${`meshctl: the session reset of ${iface} could not add its peers back from the file (wg-quick strip, wg show or wg addconf; its message above)`} >&2`
      .text;
  return [
    sh`mc_file=$(wg-quick strip ${iface}) && [ -n "$mc_file" ] && for k in ${keys}; do wg set ${iface} peer "$k" remove; done`.text,
    `{ ${syncPeersCommand(iface, config.privateKeyPath)}; } || ${said}`,
  ].join('\n');
}
