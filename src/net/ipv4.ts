/** Small, dependency-free IPv4 arithmetic. Addresses are handled as unsigned 32-bit numbers. */

const OCTET = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

export function isIpv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => OCTET.test(p));
}

export function ipToInt(ip: string): number {
  if (!isIpv4(ip)) throw new Error(`not an IPv4 address: ${ip}`);
  return ip.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

export function intToIp(value: number): string {
  return [24, 16, 8, 0].map((shift) => (Math.floor(value / 2 ** shift) % 256).toString()).join('.');
}

export interface Cidr {
  /** network address as written after normalisation, e.g. 172.27.15.0 */
  network: string;
  prefix: number;
  /** first and last address of the block, as integers */
  first: number;
  last: number;
}

/** Parses "a.b.c.d/n". Returns undefined for anything else, including host bits set (strict). */
export function parseCidr(text: string, { strict = true } = {}): Cidr | undefined {
  const match = /^([^/]+)\/(\d{1,2})$/.exec(text.trim());
  if (!match || !isIpv4(match[1]!)) return undefined;
  const prefix = Number(match[2]);
  if (prefix > 32) return undefined;
  const size = 2 ** (32 - prefix);
  const address = ipToInt(match[1]!);
  const first = address - (address % size);
  if (strict && first !== address) return undefined;
  return { network: intToIp(first), prefix, first, last: first + size - 1 };
}

export function cidrContains(cidr: Cidr, ip: string): boolean {
  const value = ipToInt(ip);
  return value >= cidr.first && value <= cidr.last;
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  return a.first <= b.last && b.first <= a.last;
}

export const formatCidr = (cidr: Cidr) => `${cidr.network}/${cidr.prefix}`;

export type CidrParse =
  | { ok: true; cidr: Cidr }
  | { ok: false; reason: 'syntax' }
  | { ok: false; reason: 'no-prefix'; address: string }
  | { ok: false; reason: 'prefix'; prefix: number }
  | { ok: false; reason: 'host-bits'; network: string };

/** Like parseCidr, but says what is wrong, so a message can name the right form (e.g. the real network). */
export function parseCidrDetailed(text: string): CidrParse {
  const trimmed = text.trim();
  if (isIpv4(trimmed)) return { ok: false, reason: 'no-prefix', address: trimmed };
  const match = /^([^/]+)\/(\d+)$/.exec(trimmed);
  if (!match || !isIpv4(match[1]!)) return { ok: false, reason: 'syntax' };
  const prefix = Number(match[2]);
  if (prefix > 32 || match[2]!.length > 2) return { ok: false, reason: 'prefix', prefix };
  const loose = parseCidr(trimmed, { strict: false })!;
  if (ipToInt(match[1]!) !== loose.first) return { ok: false, reason: 'host-bits', network: formatCidr(loose) };
  return { ok: true, cidr: loose };
}

/** The network and broadcast addresses of a block, which no host may use (none for /31 and /32). */
export function reservedAddressOf(cidr: Cidr, ip: string): 'network' | 'broadcast' | undefined {
  if (cidr.prefix >= 31) return undefined;
  const value = ipToInt(ip);
  if (value === cidr.first) return 'network';
  if (value === cidr.last) return 'broadcast';
  return undefined;
}
