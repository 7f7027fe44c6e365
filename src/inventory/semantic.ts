/**
 * Rules that involve more than one field: site kinds, duplicates, containment and overlaps of addresses and
 * networks, forwarded ports, root access, and reachability (through the same endpoint rules the configs use).
 * Runs on whatever passed the structural check: a field that failed it is undefined here and simply skipped,
 * so one bad value does not hide the other problems, nor cause follow-on noise.
 */
import { cidrContains, cidrsOverlap, isIpv4, parseCidr, reservedAddressOf, type Cidr } from '../net/ipv4.js';
import { pairCanConnect } from '../topology/endpoints.js';
import { pairsOfKind, planPaths } from '../topology/paths.js';
import { didYouMean, formatPath, listWords, type PathPart, type Problem } from '../schema/problems.js';
import type { EndpointOverride, Inventory, Node, RelaySetting, Site } from './types.js';
import { parseEndpointText, RELAY_MODES } from './spec.js';
import { ownValue } from '../schema/spec.js';
import { canonicalIpv6, endpointIpv6Problem } from '../net/ipv6.js';
import { keyPositionOf, positionOf, type TreeNode } from '../schema/yaml-tree.js';

export interface RawSsh {
  host?: string;
  port?: number;
  user?: string;
  identityFile?: string;
  become?: 'sudo' | 'none';
}
export interface RawSite {
  lan?: string;
  router?: string;
  nat?: { publicIp?: string; publicHost?: string; carrier?: boolean };
  public?: boolean;
  lab?: { nat?: 'symmetric' | 'port-preserving' };
}
export interface RawNode {
  site?: string;
  address?: string;
  address6?: string;
  overlayIp?: string;
  listenPort?: number;
  forwardedPort?: number;
  endpoint?: string;
  relay?: string;
  ssh?: RawSsh;
}
export interface RawMesh {
  interface?: string;
  network?: string;
  listenPort?: number;
  mtu?: number;
  persistentKeepalive?: number;
  rpFilter?: 'loose' | 'strict' | 'off' | 0 | 1 | 2;
  reservedCidrs?: (string | undefined)[];
  relay?: string;
}
/** The structurally checked file: every present field is valid or undefined (a key written with a bad value). */
export interface RawInventory {
  mesh?: RawMesh;
  defaults?: { ssh?: RawSsh };
  sites?: Record<string, RawSite | undefined>;
  nodes?: Record<string, RawNode | undefined>;
}

export type SiteKind = Site['kind'];

/** nat: has nat; public: public: true; lan: has lan and no nat. undefined when it cannot be told (reported). */
export function siteKindOf(site: RawSite | undefined): SiteKind | undefined {
  if (!site) return undefined;
  if (site.public === true) return 'public';
  if ('public' in site && site.public === undefined) return undefined; // public: <not a boolean>, reported already
  if ('nat' in site) return 'nat';
  if ('lan' in site) return 'lan';
  return undefined;
}

const cidrOf = (text: string | undefined): Cidr | undefined => (text === undefined ? undefined : parseCidr(text));

/**
 * IPv4 blocks where no address of a mesh can be (RFC 6890's special-purpose registry, the parts no host is reached
 * at): a node would answer a loopback peer itself (the kernel's local table routes 127.0.0.0/8 to lo ahead of any
 * route to wg0, so pings "pass" while nothing crosses the tunnel), and the others are not unicast destinations.
 * Refused in the overlay network, site LANs, NAT public IPs, public node addresses and endpoint hosts.
 */
const UNUSABLE_IPV4: readonly { block: Cidr; why: string }[] = [
  { block: parseCidr('0.0.0.0/8')!, why: '"this network" (RFC 1122 3.2.1.3): no host is reached there' },
  {
    block: parseCidr('127.0.0.0/8')!,
    why: 'loopback (RFC 1122 3.2.1.3): every node answers it itself, nothing would go through the tunnel',
  },
  { block: parseCidr('224.0.0.0/4')!, why: 'multicast (RFC 5771), not an address of one host' },
  { block: parseCidr('255.255.255.255/32')!, why: 'the limited broadcast address (RFC 919), not an address of one host' },
];

/** Why an address or network cannot be part of a mesh ("127.0.0.1 is in 127.0.0.0/8: loopback ..."), or undefined. */
export function unusableIpv4Problem(text: string): string | undefined {
  const cidr = isIpv4(text) ? parseCidr(`${text}/32`) : parseCidr(text);
  if (!cidr) return undefined;
  const hit = UNUSABLE_IPV4.find((u) => cidrsOverlap(u.block, cidr));
  if (!hit) return undefined;
  const block = `${hit.block.network}/${hit.block.prefix}`;
  return cidr.prefix === 32 && hit.block.prefix === 32
    ? `${text} is ${hit.why}`
    : `${text} ${isIpv4(text) ? 'is in' : 'overlaps'} ${block}, ${hit.why}`;
}

/**
 * The most nodes an inventory may name: a full mesh's pairs grow with N^2 (1,000 nodes: 499,500 pairs, each node
 * holding 999 peers), and 1,000 is the size `up`, `plan` and `verify` are measured at in the simulated farm
 * (docs/farm.md). Larger inventories are refused before any check that walks every pair.
 */
export const MAX_MESH_NODES = 1000;

export function checkSemantics(raw: RawInventory, tree: TreeNode | undefined): Problem[] {
  const problems: Problem[] = [];
  const report = (path: PathPart[], message: string, at = positionOf(tree, path)) =>
    problems.push({ ...at, path: formatPath(path), message });
  const reportAtKey = (path: PathPart[], message: string) => report(path, message, keyPositionOf(tree, path));

  const mesh = raw.mesh ?? {};
  const overlay = cidrOf(mesh.network);
  const sites = raw.sites ?? {};
  const nodes = raw.nodes ?? {};
  const siteNames = Object.keys(sites);
  // before any check that looks at every pair (Q9: 6,000 nodes ran validate out of memory after ~5 minutes)
  const count = Object.keys(nodes).length;
  if (count > MAX_MESH_NODES) {
    reportAtKey(
      ['nodes'],
      `${count} nodes: meshctl builds a full mesh (every node a peer of every other: ${((count * (count - 1)) / 2).toLocaleString('en-US')} pairs) and supports up to ${MAX_MESH_NODES.toLocaleString('en-US')} nodes, the largest size it is measured at (docs/farm.md); split the nodes into meshes of their own`,
    );
    return problems;
  }

  // --- sites -----------------------------------------------------------------------------------------------
  const kinds = new Map<string, SiteKind | undefined>();
  const lans = new Map<string, Cidr>();
  const publicIps = new Map<string, string>(); // publicIp -> site
  const carrierIps = new Map<string, boolean>(); // publicIp -> the first site that named it is behind carrier NAT
  const publicHosts = new Map<string, string>(); // publicHost (lowercase, no final dot) -> site
  for (const [name, site] of Object.entries(sites)) {
    if (!site) continue;
    const kind = siteKindOf(site);
    kinds.set(name, kind);
    const here = (field: string): PathPart[] => ['sites', name, field];
    // a site whose public: held no boolean was reported already; public: false says nothing of what the site is
    if (kind === undefined && !('public' in site && site.public === undefined)) {
      reportAtKey(['sites', name], 'a site needs lan (plus router and nat for a NATed LAN), or public: true');
      continue;
    }
    if (kind === 'public') {
      for (const field of ['lan', 'router', 'nat'] as const) {
        if (field in site)
          reportAtKey(
            here(field),
            `a public site has no ${field}: its nodes hold public addresses (remove ${field}, or drop public: true)`,
          );
      }
      if ('lab' in site)
        reportAtKey(here('lab'), 'a public site has no router for the lab to build: lab settings are only for nat and lan sites');
      continue;
    }
    if (kind === 'nat') {
      if (!('lan' in site)) report(here('lan'), 'missing required field: a nat site needs its LAN (e.g. lan: 192.168.15.0/24)');
      if (!('router' in site))
        report(here('router'), "missing required field: a nat site needs its router's LAN address (e.g. router: 192.168.15.1)");
    }
    const lan = cidrOf(site.lan);
    if (lan) lans.set(name, lan);
    const unusableLan = lan ? unusableIpv4Problem(site.lan!) : undefined;
    if (unusableLan) report(here('lan'), unusableLan);
    if (lan && site.router !== undefined) {
      if (!cidrContains(lan, site.router)) report(here('router'), `${site.router} is not inside the LAN ${site.lan}`);
      else {
        const special = reservedAddressOf(lan, site.router);
        if (special) report(here('router'), `${site.router} is the ${special} address of the LAN ${site.lan}`);
      }
    }
    // publicHost (a DNS name) may stand in for publicIp: one of them says where peers dial the site
    if (kind === 'nat' && site.nat && !('publicIp' in site.nat) && !('publicHost' in site.nat))
      report(
        ['sites', name, 'nat', 'publicIp'],
        'missing required field (e.g. publicIp: 203.0.113.10, or publicHost: home.example.net for a dynamic address)',
        keyPositionOf(tree, ['sites', name, 'nat']),
      );
    const publicHost = site.nat?.publicHost?.toLowerCase().replace(/\.$/, '');
    if (publicHost !== undefined) {
      const other = publicHosts.get(publicHost);
      if (other !== undefined)
        report(['sites', name, 'nat', 'publicHost'], `${site.nat!.publicHost} is already the public name of site ${other}`);
      else publicHosts.set(publicHost, name);
    }
    const publicIp = site.nat?.publicIp;
    if (publicIp !== undefined) {
      const path: PathPart[] = ['sites', name, 'nat', 'publicIp'];
      const other = publicIps.get(publicIp);
      // a carrier-grade NAT's address is shared with the carrier's other customers (RFC 6598's purpose): sites that
      // are all behind carrier NAT may name the same one (Q4 item 7: two homes on one ISP's CGNAT were refused). None
      // of them has a forward (checked per node below) and nobody dials it; NAT discovery and the moved-address
      // sightings judge each site by its own nodes, so the shared address confuses neither
      const shared = other !== undefined && site.nat?.carrier === true && carrierIps.get(publicIp) === true;
      if (other !== undefined && !shared)
        report(
          path,
          `${publicIp} is already the public IP of site ${other}${site.nat?.carrier === true || carrierIps.get(publicIp) === true ? ' (only sites that are all behind the same carrier NAT, nat.carrier: true on each, share one)' : ''}`,
        );
      else if (other === undefined) {
        publicIps.set(publicIp, name);
        carrierIps.set(publicIp, site.nat?.carrier === true);
      }
      if (lan && cidrContains(lan, publicIp))
        report(path, `${publicIp} is inside the site's own LAN ${site.lan}: publicIp is the router's address on the internet side`);
      if (overlay && cidrContains(overlay, publicIp)) report(path, `${publicIp} is inside the overlay network ${mesh.network}`);
      const unusable = unusableIpv4Problem(publicIp);
      if (unusable) report(path, unusable);
    }
  }

  // --- the overlay network against LANs and reserved networks ----------------------------------------------
  if (overlay) {
    const unusable = unusableIpv4Problem(mesh.network!);
    if (unusable) report(['mesh', 'network'], unusable);
    for (const [name, lan] of lans) {
      if (cidrsOverlap(overlay, lan)) report(['mesh', 'network'], `${mesh.network} overlaps the LAN ${sites[name]!.lan} of site ${name}`);
    }
    (mesh.reservedCidrs ?? []).forEach((text, i) => {
      const reserved = cidrOf(text);
      if (reserved && cidrsOverlap(overlay, reserved)) {
        report(['mesh', 'network'], `${mesh.network} overlaps the reserved network ${text} (mesh.reservedCidrs[${i}])`);
      }
    });
  }

  // --- nodes -----------------------------------------------------------------------------------------------
  const nodeNames = Object.keys(nodes);
  if (raw.nodes && nodeNames.length < 2) {
    reportAtKey(['nodes'], `a mesh needs at least 2 nodes, found ${nodeNames.length}`);
  }
  const overlayOwners = new Map<string, string>(); // overlayIp -> node
  const addressOwners = new Map<string, string>(); // `${site}/${address}` (or `public/${address}`) -> node
  const forwardOwners = new Map<string, string>(); // `${site}/${port}` -> node
  const address6Owners = new Map<string, string>(); // canonical address6 -> node
  const defaults = raw.defaults?.ssh ?? {};
  const sshTargets = new Map<string, string>(); // `host:port` after defaults -> node
  const duplicateAddress = new Set<string>(); // nodes whose address is reported as taken (their default ssh.host too)
  const allOverlayIps = new Map(
    Object.entries(nodes).flatMap(([name, node]) => (node?.overlayIp !== undefined ? [[node.overlayIp, name] as const] : [])),
  );
  /**
   * Two nodes with one SSH target (host and port after defaults, host compared case-insensitively) would be one
   * machine configured twice. An ssh.host that is an IPv4 address inside the overlay network, or another node's
   * overlay address, is only reachable through the mesh: once wg-quick routes the overlay into the interface, the
   * way meshctl logs in goes through the tunnel it is building (or nowhere), and the node is cut off.
   */
  const checkSshTarget = (name: string, node: RawNode, ownSsh: RawSsh) => {
    const here = (...field: PathPart[]): PathPart[] => ['nodes', name, ...field];
    const ownHost = 'host' in ownSsh;
    const host = ownHost ? ownSsh.host : node.address;
    const port = 'port' in ownSsh ? ownSsh.port : 'port' in defaults ? defaults.port : 22;
    if (host === undefined || port === undefined) return; // a bad value, reported already
    const at = ownHost ? here('ssh', 'host') : 'port' in ownSsh ? here('ssh', 'port') : here('address');
    const key = `${host.toLowerCase()}:${port}`;
    const other = sshTargets.get(key);
    if (other !== undefined && !ownHost && duplicateAddress.has(name)) {
      // the same address, reported as such: saying it again about the SSH target would be noise
    } else if (other !== undefined)
      report(
        at,
        `SSH target ${host} port ${port} is already used by node ${other}: two nodes cannot be one machine (set ssh.host or ssh.port)`,
      );
    else sshTargets.set(key, name);
    if (!ownHost || !isIpv4(host)) return; // the node's own address is judged as an address above
    const owner = allOverlayIps.get(host);
    if (owner !== undefined)
      report(
        here('ssh', 'host'),
        `ssh.host ${host} is the overlay address of ${owner === name ? 'this node' : `node ${owner}`}: meshctl would log in through the mesh it is building, and lock itself out`,
      );
    else if (overlay && cidrContains(overlay, host))
      report(
        here('ssh', 'host'),
        `ssh.host ${host} is inside the overlay network ${mesh.network}: once the mesh is up, SSH to it goes into the tunnel and meshctl locks itself out`,
      );
  };
  /**
   * A node's stated endpoint: one host:port cannot be two nodes (another override, a public node's
   * address:listenPort, a NAT site's publicIp:forwardedPort), and an IPv4 host inside the overlay would be dialled
   * through the tunnel it is meant to carry.
   */
  const computedEndpoints = new Map<string, string>(); // host:port -> node dialled there without an override
  for (const [name, node] of Object.entries(nodes)) {
    if (!node || node.site === undefined) continue;
    const kind = kinds.get(node.site);
    const site = ownValue(sites, node.site);
    if (kind === 'public' && node.address !== undefined)
      computedEndpoints.set(`${node.address}:${node.listenPort ?? mesh.listenPort ?? 51820}`, name);
    if (kind === 'nat' && node.forwardedPort !== undefined && site?.nat?.publicIp !== undefined)
      computedEndpoints.set(`${site.nat.publicIp}:${node.forwardedPort}`, name);
    const address6 = node.address6 === undefined ? undefined : canonicalIpv6(node.address6);
    if (address6 !== undefined) computedEndpoints.set(`${address6}:${node.listenPort ?? mesh.listenPort ?? 51820}`, name);
    if (kind === 'nat' && node.forwardedPort !== undefined && site?.nat?.publicHost !== undefined)
      computedEndpoints.set(`${site.nat.publicHost.toLowerCase().replace(/\.$/, '')}:${node.forwardedPort}`, name);
  }
  const endpointOwners = new Map<string, string>(); // host:port (host lowercased) -> node stating it
  const checkEndpoint = (name: string, text: string) => {
    const parsed = parseEndpointText(text);
    if (!parsed.ok) return; // reported by the structural check
    const path: PathPart[] = ['nodes', name, 'endpoint'];
    const key = `${canonicalIpv6(parsed.host) ?? parsed.host.toLowerCase()}:${parsed.port}`;
    const other = endpointOwners.get(key) ?? computedEndpoints.get(key);
    if (other !== undefined && other !== name)
      report(path, `${text} is already where node ${other} is dialled: one host:port reaches one node`);
    else endpointOwners.set(key, name);
    // an IPv6 literal: its own unusable ranges, and an IPv4-mapped one judged as the IPv4 address it is (Q10 F4)
    const v6 = isIpv4(parsed.host) ? {} : endpointIpv6Problem(parsed.host);
    if (v6.message) report(path, v6.message);
    const ipv4 = isIpv4(parsed.host) ? parsed.host : v6.ipv4;
    if (ipv4 !== undefined && overlay && cidrContains(overlay, ipv4))
      report(path, `${ipv4} is inside the overlay network ${mesh.network}: peers would dial it through the tunnel it carries`);
    const unusable = ipv4 !== undefined ? unusableIpv4Problem(ipv4) : undefined;
    if (unusable) report(path, unusable);
  };
  for (const [name, node] of Object.entries(nodes)) {
    if (!node) continue;
    const here = (...field: PathPart[]): PathPart[] => ['nodes', name, ...field];
    const siteName = node.site;
    // own properties only: `site: constructor` must not find Object.prototype.constructor
    const site = siteName === undefined ? undefined : ownValue(sites, siteName);
    const kind = siteName === undefined ? undefined : kinds.get(siteName);
    if (siteName !== undefined && !Object.hasOwn(sites, siteName)) {
      const guess = didYouMean(siteName, siteNames);
      report(
        here('site'),
        siteNames.length === 0
          ? `unknown site "${siteName}": no sites are defined`
          : `unknown site "${siteName}"${guess ? `; did you mean ${guess}?` : ` (sites: ${listWords(siteNames, 'and')})`}`,
      );
    }

    // underlay address
    const address = node.address;
    if (address !== undefined && site && kind) {
      if (kind === 'public') {
        const key = `public/${address}`;
        const other = addressOwners.get(key);
        if (other !== undefined) {
          duplicateAddress.add(name);
          report(here('address'), `${address} is already the public address of ${other}`);
        } else addressOwners.set(key, name);
        const natSite = publicIps.get(address);
        if (natSite !== undefined) report(here('address'), `${address} is the public IP of site ${natSite}`);
        for (const [lanSite, lan] of lans) {
          if (cidrContains(lan, address)) {
            report(
              here('address'),
              `${address} is inside the LAN ${sites[lanSite]!.lan} of site ${lanSite}: nodes there would look for it on their LAN`,
            );
          }
        }
        if (overlay && cidrContains(overlay, address)) report(here('address'), `${address} is inside the overlay network ${mesh.network}`);
        const unusable = unusableIpv4Problem(address);
        if (unusable) report(here('address'), unusable);
      } else {
        const lan = lans.get(siteName!);
        if (lan && !cidrContains(lan, address)) report(here('address'), `${address} is not inside the LAN ${site.lan} of site ${siteName}`);
        else if (lan) {
          const special = reservedAddressOf(lan, address);
          if (special) report(here('address'), `${address} is the ${special} address of the LAN ${site.lan} of site ${siteName}`);
        }
        if (site.router !== undefined && site.router === address) report(here('address'), `${address} is the router of site ${siteName}`);
        const key = `${siteName}/${address}`;
        const other = addressOwners.get(key);
        if (other !== undefined) {
          duplicateAddress.add(name);
          report(here('address'), `${address} is already the address of ${other} in site ${siteName}`);
        } else addressOwners.set(key, name);
      }
    }

    // public IPv6 address: one per node (compared in canonical form: 2001:DB8::1 is 2001:db8:0::1)
    const address6 = node.address6 === undefined ? undefined : canonicalIpv6(node.address6);
    if (address6 !== undefined) {
      const other = address6Owners.get(address6);
      if (other !== undefined) report(here('address6'), `${node.address6} is already the IPv6 address of ${other}`);
      else address6Owners.set(address6, name);
    }

    // forwarded port
    if (node.forwardedPort !== undefined && kind) {
      if (kind === 'public') {
        report(
          here('forwardedPort'),
          `forwardedPort is only for nodes in a nat site; site ${siteName} is public (its nodes are dialled at address:listenPort)`,
        );
      } else if (kind === 'lan') {
        report(
          here('forwardedPort'),
          `forwardedPort is only for nodes in a nat site; site ${siteName} is a lan site with no way in (add nat: { publicIp } to it)`,
        );
      } else if (site?.nat?.carrier === true) {
        report(
          here('forwardedPort'),
          `site ${siteName} is behind carrier NAT (nat.carrier: true): no port can be forwarded to it through the carrier, so remove forwardedPort (its nodes dial out; set endpoint if the node is reachable another way)`,
        );
      } else {
        const key = `${siteName}/${node.forwardedPort}`;
        const other = forwardOwners.get(key);
        const on = site?.nat?.publicHost ?? site?.nat?.publicIp ?? `site ${siteName}'s public IP`;
        if (other !== undefined) report(here('forwardedPort'), `port ${node.forwardedPort} on ${on} is already forwarded to ${other}`);
        else forwardOwners.set(key, name);
      }
    }

    // endpoint override
    if (node.endpoint !== undefined) checkEndpoint(name, node.endpoint);

    // overlay address
    const overlayIp = node.overlayIp;
    if (overlayIp !== undefined) {
      const other = overlayOwners.get(overlayIp);
      if (other !== undefined) report(here('overlayIp'), `${overlayIp} is already the overlay IP of ${other}`);
      else overlayOwners.set(overlayIp, name);
      if (overlay && !cidrContains(overlay, overlayIp))
        report(here('overlayIp'), `${overlayIp} is outside the overlay network ${mesh.network}`);
      else if (overlay) {
        const special = reservedAddressOf(overlay, overlayIp);
        if (special) report(here('overlayIp'), `${overlayIp} is the ${special} address of the overlay network ${mesh.network}`);
      }
    }

    // the SSH target: one machine per node, and never a path through the mesh being built (issue 8, kind 5)
    const ownSsh = node.ssh ?? {};
    checkSshTarget(name, node, ownSsh);

    // root access: become none needs user root
    const user = 'user' in ownSsh ? ownSsh.user : defaults.user;
    const become = 'become' in ownSsh ? ownSsh.become : defaults.become;
    if (become === 'none' && user !== undefined && user !== 'root') {
      const message = `user ${user} with become: none cannot get root, and meshctl needs root: use become: sudo (passwordless) or user: root`;
      if ('become' in ownSsh) report(here('ssh', 'become'), message);
      else if ('user' in ownSsh) report(here('ssh', 'user'), message);
      else report(['defaults', 'ssh', 'become'], message);
    }
  }

  // --- relays: a named relay is a node of a public site (not the node itself) --------------------------------
  const checkNamedRelay = (path: PathPart[], text: string | undefined, self?: string) => {
    if (text === undefined || (RELAY_MODES as readonly string[]).includes(text)) return;
    if (!Object.hasOwn(nodes, text)) {
      const publicNodes = nodeNames.filter((n) => {
        const site = ownValue(nodes, n)?.site;
        return site !== undefined && kinds.get(site) === 'public';
      });
      const guess = didYouMean(text, publicNodes);
      report(path, `relay ${text} is not a node${guess ? `; did you mean ${guess}?` : ''} (use auto, always, never or a node name)`);
    } else if (text === self) report(path, `${self} cannot relay its own pairs: name another public node, or auto`);
    else {
      const site = ownValue(nodes, text)?.site;
      if (site !== undefined && kinds.get(site) !== undefined && kinds.get(site) !== 'public')
        report(
          path,
          `relay ${text} is in site ${site}, which is not public: a relay must be dialable by both ends (a node in a public site)`,
        );
      else {
        // Q4 item 7b: a relay that is itself `relay: never` relays nobody's pairs (../topology/paths.ts), so the pair
        // went through another relay without a word; both fields named, the other one with its line
        const own = ownValue(nodes, text)?.relay;
        const neverAt: PathPart[] | undefined =
          own === 'never' ? ['nodes', text, 'relay'] : own === undefined && mesh.relay === 'never' ? ['mesh', 'relay'] : undefined;
        if (neverAt)
          report(
            path,
            `relay ${text} relays no pairs: ${formatPath(neverAt)} is never (line ${positionOf(tree, neverAt).line}); name another public node or auto here, or let ${text} relay`,
          );
      }
    }
  };
  checkNamedRelay(['mesh', 'relay'], mesh.relay);
  for (const [name, node] of Object.entries(nodes)) if (node) checkNamedRelay(['nodes', name, 'relay'], node.relay, name);

  // --- reachability: only when every node's site is known, else the answer would be wrong -------------------
  const allNodes = Object.entries(nodes);
  const decidable =
    allNodes.length >= 2 &&
    allNodes.every(
      ([, node]) =>
        node?.site !== undefined &&
        kinds.get(node.site) !== undefined &&
        !('forwardedPort' in node && node.forwardedPort === undefined) && // a bad forwardedPort: unknown, not absent
        !('address6' in node && node.address6 === undefined) &&
        !('endpoint' in node && node.endpoint === undefined),
    );
  if (decidable) {
    const inventory = reachabilityModel(sites, kinds, nodes, mesh.relay);
    for (const node of inventory.nodes) {
      if (inventory.nodes.some((peer) => peer !== node && pairCanConnect(inventory, node, peer))) continue;
      const why =
        kinds.get(node.site) === 'lan'
          ? `site ${node.site} is a lan site with no way in`
          : `it has no forwardedPort on site ${node.site}'s router`;
      reportAtKey(
        ['nodes', node.name],
        `no peer could ever reach ${node.name}: nodes outside site ${node.site} cannot dial it (${why}), and it can dial no other node (none is public or has a forwardedPort)`,
      );
    }
    // relay: never where a pair has no direct path: refused here, so validate, plan and up stop before anything
    for (const { a, b, path } of pairsOfKind(planPaths(inventory), 'none')) {
      if (path.kind !== 'none' || !path.refusedBy) continue;
      const at: PathPart[] = 'node' in path.refusedBy ? ['nodes', path.refusedBy.node, 'relay'] : ['mesh', 'relay'];
      report(
        at,
        `${a} <-> ${b} has no direct path and relay: never forbids a relay: ${path.why.replace(/, and relay: never.*$/, '')} (use relay: auto, or give one side a way in)`,
      );
    }
  }
  return problems;
}

/** `{ endpoint }` for a valid endpoint text, else nothing (an invalid one is reported by the structural check). */
export function endpointOf(text: string | undefined): { endpoint?: EndpointOverride } {
  if (text === undefined) return {};
  const parsed = parseEndpointText(text);
  return parsed.ok ? { endpoint: { host: parsed.host, port: parsed.port } } : {};
}

/** `{ address6 }` in canonical form for a valid address, else nothing (an invalid one is reported by the structural check). */
export function address6Of(text: string | undefined): { address6?: string } {
  const address6 = text === undefined ? undefined : canonicalIpv6(text);
  return address6 === undefined ? {} : { address6 };
}

/** The normalised relay setting of a valid `relay:` text (`p-1` -> { via: 'p-1' }); nothing when absent. */
export function relaySettingOf(text: string | undefined): { relay?: RelaySetting } {
  if (text === undefined) return {};
  return { relay: (RELAY_MODES as readonly string[]).includes(text) ? (text as RelaySetting) : { via: text } };
}

/** Just enough of an Inventory for the endpoint rules: which side can dial which. */
function reachabilityModel(
  sites: Record<string, RawSite | undefined>,
  kinds: Map<string, SiteKind | undefined>,
  nodes: Record<string, RawNode | undefined>,
  relay?: string,
): Inventory {
  const modelSites: Site[] = [...kinds].map(([name, kind]): Site => {
    const site = sites[name] ?? {};
    if (kind === 'public') return { name, kind };
    if (kind === 'nat')
      return {
        name,
        kind,
        lan: site.lan ?? '',
        router: site.router ?? '',
        publicIp: site.nat?.publicIp ?? '',
        ...(site.nat?.publicHost !== undefined ? { publicHost: site.nat.publicHost } : {}),
        ...(site.nat?.carrier === true ? { carrier: true } : {}),
      };
    return { name, kind: 'lan', lan: site.lan ?? '' };
  });
  const modelNodes: Node[] = Object.entries(nodes).map(([name, node]) => ({
    name,
    site: node!.site!,
    address: node!.address ?? '',
    overlayIp: node!.overlayIp ?? '',
    listenPort: node!.listenPort ?? 0,
    forwardedPort: node!.forwardedPort,
    ...address6Of(node!.address6),
    ...endpointOf(node!.endpoint),
    ...relaySettingOf(node!.relay),
    ssh: { host: '', port: 22, user: 'root', become: 'none' },
  }));
  return {
    source: '',
    mesh: {
      interface: '',
      network: '',
      listenPort: 0,
      mtu: 0,
      persistentKeepalive: 0,
      rpFilter: 2,
      reservedCidrs: [],
      ...relaySettingOf(relay),
    },
    sites: modelSites,
    nodes: modelNodes,
  };
}
