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
