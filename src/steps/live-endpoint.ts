/**
 * One rule for a peer's LIVE endpoint against the design, shared by `up` (../steps/service.ts peerDrift: what it
 * repairs) and `debug` (../debug/classify.ts: what it names as the cause), so that debug's fix `meshctl up` does what
 * it says.
 *
 * WireGuard sets a peer's endpoint to the source address of the latest authenticated packet from it (roaming: the
 * WireGuard paper, Donenfeld, "WireGuard: Next Generation Kernel Network Tunnel", section 2.1 "Endpoints & Roaming"). A NAT changes that source
 * in two ways only:
 * - the PEER is behind a NAT (its site is nat/lan, the viewer elsewhere): its router rewrites the source address and
 *   port of the peer's packets, so the viewer roams to the router's mapping, which may be any port (and, with a node's
 *   own `endpoint` or a NAT with several addresses, another address) than the designed forward;
 * - only the VIEWER is behind a NAT (the peer is public): its router never changes the peer's address; it may only
 *   rewrite the source port of the peer's inbound flow when it clashes with the viewer's own outbound mapping
 *   (../topology/desired.ts, throughNat).
 * Everything else (an address a NAT cannot produce, any difference on a path without NAT) was set by hand or by a
 * mistake, and is repaired. A NAT-roamed endpoint is kept while a session lives on it (it is where the peer's packets
 * come from now); once the latest handshake is older than REJECT_AFTER_TIME (180 s: no key of that session is used
 * any more, ../remote/wireguard.ts, as the re-resolve timer's RERESOLVE_STALE_S), nothing vouches for the mapping and
 * the design's endpoint is where the peer is reachable: setting it then moves no session that still carries traffic,
 * and a peer that dials out again is roamed to at its next packet.
 */
import type { LivePeer } from '../render/wgdump.js';
import type { DesiredPeer } from '../topology/desired.js';
import { endpointIsName } from '../render/reresolve.js';
import { REJECT_AFTER_TIME_S } from '../remote/wireguard.js';

/** Seconds after which a roamed endpoint's latest handshake no longer vouches for it: REJECT_AFTER_TIME. */
export const ROAMED_ENDPOINT_STALE_S = REJECT_AFTER_TIME_S;

/**
 * How a live endpoint stands against the design (`why` says why, in words):
 * - 'as-designed': equal, or nothing to compare (the peer dials in: no Endpoint designed);
 * - 'by-name': the design dials a DNS name, live is the address it resolved to (the re-resolve timer checks it);
 * - 'roamed': a NAT on the path may have produced it and a session lives on it: kept;
 * - 'stale': a NAT may have produced it, but no session lives on it (or none ever did): up sets the design's
 *   endpoint again; it is no cause of a broken pair (the NATed side's next packet that arrives roams it back);
 * - 'wrong': no NAT can have produced it (set by hand, or a mistake): up sets the design's endpoint again, and it
 *   is a cause (this node sends where the peer is not).
 */
export type LiveEndpointVerdict = { verdict: 'as-designed' | 'by-name' } | { verdict: 'roamed' | 'stale' | 'wrong'; why: string };

/** True when up sets the designed endpoint again (peerDrift). */
export const endpointRepaired = (v: LiveEndpointVerdict): v is { verdict: 'stale' | 'wrong'; why: string } =>
  v.verdict === 'stale' || v.verdict === 'wrong';

/** 'host:port' or '[v6]:port' into its host (without brackets) and port; undefined when it is neither. */
export function splitEndpoint(endpoint: string): { host: string; port: number } | undefined {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(endpoint) ?? /^([^:]+):(\d+)$/.exec(endpoint);
  return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
}

/**
 * Judges `have.endpoint` against `want.endpoint` by the rule above.
 * @param now the node's clock (Unix seconds) when `have` was read; without it a NAT-roamed endpoint is kept (its
 * session cannot be judged), every other difference is still repaired
 */
export function judgeLiveEndpoint(want: DesiredPeer, have: LivePeer, now?: number): LiveEndpointVerdict {
  if (want.endpoint === undefined || have.endpoint === want.endpoint) return { verdict: 'as-designed' };
  if (have.endpoint === undefined) return { verdict: 'wrong', why: 'no endpoint live: the config was not applied' };
  if (endpointIsName(want.endpoint)) return { verdict: 'by-name' };
  if (!want.natRoams) return { verdict: 'wrong', why: 'no NAT between them changes it' };
  const designed = splitEndpoint(want.endpoint);
  const live = splitEndpoint(have.endpoint);
  if (want.natRoams === 'port' && designed && live && designed.host !== live.host)
    return { verdict: 'wrong', why: `${want.name} is public: no NAT changes its address` };
  const age = now !== undefined && have.latestHandshake !== undefined ? Math.max(0, now - have.latestHandshake) : undefined;
  const by = want.natRoams === 'address' ? `${want.name}'s NAT` : "this node's NAT";
  if (have.latestHandshake === undefined)
    return { verdict: 'stale', why: 'no handshake ever: nothing vouches for it, the design says where the peer is reachable' };
  if (age === undefined || age < ROAMED_ENDPOINT_STALE_S) return { verdict: 'roamed', why: `roamed through ${by}, session live` };
  return {
    verdict: 'stale',
    why: `roamed through ${by} but no handshake for ${age} s (over ${ROAMED_ENDPOINT_STALE_S} s): nothing answers there, the design says where the peer is reachable`,
  };
}
