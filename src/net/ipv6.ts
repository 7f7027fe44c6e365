/**
 * IPv6 underlay addresses: validity (node:net), the canonical text and prefix arithmetic (ip-bigint, listed in the
 * project's dependencies), and the rule for which addresses a node may give as its public IPv6 address.
 */
import { isIPv6 } from 'node:net';
import { parseIp, stringifyIp } from 'ip-bigint';

/**
 * The RFC 5952 text of an IPv6 address (lowercase, leading zeros dropped, the longest run of zero groups as `::`),
 * which is what `wg show` prints (inet_ntop): an inventory's `2001:DB8:0::11` and the live endpoint then compare
 * equal. Undefined when `text` is not an IPv6 address (or carries a zone, `%eth0`).
 */
export function canonicalIpv6(text: string): string | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined;
  return stringifyIp(parseIp(text), { compress: true });
}

/** The 128-bit value of an IPv6 address; undefined when it is not one. */
export function ipv6Value(text: string): bigint | undefined {
  if (!isIPv6(text) || text.includes('%')) return undefined;
  return parseIp(text).number;
}

/** An IPv6 prefix: its first address and length. */
export interface Ipv6Prefix {
  network: bigint;
  prefix: number;
}

const ALL = (1n << 128n) - 1n;
const maskOf = (prefix: number) => (ALL >> BigInt(128 - prefix)) << BigInt(128 - prefix);

/** `2001:db8::/32` as a prefix; undefined when malformed or when host bits are set. */
export function parseIpv6Prefix(text: string): Ipv6Prefix | undefined {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  const value = m ? ipv6Value(m[1]!) : undefined;
  const prefix = Number(m?.[2]);
  if (value === undefined || !(prefix >= 0 && prefix <= 128)) return undefined;
  return (value & maskOf(prefix)) === value ? { network: value, prefix } : undefined;
}

/** True when `address` (IPv6 text) lies inside `prefix`. */
export function ipv6PrefixContains(prefix: Ipv6Prefix, address: string): boolean {
  const value = ipv6Value(address);
  return value !== undefined && (value & maskOf(prefix.prefix)) === prefix.network;
}

/** The /`length` prefix holding `address`, as text (`2001:db8:61::/64`); undefined when it is not an address. */
export function ipv6PrefixOf(address: string, length: number): string | undefined {
  const value = ipv6Value(address);
  if (value === undefined) return undefined;
  return `${stringifyIp({ number: value & maskOf(length), version: 6 }, { compress: true })}/${length}`;
}

/** The address `offset` after a prefix's first address (`2001:db8:61::` + 1 = `2001:db8:61::1`). */
export function ipv6Add(prefix: Ipv6Prefix, offset: bigint): string {
  return stringifyIp({ number: prefix.network + offset, version: 6 }, { compress: true });
}

/**
 * IANA's global unicast space (RFC 4291 section 2.4, IANA's IPv6 address space registry: 2000::/3 is the only range
 * allocated for global unicast). Everything else a user might paste is not reachable from other sites: link-local
 * fe80::/10 (one link only, needs a zone), unique local fc00::/7 (RFC 4193: private, never routed between sites),
 * multicast ff00::/8, loopback, unspecified, IPv4-mapped ::ffff:0:0/96.
 */
const GLOBAL_UNICAST: Ipv6Prefix = { network: 0x2000n << 112n, prefix: 3 };
// written as its value, not parseIpv6Prefix('2000::/3'): that call ran node:net's isIPv6 when this module loaded,
// and its first use compiles node's IPv6 regular expression, 20-30 ms before `up`'s first TCP connection even for
// an inventory without one IPv6 address (issue 10; a unit test checks it equals the parsed prefix)

/** Why `text` is not usable as a node's public IPv6 address, or undefined when it is. For file:line:col messages. */
export function publicIpv6Problem(text: string): string | undefined {
  if (text.startsWith('[') && text.endsWith(']') && isIPv6(text.slice(1, -1)))
    return `write the address without brackets: ${text.slice(1, -1)}`;
  const withPrefix = /^(.+)\/\d+$/.exec(text);
  if (withPrefix && isIPv6(withPrefix[1]!)) return `expected an address without a prefix length: write ${withPrefix[1]}`;
  if (text.includes('%')) return `"${text}" has a zone (%...): a public IPv6 address needs none`;
  if (!isIPv6(text)) return `"${text}" is not an IPv6 address (like 2001:db8:10::11)`;
  if (ipv6PrefixContains(GLOBAL_UNICAST, text)) return undefined;
  const kind = [
    [parseIpv6Prefix('fe80::/10')!, 'a link-local address (fe80::/10): it works on one link only'],
    [parseIpv6Prefix('fc00::/7')!, 'a unique local address (fc00::/7, RFC 4193): it is not routed between sites'],
    [parseIpv6Prefix('ff00::/8')!, 'a multicast address'],
    [parseIpv6Prefix('::ffff:0:0/96')!, 'an IPv4-mapped address: put the IPv4 address in address'],
  ].find(([prefix]) => ipv6PrefixContains(prefix as Ipv6Prefix, text))?.[1] as string | undefined;
  return `${text} is ${kind ?? 'not a global unicast address'}: peers in other sites must reach it, so give the node's global address (inside 2000::/3)`;
}

/**
 * Why an IPv6 literal cannot be a peer's Endpoint host (wg(8)), or undefined: the unspecified address ::, loopback
 * ::1 (RFC 4291 2.5.2, 2.5.3: every node answers it itself), multicast ff00::/8, link-local fe80::/10 (an endpoint
 * carries no zone, so no link is named), and an IPv4-mapped address (::ffff:0:0/96), which is the IPv4 address it
 * maps and is judged as one: `ipv4` is that address, for the IPv4 rules (Q10 F4: `[::ffff:172.27.15.12]` passed
 * where `172.27.15.12` inside the overlay was refused). Unique local addresses (fc00::/7) are allowed: a private
 * underlay between sites may use them.
 */
export function endpointIpv6Problem(text: string): { message?: string; ipv4?: string } {
  const value = ipv6Value(text);
  if (value === undefined) return {};
  if (value === 0n) return { message: `${text} is the unspecified address (::): no host has it` };
  if (value === 1n)
    return { message: `${text} is the loopback address (::1): every node answers it itself, nothing would go through the tunnel` };
  if (ipv6PrefixContains(parseIpv6Prefix('ff00::/8')!, text))
    return { message: `${text} is a multicast address (ff00::/8), not an address of one host` };
  if (ipv6PrefixContains(parseIpv6Prefix('fe80::/10')!, text))
    return { message: `${text} is a link-local address (fe80::/10): an endpoint names no link, and peers in other sites cannot reach it` };
  if (ipv6PrefixContains(parseIpv6Prefix('::ffff:0:0/96')!, text)) {
    const v4 = Number(value & 0xffffffffn);
    const ipv4 = [v4 >>> 24, (v4 >>> 16) & 255, (v4 >>> 8) & 255, v4 & 255].join('.');
    return { message: `${text} is the IPv4-mapped form of ${ipv4}: write ${ipv4}`, ipv4 };
  }
  return {};
}
