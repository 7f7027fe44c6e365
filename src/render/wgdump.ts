/**
 * Live WireGuard state from `wg show IFACE dump` (tab-separated, stable across wg versions and wireguard-go).
 *
 * The first line of that dump is the interface line and holds the PRIVATE KEY
 * (private-key, public-key, listen-port, fwmark). meshctl's probe drops it on the node
 * (`wg show wg0 dump | tail -n +2`) and asks for the public key and listen port separately. This parser takes peer
 * lines only; a line shaped like the interface line is refused and nothing of it is kept, not even in the problem
 * report. The preshared-key column is a secret too: only whether it is set survives.
 */
import { looksLikeWireGuardKey } from '../topology/desired.js';

export interface LivePeer {
  publicKey: string;
  hasPresharedKey: boolean;
  /** 'host:port' as WireGuard last saw it (it roams to where authenticated packets come from); absent for (none) */
  endpoint?: string;
  /** empty for (none) */
  allowedIps: string[];
  /** Unix seconds of the latest handshake; absent when there has never been one (0) */
  latestHandshake?: number;
  rxBytes: number;
  txBytes: number;
  /** absent for off */
  persistentKeepalive?: number;
}

export interface LiveInterface {
  /** from `wg show IFACE public-key`; absent when no private key is set ("(none)") */
  publicKey?: string;
  /** from `wg show IFACE listen-port` */
  listenPort?: number;
}

/** A dump line that was not taken. Never carries the line's text, which may hold a key. */
export interface DumpLineProblem {
  line: number;
  reason: string;
}

export interface ParsedWgDump {
  peers: LivePeer[];
  problems: DumpLineProblem[];
}

const PEER_FIELDS = 8;
const INTERFACE_FIELDS = 4;
const NONE = '(none)';

function nonNegativeInteger(text: string): number | undefined {
  const n = text.length;
  if (n === 0) return undefined;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 48 || c > 57) return undefined;
  }
  return Number(text);
}

/**
 * Counts of work, for tests and the bench (issue 10: verify parsed each node's peer dump three times): `lines`, the
 * non-empty dump lines parseWgDumpPeers has read in this process.
 */
export const wgDumpParseStats = { lines: 0 };

/**
 * One peer line's 8 fields (no interface name first) into a LivePeer, or why it was not taken. The object's keys
 * in the order they always had (the JSON of debug and verify --all-checks shows them).
 */
function parsePeerFields(fields: string[]): LivePeer | string {
  const [publicKey, presharedKey, endpoint, allowedIps, handshake, rx, tx, keepalive] = fields as [
    string,
    string,
    string,
    string,
    string,
    string,
    string,
    string,
  ];
  if (!looksLikeWireGuardKey(publicKey)) return 'first field is not a public key';
  const latestHandshake = nonNegativeInteger(handshake);
  const rxBytes = nonNegativeInteger(rx);
  const txBytes = nonNegativeInteger(tx);
  const persistentKeepalive = keepalive === 'off' ? 0 : nonNegativeInteger(keepalive);
  if (latestHandshake === undefined || rxBytes === undefined || txBytes === undefined || persistentKeepalive === undefined) {
    return 'handshake, transfer or keepalive field is not a number';
  }
  // built in key order without spreads (one object per peer, N (N-1) per verify)
  const peer = { publicKey, hasPresharedKey: presharedKey !== NONE && presharedKey !== '' } as LivePeer;
  if (endpoint !== NONE && endpoint !== '') peer.endpoint = endpoint;
  peer.allowedIps = allowedIps === NONE || allowedIps === '' ? [] : allowedIpList(allowedIps);
  if (latestHandshake > 0) peer.latestHandshake = latestHandshake;
  peer.rxBytes = rxBytes;
  peer.txBytes = txBytes;
  if (persistentKeepalive > 0) peer.persistentKeepalive = persistentKeepalive;
  return peer;
}

/** The AllowedIPs field, comma-separated (wg prints no spaces; trimmed anyway): one /32 per peer is the usual case. */
const allowedIpList = (field: string): string[] => (field.includes(',') ? field.split(',').map((ip) => ip.trim()) : [field.trim()]);

/**
 * Parses the peer lines of `wg show IFACE dump` (8 fields each). Also accepts `wg show all dump` peer lines
 * (9 fields, the interface name first). Interface lines (4 fields, or 5 with `all`) are refused.
 */
export function parseWgDumpPeers(text: string): ParsedWgDump {
  const result: ParsedWgDump = { peers: [], problems: [] };
  const lines = text.includes('\r') ? text.split(/\r?\n/) : text.split('\n');
  for (let index = 0; index < lines.length; index++) {
    const lineText = lines[index]!;
    const line = index + 1;
    if (lineText.trim() === '') continue;
    wgDumpParseStats.lines++;
    let fields = lineText.split('\t');
    if (fields.length === INTERFACE_FIELDS || fields.length === INTERFACE_FIELDS + 1) {
      result.problems.push({ line, reason: 'refused an interface line (it holds the private key); the probe must drop it (tail -n +2)' });
      continue;
    }
    if (fields.length === PEER_FIELDS + 1) fields = fields.slice(1);
    if (fields.length !== PEER_FIELDS) {
      result.problems.push({ line, reason: `expected ${PEER_FIELDS} tab-separated fields, found ${fields.length}` });
      continue;
    }
    const peer = parsePeerFields(fields);
    if (typeof peer === 'string') result.problems.push({ line, reason: peer });
    else result.peers.push(peer);
  }
  return result;
}

/** Combines the outputs of `wg show IFACE public-key` and `wg show IFACE listen-port`. */
export function parseLiveInterface(publicKeyOutput: string, listenPortOutput: string): LiveInterface {
  const publicKey = publicKeyOutput.trim();
  const listenPort = nonNegativeInteger(listenPortOutput.trim());
  return {
    ...(looksLikeWireGuardKey(publicKey) ? { publicKey } : {}),
    ...(listenPort !== undefined && listenPort <= 65535 ? { listenPort } : {}),
  };
}

/** Seconds since the latest handshake, or undefined when there has been none. */
export function handshakeAgeSeconds(peer: LivePeer, nowUnixSeconds: number): number | undefined {
  return peer.latestHandshake === undefined ? undefined : Math.max(0, nowUnixSeconds - peer.latestHandshake);
}
