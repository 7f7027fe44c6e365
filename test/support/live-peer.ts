/**
 * A live peer as `wg show all dump` reads back (../../src/render/wgdump.ts LivePeer) for a designed peer: no preshared
 * key, one byte each way, at `endpoint` (none when undefined) with its latest handshake at `latestHandshake` (Unix s).
 * The moved-address tests build a mesh's live view from the design with it.
 */
import type { LivePeer } from '../../src/render/wgdump.js';

export function livePeerOf(
  peer: { publicKey: string; allowedIps: string[] },
  endpoint: string | undefined,
  latestHandshake: number,
): LivePeer {
  return {
    publicKey: peer.publicKey,
    hasPresharedKey: false,
    ...(endpoint ? { endpoint } : {}),
    allowedIps: peer.allowedIps,
    latestHandshake,
    rxBytes: 1,
    txBytes: 1,
  };
}
