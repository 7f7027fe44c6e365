/**
 * Pure planning: inventory -> the lab's network plan (namespaces, veth links, bridges, addresses, routes, NAT).
 * No I/O here; src/lab/network.ts applies a plan, and unit tests check plans with plain fixtures.
 *
 * Shape of a lab (every piece inside namespaces named `ml-<lab>.<role>`; nothing in the host namespace):
 * - `internet`: routes between public addresses. Each attached namespace holds its public address as a /32 with an
 *   on-link default route to 169.254.0.1, which the internet namespace holds on every link (see lab.md).
 *   It has no default route itself, so nothing leaves the lab.
 * - one router per nat/lan site: bridge `br0` with the router's LAN address, the site's public IP on `wan`,
 *   forwarding on, MASQUERADE of the LAN, and exactly the declared UDP port-forwards (nat sites only).
 *   The mapping is the site's `lab.nat`: symmetric (default, a random public port per destination) or
 *   port-preserving (the node's source port for every destination while it is free: endpoint-independent).
 * - a carrier NAT site (nat.carrier) gets a second router in front of its own, `carrier.<site>`: it holds the
 *   site's public IP on the internet and masquerades a shared-space link (100.64.N.0/24, RFC 6598) whose .2 is the
 *   site router's `wan`. Two NATs deep, nothing forwarded.
 * - one namespace per node: `eth0` on its site's bridge (nat/lan) or on the internet (public).
 * - IPv6, only for the nodes with an `address6` (all inside the documentation prefix 2001:db8::/32, RFC 3849): the
 *   internet routes each public node's /128 and each site's /64 to its router; the site router routes the /64 onto
 *   its LAN without NAT and without a firewall (as a home router does with IPv6, its inbound filter opened), and
 *   every hop's gateway is the link-local fe80::1 (the internet on its links, the router on its LAN). A carrier NAT
 *   site gets no IPv6 in the lab.
 * - `operator`: joins every LAN (highest free address) and the internet (an address outside every inventory
 *   range); forwarding off, so it never bridges segments. meshctl runs here against the lab.
 * Interface names live inside lab namespaces, so they never collide with the host or another lab; they only need
 * to be unique per namespace and at most 15 characters.
 */
import type { Inventory, NatMapping, Node, Site } from '../inventory/types.js';
import { type Cidr, cidrContains, cidrsOverlap, intToIp, ipToInt, isIpv4, parseCidr } from '../net/ipv4.js';
import { badInput } from '../errors.js';
import { ipv6PrefixContains, ipv6PrefixOf, parseIpv6Prefix } from '../net/ipv6.js';

/** Held by the internet namespace on every link; everyone's on-link default gateway. */
export const INTERNET_GATEWAY = '169.254.0.1';
/** The standard sudo user every node has, beside the users the inventory names. */
export const LAB_SUDO_USER = 'meshadmin';
/** Where every node sees the lab's local apt repository (read-only bind mount). */
export const NODE_APT_DIR = '/srv/meshctl-apt';
/** Addresses for the operator's and lan routers' public side: RFC 2544 benchmarking space, never a real host. */
const LAB_PUBLIC_POOL = parseCidr('198.18.0.0/15')!;
/** The only IPv6 the lab builds: the documentation prefix (RFC 3849), never a real network. */
export const LAB_IPV6_PREFIX = '2001:db8::/32';
/** Every IPv6 hop's gateway (on-link, link-local): the internet on each of its links, a router on its LAN. */
export const IPV6_GATEWAY = 'fe80::1';
/** A site router's link-local address on its `wan`, where the internet routes the site's /64. */
const IPV6_ROUTER_WAN = 'fe80::2';
/** The carrier's side of a carrier NAT site: RFC 6598 shared address space, one /24 per carrier site. */
const CARRIER_POOL = parseCidr('100.64.0.0/10')!;

const LAB_NAME = /^[a-z0-9][a-z0-9-]{0,15}$/;
const SAFE_NAME = /^[a-z0-9][a-z0-9-]*$/;
const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;
const HOST_NAME = /^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$/;

export type NamespaceRole = 'internet' | 'operator' | 'router' | 'node';

export interface PlannedInterface {
  name: string;
  /** addresses in CIDR form */
  addresses: string[];
  /** bridge this interface is a port of */
  master?: string;
  /** true for bridges (created, not veth ends) */
  bridge?: boolean;
}

export interface PlannedRoute {
  to: string; // 'default' or CIDR
  dev: string;
  via?: string;
  onlink?: boolean;
}

export interface PlannedForward {
  publicIp: string;
  port: number;
  toAddress: string;
  toPort: number;
  /** inventory node the forward points at */
  node: string;
}

export interface PlannedNat {
  /** LAN masqueraded when leaving through `outInterface` */
  masquerade: { source: string; outInterface: string };
  /** UDP DNAT on traffic arriving at `inInterface` */
  forwards: PlannedForward[];
  inInterface: string;
  /** the mapping behaviour; absent: symmetric (fully random source ports), what the lab always did */
  mapping?: NatMapping;
}

export interface PlannedNamespace {
  name: string;
  role: NamespaceRole;
  site?: string;
  node?: string;
  forwarding: boolean;
  /** routes IPv6 too (net.ipv6.conf.all.forwarding=1): the internet and routers of a lab with IPv6 */
  forwardsIpv6?: boolean;
  interfaces: PlannedInterface[];
  routes: PlannedRoute[];
  nat?: PlannedNat;
}

export interface PlannedLink {
  a: { ns: string; ifname: string };
  b: { ns: string; ifname: string };
}

export interface PlannedNode {
  name: string;
  site: string;
  namespace: string;
  address: string;
  /** the node's public IPv6 address (inventory `address6`), when it has one */
  address6?: string;
  overlayIp: string;
  sshHost: string;
  sshPort: number;
  /** user the inventory logs in as */
  sshUser: string;
  /** non-root users made with passwordless sudo (always LAB_SUDO_USER, plus the inventory's user if not root) */
  sudoUsers: string[];
}

export interface PlannedRouter {
  site: string;
  kind: 'nat' | 'lan';
  namespace: string;
  lan: string;
  address: string;
  /** the address on the router's `wan`: the site's public IP, or its shared-space address behind a carrier */
  publicIp: string;
  forwards: PlannedForward[];
  mapping: NatMapping;
  /** carrier NAT sites: the carrier router in front (`lab exec carrier:SITE`) */
  carrier?: { namespace: string; publicIp: string; insideAddress: string };
}

export interface LabPlan {
  lab: string;
  /** every namespace of this lab starts with it; lab names hold no '.', so labs never share a prefix */
  prefix: string;
  namespaces: PlannedNamespace[];
  links: PlannedLink[];
  nodes: PlannedNode[];
  routers: PlannedRouter[];
  operator: { namespace: string; internetAddress: string; lanAddresses: Record<string, string> };
  internet: { namespace: string };
  /** DNS name -> address the lab's dnsmasq serves (sites named by nat.publicHost; src/lab/dns.ts); absent: no server */
  dns?: Record<string, string>;
}

/** Lab names are short and go into namespace names and paths. */
export function validateLabName(name: string): void {
  if (!LAB_NAME.test(name)) {
    throw badInput(`invalid lab name ${JSON.stringify(name)}: use 1-16 characters a-z, 0-9 and '-', starting with a letter or digit`);
  }
}

export const namespacePrefix = (lab: string) => `ml-${lab}.`;
export const namespaceName = (lab: string, role: string) => `${namespacePrefix(lab)}${role}`;

/** An interface name: `<tag><index>-<name>` cut to 15 characters (the index keeps it unique). */
const ifname = (tag: string, index: number, name: string) => `${tag}${index}-${name.replace(/[^a-z0-9-]/gi, '')}`.slice(0, 15);

const hostBits = (cidr: Cidr) => cidr.last - cidr.first;

/**
 * Plans the lab for an inventory. Throws MeshctlError (exit 2) listing, on one line, everything the lab cannot
 * replicate (overlapping LANs, addresses outside their LAN, duplicates, an SSH host that is not the node's address).
 */
export function planLab(inventory: Inventory, lab: string): LabPlan {
  validateLabName(lab);
  const problems: string[] = [];
  const ns = (role: string) => namespaceName(lab, role);

  const lans = new Map<string, Cidr>();
  const routerAddress = new Map<string, string>();
  for (const site of inventory.sites) {
    if (!SAFE_NAME.test(site.name)) problems.push(`site ${site.name}: name must be a-z, 0-9 and '-'`);
    if (site.kind === 'public') continue;
    const cidr = typeof site.lan === 'string' ? parseCidr(site.lan) : undefined;
    if (!cidr) {
      problems.push(`site ${site.name}: lan ${String(site.lan)} is not an IPv4 CIDR`);
      continue;
    }
    if (cidr.prefix > 30)
      problems.push(`site ${site.name}: lan ${site.lan} is too small (the lab needs a router, nodes and the operator in it)`);
    for (const [other, otherCidr] of lans) {
      if (cidrsOverlap(cidr, otherCidr))
        problems.push(`sites ${other} and ${site.name} have overlapping LANs (the lab's operator joins every LAN)`);
    }
    lans.set(site.name, cidr);
    if (site.kind === 'nat' && !(typeof site.publicIp === 'string' && isIpv4(site.publicIp))) {
      // a site named by publicHost alone still needs its starting address here: the lab has to give the router one
      problems.push(
        `site ${site.name}: publicIp ${String(site.publicIp)} is not an IPv4 address${site.publicHost ? ` (the lab needs nat.publicIp as the starting address of ${site.publicHost})` : ''}`,
      );
    }
    if (site.router !== undefined) {
      if (!isIpv4(site.router) || !cidrContains(cidr, site.router))
        problems.push(`site ${site.name}: router ${site.router} is not an address in ${site.lan}`);
      else routerAddress.set(site.name, site.router);
    }
  }

  const sitesByName = new Map(inventory.sites.map((s) => [s.name, s]));
  const usedInLan = new Map<string, Set<number>>([...lans.keys()].map((name) => [name, new Set<number>()]));
  for (const [site, address] of routerAddress) usedInLan.get(site)!.add(ipToInt(address));
  const publicAddresses = new Map<string, string>(); // address -> owner
  const claimPublic = (address: string, owner: string) => {
    const previous = publicAddresses.get(address);
    if (previous) problems.push(`${owner} and ${previous} share the public address ${address}`);
    else publicAddresses.set(address, owner);
    for (const [site, cidr] of lans)
      if (cidrContains(cidr, address)) problems.push(`${owner}: public address ${address} is inside site ${site}'s LAN`);
  };
  for (const site of inventory.sites)
    if (site.kind === 'nat' && isIpv4(site.publicIp ?? '')) claimPublic(site.publicIp!, `site ${site.name}`);

  // A port-preserving router maps a node's source port to the same public port: a forward on that port would then
  // deliver the peers' packets along the node's outgoing mapping instead (what a real router of this kind does).
  // The forwarded node's own listen port is no clash: its outgoing mapping and its forward reach the same node, and
  // that is the forward src/topology/forward-clash.ts recommends (Q4 item 4).
  for (const site of inventory.sites) {
    if (site.kind === 'public' || site.lab?.nat !== 'port-preserving') continue;
    const members = inventory.nodes.filter((n) => n.site === site.name);
    for (const forwarded of members.filter((n) => n.forwardedPort !== undefined)) {
      const clash = members.find((n) => n !== forwarded && n.listenPort === forwarded.forwardedPort);
      if (clash)
        problems.push(
          `site ${site.name}: lab.nat port-preserving would map ${clash.name}'s outgoing UDP ${clash.listenPort} onto the forward of port ${forwarded.forwardedPort} to ${forwarded.name} (pick a forwardedPort that is no node's listenPort, or lab.nat: symmetric)`,
        );
    }
  }

  const site64 = planIpv6Prefixes(inventory, problems);

  if (inventory.nodes.length === 0) problems.push('the inventory has no nodes');
  const forwardKeys = new Map<string, string>();
  for (const node of inventory.nodes) {
    const where = `node ${node.name}`;
    if (!HOST_NAME.test(node.name)) problems.push(`${where}: name is not a valid host name`);
    const site = sitesByName.get(node.site);
    if (!site) {
      problems.push(`${where}: unknown site ${String(node.site)}`);
      continue;
    }
    if (typeof node.address !== 'string' || !isIpv4(node.address)) {
      problems.push(`${where}: address ${String(node.address)} is not an IPv4 address`);
      continue;
    }
    if (site.kind === 'public') claimPublic(node.address, where);
    else {
      const cidr = lans.get(site.name);
      if (cidr) {
        const value = ipToInt(node.address);
        if (!cidrContains(cidr, node.address) || value === cidr.first || value === cidr.last)
          problems.push(`${where}: address ${node.address} is not a host address in ${site.lan}`);
        else if (usedInLan.get(site.name)!.has(value))
          problems.push(`${where}: address ${node.address} is already used in site ${site.name}`);
        else usedInLan.get(site.name)!.add(value);
      }
    }
    if (node.ssh.host !== node.address)
      problems.push(`${where}: ssh.host ${node.ssh.host} must be the node's address ${node.address} (the lab reaches nodes only there)`);
    if (!Number.isInteger(node.ssh.port) || node.ssh.port < 1 || node.ssh.port > 65535)
      problems.push(`${where}: ssh.port ${node.ssh.port} is not a port`);
    if (node.ssh.user !== 'root' && !USER_NAME.test(node.ssh.user ?? ''))
      problems.push(`${where}: ssh.user ${String(node.ssh.user)} is not a valid user name`);
    if (site.kind === 'nat' && node.forwardedPort !== undefined) {
      const key = `${site.name}:${node.forwardedPort}`;
      const previous = forwardKeys.get(key);
      if (previous) problems.push(`${where} and node ${previous} use the same forwarded port ${node.forwardedPort} on site ${site.name}`);
      else forwardKeys.set(key, node.name);
    }
  }

  // Lab-made addresses: from 198.18.0.0/15, avoiding everything the inventory uses.
  const reserved = [
    ...lans.values(),
    ...[inventory.mesh.network, ...(inventory.mesh.reservedCidrs ?? [])]
      .map((c) => parseCidr(String(c), { strict: false }))
      .filter((c): c is Cidr => !!c),
  ];
  let poolNext = LAB_PUBLIC_POOL.first + 1;
  const labPublicAddress = (owner: string): string => {
    for (; poolNext < LAB_PUBLIC_POOL.last; poolNext++) {
      const candidate = intToIp(poolNext);
      if (publicAddresses.has(candidate) || reserved.some((c) => cidrContains(c, candidate))) continue;
      poolNext++;
      publicAddresses.set(candidate, owner);
      return candidate;
    }
    problems.push(`no free lab address for ${owner}`);
    return '0.0.0.0';
  };
  const freeLanAddress = (site: string, fromTop: boolean): string => {
    const cidr = lans.get(site)!;
    const used = usedInLan.get(site)!;
    for (let i = 1; i < hostBits(cidr); i++) {
      const value = fromTop ? cidr.last - i : cidr.first + i;
      if (!used.has(value)) {
        used.add(value);
        return intToIp(value);
      }
    }
    problems.push(`site ${site}: no free address left in ${formatPrefix(cidr)} for the lab`);
    return intToIp(cidr.first);
  };

  if (problems.length > 0) throw badInput(`the lab cannot replicate ${inventory.source}: ${problems.join('; ')}`);

  const internet: PlannedNamespace = { name: ns('internet'), role: 'internet', forwarding: true, interfaces: [], routes: [] };
  const operator: PlannedNamespace = { name: ns('operator'), role: 'operator', forwarding: false, interfaces: [], routes: [] };
  const namespaces: PlannedNamespace[] = [internet, operator];
  const links: PlannedLink[] = [];
  const routers: PlannedRouter[] = [];
  const nodes: PlannedNode[] = [];
  const routerNs = new Map<string, PlannedNamespace>();
  const gw32 = `${INTERNET_GATEWAY}/32`;

  /** Attaches a namespace to the internet with a public /32 and an on-link default route. */
  const joinInternet = (target: PlannedNamespace, localIf: string, internetIf: string, address: string) => {
    links.push({ a: { ns: internet.name, ifname: internetIf }, b: { ns: target.name, ifname: localIf } });
    internet.interfaces.push({ name: internetIf, addresses: [gw32] });
    internet.routes.push({ to: `${address}/32`, dev: internetIf });
    target.interfaces.push({ name: localIf, addresses: [`${address}/32`] });
    target.routes.push({ to: 'default', via: INTERNET_GATEWAY, dev: localIf, onlink: true });
  };

  /** The internet's side of `internetIf` also holds fe80::1 (IPv6's on-link gateway) and routes `to` there. */
  const internetIpv6 = (internetIf: string, to: PlannedRoute) => {
    internet.forwardsIpv6 = true;
    const itf = internet.interfaces.find((i) => i.name === internetIf)!;
    if (!itf.addresses.includes(`${IPV6_GATEWAY}/64`)) itf.addresses.push(`${IPV6_GATEWAY}/64`);
    internet.routes.push(to);
  };

  /**
   * The carrier router of a carrier NAT site: the site's public IP on the internet, the shared-space link to the
   * site router behind it, and its own MASQUERADE of that link. Returns the site router's `wan` address.
   */
  let carrierCount = 0;
  const buildCarrier = (router: PlannedNamespace, site: Extract<Site, { kind: 'nat' }>, index: number, mapping: NatMapping) => {
    const base = CARRIER_POOL.first + carrierCount++ * 256;
    const link = `${intToIp(base)}/24`;
    const linkCidr = parseCidr(link)!;
    const clash = reserved.find((c) => cidrsOverlap(c, linkCidr));
    if (clash) problems.push(`site ${site.name}: the lab's carrier link ${link} overlaps ${formatPrefix(clash)} of the inventory`);
    const carrier: PlannedNamespace = {
      name: ns(`carrier.${site.name}`),
      role: 'router',
      site: site.name,
      forwarding: true,
      interfaces: [{ name: 'cust', addresses: [`${intToIp(base + 1)}/24`] }],
      routes: [],
      nat: { masquerade: { source: link, outInterface: 'wan' }, forwards: [], inInterface: 'wan', mapping },
    };
    joinInternet(carrier, 'wan', ifname('c', index, site.name), site.publicIp!);
    links.push({ a: { ns: carrier.name, ifname: 'cust' }, b: { ns: router.name, ifname: 'wan' } });
    const insideAddress = intToIp(base + 2);
    router.interfaces.push({ name: 'wan', addresses: [`${insideAddress}/24`] });
    router.routes.push({ to: 'default', via: intToIp(base + 1), dev: 'wan' });
    namespaces.push(carrier);
    return { namespace: carrier.name, publicIp: site.publicIp!, insideAddress };
  };

  const operatorLan: Record<string, string> = {};
  inventory.sites.forEach((site, index) => {
    if (site.kind === 'public') return;
    const cidr = lans.get(site.name)!;
    const address = routerAddress.get(site.name) ?? freeLanAddress(site.name, false);
    const mapping: NatMapping = site.lab?.nat ?? 'symmetric';
    const router: PlannedNamespace = {
      name: ns(`router.${site.name}`),
      role: 'router',
      site: site.name,
      forwarding: true,
      interfaces: [],
      routes: [],
    };
    router.interfaces.push({ name: 'br0', bridge: true, addresses: [`${address}/${cidr.prefix}`] });
    const carrier = site.kind === 'nat' && site.carrier ? buildCarrier(router, site, index, mapping) : undefined;
    const publicIp = carrier
      ? carrier.insideAddress
      : site.kind === 'nat'
        ? site.publicIp!
        : labPublicAddress(`router of site ${site.name}`);
    if (!carrier) joinInternet(router, 'wan', ifname('s', index, site.name), publicIp);
    const lan6 = site64.get(site.name);
    if (lan6 && !carrier) {
      // the site's /64, routed by the internet to the router and by the router onto its LAN: no NAT
      const internetIf = ifname('s', index, site.name);
      internetIpv6(internetIf, { to: lan6, via: IPV6_ROUTER_WAN, dev: internetIf });
      router.forwardsIpv6 = true;
      router.interfaces.find((i) => i.name === 'wan')!.addresses.push(`${IPV6_ROUTER_WAN}/64`);
      router.interfaces.find((i) => i.name === 'br0')!.addresses.push(`${IPV6_GATEWAY}/64`);
      router.routes.push({ to: 'default', via: IPV6_GATEWAY, dev: 'wan' }, { to: lan6, dev: 'br0' });
    }
    const forwards: PlannedForward[] =
      site.kind === 'nat'
        ? inventory.nodes
            .filter((n) => n.site === site.name && n.forwardedPort !== undefined)
            .map((n) => ({ publicIp, port: n.forwardedPort!, toAddress: n.address, toPort: n.listenPort, node: n.name }))
        : [];
    router.nat = {
      masquerade: { source: formatPrefix(cidr), outInterface: 'wan' },
      forwards,
      inInterface: 'wan',
      ...(mapping !== 'symmetric' ? { mapping } : {}),
    };
    namespaces.push(router);
    routerNs.set(site.name, router);
    routers.push({
      site: site.name,
      kind: site.kind,
      namespace: router.name,
      lan: formatPrefix(cidr),
      address,
      publicIp,
      forwards,
      mapping,
      ...(carrier ? { carrier } : {}),
    });
    // The operator joins the LAN on a port of the site's bridge.
    const opAddress = freeLanAddress(site.name, true);
    operatorLan[site.name] = opAddress;
    const opIf = ifname('l', index, site.name);
    links.push({ a: { ns: router.name, ifname: 'op' }, b: { ns: operator.name, ifname: opIf } });
    router.interfaces.push({ name: 'op', addresses: [], master: 'br0' });
    operator.interfaces.push({ name: opIf, addresses: [`${opAddress}/${cidr.prefix}`] });
  });

  inventory.nodes.forEach((node, index) => {
    const site = sitesByName.get(node.site)!;
    const nodeNs: PlannedNamespace = {
      name: ns(`node.${node.name}`),
      role: 'node',
      site: site.name,
      node: node.name,
      forwarding: false,
      interfaces: [],
      routes: [],
    };
    if (site.kind === 'public') {
      joinInternet(nodeNs, 'eth0', ifname('n', index, node.name), node.address);
      if (node.address6 !== undefined) {
        const internetIf = ifname('n', index, node.name);
        internetIpv6(internetIf, { to: `${node.address6}/128`, dev: internetIf });
        nodeNs.interfaces.find((i) => i.name === 'eth0')!.addresses.push(`${node.address6}/128`);
        nodeNs.routes.push({ to: 'default', via: IPV6_GATEWAY, dev: 'eth0' });
      }
    } else {
      const router = routerNs.get(site.name)!;
      const cidr = lans.get(site.name)!;
      const portIf = ifname('n', index, node.name);
      links.push({ a: { ns: router.name, ifname: portIf }, b: { ns: nodeNs.name, ifname: 'eth0' } });
      router.interfaces.push({ name: portIf, addresses: [], master: 'br0' });
      nodeNs.interfaces.push({ name: 'eth0', addresses: [`${node.address}/${cidr.prefix}`] });
      nodeNs.routes.push({ to: 'default', via: routers.find((r) => r.site === site.name)!.address, dev: 'eth0' });
      if (node.address6 !== undefined && site64.has(site.name)) {
        nodeNs.interfaces.find((i) => i.name === 'eth0')!.addresses.push(`${node.address6}/64`);
        nodeNs.routes.push({ to: 'default', via: IPV6_GATEWAY, dev: 'eth0' });
      }
    }
    namespaces.push(nodeNs);
    const sudoUsers = [LAB_SUDO_USER, ...(node.ssh.user !== 'root' && node.ssh.user !== LAB_SUDO_USER ? [node.ssh.user] : [])];
    nodes.push({
      name: node.name,
      site: site.name,
      namespace: nodeNs.name,
      address: node.address,
      ...(node.address6 !== undefined ? { address6: node.address6 } : {}),
      overlayIp: node.overlayIp,
      sshHost: node.ssh.host,
      sshPort: node.ssh.port,
      sshUser: node.ssh.user,
      sudoUsers,
    });
  });

  const operatorInternet = labPublicAddress('the operator');
  joinInternet(operator, 'wan', 'op', operatorInternet);
  if (problems.length > 0) throw badInput(`the lab cannot replicate ${inventory.source}: ${problems.join('; ')}`);

  return {
    lab,
    prefix: namespacePrefix(lab),
    namespaces,
    links,
    nodes,
    routers,
    operator: { namespace: operator.name, internetAddress: operatorInternet, lanAddresses: operatorLan },
    internet: { namespace: internet.name },
  };
}

const formatPrefix = (cidr: Cidr) => `${cidr.network}/${cidr.prefix}`;

/**
 * Each nat/lan site's IPv6 /64 (the one its nodes' `address6` share), checking what the lab can build: addresses
 * inside LAB_IPV6_PREFIX only (the lab never makes a real network's addresses), one /64 per site, not shared with
 * another site, no public node's address inside a site's /64, no IPv6 behind a carrier NAT.
 */
function planIpv6Prefixes(inventory: Inventory, problems: string[]): Map<string, string> {
  const doc = parseIpv6Prefix(LAB_IPV6_PREFIX)!;
  const site64 = new Map<string, string>();
  const owner64 = new Map<string, string>();
  const sites = new Map(inventory.sites.map((s) => [s.name, s]));
  const withV6 = inventory.nodes.filter((n) => n.address6 !== undefined);
  for (const node of withV6) {
    const site = sites.get(node.site);
    const where = `node ${node.name}`;
    if (!ipv6PrefixContains(doc, node.address6!)) {
      problems.push(`${where}: address6 ${node.address6} is outside ${LAB_IPV6_PREFIX}, the only IPv6 the lab builds`);
      continue;
    }
    if (!site || site.kind === 'public') continue;
    if (site.kind === 'nat' && site.carrier) {
      problems.push(`${where}: the lab gives no IPv6 to a carrier NAT site (${site.name}): remove address6 for the lab`);
      continue;
    }
    const prefix = ipv6PrefixOf(node.address6!, 64)!;
    const previous = site64.get(site.name);
    if (previous !== undefined && previous !== prefix)
      problems.push(`${where}: address6 ${node.address6} is not in site ${site.name}'s /64 ${previous} (the lab routes one /64 per site)`);
    else if (owner64.has(prefix) && owner64.get(prefix) !== site.name)
      problems.push(`${where}: the /64 ${prefix} is already site ${owner64.get(prefix)}'s`);
    else {
      site64.set(site.name, prefix);
      owner64.set(prefix, site.name);
    }
  }
  for (const node of withV6) {
    if (sites.get(node.site)?.kind !== 'public') continue;
    const inside = [...owner64].find(([prefix]) => ipv6PrefixContains(parseIpv6Prefix(prefix)!, node.address6!));
    if (inside) problems.push(`node ${node.name}: address6 ${node.address6} is inside site ${inside[1]}'s /64 ${inside[0]}`);
  }
  return site64;
}

/** Resolves `lab exec` targets that are not nodes: `router:<site>`, `carrier:<site>`, `internet`, `operator`. */
export function infraNamespace(plan: Pick<LabPlan, 'routers' | 'operator' | 'internet'>, target: string): string | undefined {
  if (target === 'internet') return plan.internet.namespace;
  if (target === 'operator') return plan.operator.namespace;
  if (target.startsWith('router:')) return plan.routers.find((r) => r.site === target.slice('router:'.length))?.namespace;
  if (target.startsWith('carrier:')) return plan.routers.find((r) => r.site === target.slice('carrier:'.length))?.carrier?.namespace;
  return undefined;
}

export type { Node, Site };
