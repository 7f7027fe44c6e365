/**
 * `meshctl import`, the pure half: an inventory inferred from what a hand-built wg-quick mesh shows on its nodes
 * (issue 9). Facts in (../facts/node-facts.ts, plus the underlay addresses of ./probe.ts), a draft inventory with
 * notes out; ./yaml.ts writes it. Nothing secret is read: wg0.conf arrives filtered on the node (no PrivateKey or
 * PresharedKey line), and public keys come from `wg show IFACE public-key` / `wg pubkey` on the node.
 *
 * What is inferred, and from what:
 * - a node's overlay address and the mesh network: its interface's Address (live first, else the file's);
 *   the network is the Address's own subnet when every node writes the same one, else the smallest block of at
 *   least /24 holding every overlay address (noted);
 * - listen port, MTU: the live interface (file as fallback); the most common value is the mesh's, others per node;
 * - keepalive: the most common PersistentKeepalive of the files (0 when none);
 * - who dials whom, and so the sites: each peer's configured Endpoint (the file, not the live one, which roams).
 *   An endpoint at an address the node holds is direct; at another address it is a NAT router's public IP with a
 *   port-forward (nat site, `forwardedPort`). Nodes on one underlay subnet form a site: nat when someone dials a
 *   member through a public IP, public when members are dialled directly from other sites, else a LAN with no way
 *   in. That last guess, a NAT site no one dials, the router (the default gateway) and the made-up site names are
 *   flagged in notes.
 * Refused (problems): a node without a running interface or key, two nodes with one public key, a peer that is none
 * of the given hosts (the import would drop it; a stale key at a host's overlay address, or a host whose interface
 * does not run, said as such), a node whose key pair the adopting script would refuse to keep (foreseen by the
 * probe, ./probe.ts adoptCheckScript, so that no node is changed unless all can be), and what the first `up` would
 * drop although it carries traffic (./losses.ts) unless InferOptions.dropUnsupported; what it drops otherwise is a note.
 */
import type { NodeFacts } from '../facts/node-facts.js';
import type { SshTarget } from '../inventory/types.js';
import { cidrContains, formatCidr, intToIp, ipToInt, isIpv4, parseCidr } from '../net/ipv4.js';
import { parseWgQuickConfig } from '../render/wgquick.js';
import { importLosses, scanConfig } from './losses.js';
import type { SecretLines } from './probe.js';

/** One host to import, from the skeleton or a --host flag (./skeleton.ts). */
export interface ImportTarget {
  name: string;
  ssh: SshTarget;
}

/** The node's underlay: IPv4 addresses of its non-WireGuard interfaces and its default route (./probe.ts). */
export interface UnderlayFacts {
  /** e.g. { dev: 'host0', cidr: '192.168.15.2/24' } */
  addresses: Array<{ dev: string; cidr: string }>;
  gateway?: string;
  gatewayDev?: string;
}

export interface ImportedHost {
  target: ImportTarget;
  facts: NodeFacts;
  underlay: UnderlayFacts;
  /** the lines of the wg-quick file the probe's secret filter dropped (./probe.ts); absent from older captures */
  secretLines?: SecretLines;
  /** the adopting script's refusal, foreseen read-only by the probe (./probe.ts adoptCheckScript) */
  adoptRefusal?: string;
  /**
   * the node's WireGuard files are not root's or not root's alone (./probe.ts judgeImportFileModes: up's baseline
   * message, naming each file and the fix); the node is refused before any is changed
   */
  fileModeRefusal?: string;
}

/** Options of inferInventory. */
export interface InferOptions {
  /**
   * --drop-unsupported: what cuts traffic when the first `up` drops it (./losses.ts: a PresharedKey, a network
   * behind a peer in AllowedIPs, Table = off with its own routes, a live-only peer or AllowedIPs prefix) is a note, not a refusal.
   */
  dropUnsupported?: boolean;
}

/** Something the import guessed or could not infer: printed, and written as a comment next to the field. */
export interface ImportNote {
  /** the YAML path it belongs to, e.g. `sites.nat-1` or `nodes.ms-1.site` or `mesh.network` */
  at: string;
  text: string;
}

export type DraftSite =
  | { name: string; kind: 'nat'; lan: string; router: string; publicIp: string }
  | { name: string; kind: 'public' }
  | { name: string; kind: 'lan'; lan: string; router?: string };

export interface DraftNode {
  name: string;
  site: string;
  address: string;
  overlayIp: string;
  /** only when it differs from the mesh's */
  listenPort?: number;
  forwardedPort?: number;
  ssh: SshTarget;
  /** the node's public key (kept by the import; for the notes and the test of the next `up`) */
  publicKey: string;
}

export interface DraftInventory {
  mesh: { interface: string; network: string; listenPort: number; mtu: number; persistentKeepalive: number };
  sites: DraftSite[];
  nodes: DraftNode[];
}

export interface ImportResult {
  draft?: DraftInventory;
  notes: ImportNote[];
  /** reasons the import cannot be written; non-empty means no draft */
  problems: string[];
}

/** A peer as the node's file (or, without a file, the live interface) configures it. */
interface PeerView {
  publicKey: string;
  allowedIps: string[];
  endpoint?: string;
  keepalive?: number;
}

interface NodeView {
  host: ImportedHost;
  name: string;
  publicKey: string;
  overlayIp: string;
  /** the Address with its prefix, as written */
  addressCidr: string;
  listenPort: number;
  mtu?: number;
  peers: PeerView[];
  ownIps: Set<string>;
}

const mostCommon = <T>(values: readonly T[]): T | undefined => {
  const counts = new Map<T, number>();
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1);
  let best: T | undefined;
  let bestCount = 0;
  for (const [v, c] of counts)
    if (c > bestCount) {
      best = v;
      bestCount = c;
    }
  return best;
};

const ipOf = (cidr: string) => cidr.split('/')[0]!;

function splitHostPort(endpoint: string): { host: string; port: number } | undefined {
  const m = /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(endpoint.trim());
  return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
}

/** What one node shows, or a problem. */
function viewOf(host: ImportedHost, iface: string): NodeView | string {
  const { facts, target } = host;
  const name = target.name;
  const publicKey = facts.interfacePublicKey ?? facts.keys.publicKey;
  if (!facts.interfaces.includes(iface) || !publicKey)
    return `${name}: no running ${iface} with a key (is wg-quick@${iface} up?): nothing to import`;
  const parsed = facts.config.text !== undefined ? parseWgQuickConfig(facts.config.text) : undefined;
  const addressCidr = [...(facts.live?.addresses ?? []), ...(parsed?.interface?.addresses ?? [])].find((a) => isIpv4(ipOf(a)));
  if (!addressCidr) return `${name}: ${iface} has no IPv4 address`;
  const listenPort = facts.live?.listenPort ?? parsed?.interface?.listenPort;
  if (listenPort === undefined) return `${name}: ${iface} has no listen port`;
  const peers: PeerView[] = parsed
    ? parsed.peers
        .filter((p) => p.publicKey !== undefined)
        .map((p) => ({
          publicKey: p.publicKey!,
          allowedIps: p.allowedIps,
          ...(p.endpoint ? { endpoint: p.endpoint } : {}),
          ...(p.persistentKeepalive ? { keepalive: p.persistentKeepalive } : {}),
        }))
    : facts.peers.map((p) => ({
        publicKey: p.publicKey,
        allowedIps: p.allowedIps,
        ...(p.endpoint ? { endpoint: p.endpoint } : {}),
        ...(p.persistentKeepalive ? { keepalive: p.persistentKeepalive } : {}),
      }));
  const mtu = facts.live?.mtu ?? parsed?.interface?.mtu;
  return {
    host,
    name,
    publicKey,
    overlayIp: ipOf(addressCidr),
    addressCidr,
    listenPort,
    ...(mtu !== undefined ? { mtu } : {}),
    peers,
    ownIps: new Set(host.underlay.addresses.map((a) => ipOf(a.cidr))),
  };
}

/**
 * Why a peer of `v`'s file matches no host (Q6 finding 6): its AllowedIPs hold a running host's overlay address (a
 * stale key in this file), or a host that runs no interface may be it, or it is a node not given.
 */
function unknownPeerProblem(
  v: NodeView,
  p: PeerView,
  views: readonly NodeView[],
  down: readonly ImportedHost[],
  iface: string,
  line: number | undefined,
): string {
  const file = `/etc/wireguard/${iface}.conf`;
  const peer = `${v.name} has a peer ${p.publicKey} (${file}${line !== undefined ? ` line ${line}` : ''}, AllowedIPs ${p.allowedIps.join(', ') || 'none'})`;
  const holds = (ip: string) =>
    p.allowedIps.some((a) => {
      const c = parseCidr(a, { strict: false });
      return c ? c.prefix === 32 && cidrContains(c, ip) : false;
    });
  const owner = views.find((o) => o !== v && holds(o.overlayIp));
  if (owner)
    return `${peer} at ${owner.name}'s overlay address ${owner.overlayIp}, but ${owner.name} runs with ${owner.publicKey}: a stale key in ${v.name}'s file; put ${owner.name}'s public key there (or remove that peer) and import again`;
  const downOwner = down.find((d) => {
    const text = d.facts.config.text;
    const address = text !== undefined ? parseWgQuickConfig(text).interface?.addresses.find((a) => isIpv4(ipOf(a))) : undefined;
    return address !== undefined && holds(ipOf(address));
  });
  if (downOwner)
    return `${peer} at the Address of ${downOwner.target.name}'s ${file}, and ${downOwner.target.name} runs no ${iface}, so its key is not known: start it there (systemctl start wg-quick@${iface}) and import again`;
  if (down.length)
    return `${peer} that is none of the running hosts: if it is ${down.map((d) => d.target.name).join(' or ')}, which runs no ${iface}, start it there and import again; else add its SSH target (the next up would remove the peer otherwise)`;
  return `${peer} that is none of the hosts given: add its SSH target (the next up would remove the peer otherwise)`;
}

/** The mesh network: the Address subnet all nodes share, else the smallest block (at least /24) holding them all. */
function inferNetwork(views: NodeView[], notes: ImportNote[]): string {
  const subnets = new Set(
    views.map((v) => {
      const c = parseCidr(v.addressCidr, { strict: false });
      return c && c.prefix < 32 ? formatCidr(c) : '';
    }),
  );
  const [only, ...others] = [...subnets];
  if (only && others.length === 0) return only;
  const ips = views.map((v) => ipToInt(v.overlayIp));
  let prefix = 24;
  const fits = (p: number) => {
    const mask = p === 0 ? 0 : (~0 << (32 - p)) >>> 0;
    return ips.every((ip) => (ip & mask) >>> 0 === (ips[0]! & mask) >>> 0);
  };
  while (prefix > 8 && !fits(prefix)) prefix--;
  const mask = (~0 << (32 - prefix)) >>> 0;
  const network = `${intToIp((ips[0]! & mask) >>> 0)}/${prefix}`;
  // what the nodes' Addresses are, said as they are (Q6, Q7: "every node has a /32" was said of /24 Addresses too)
  const counts = new Map<string, number>();
  for (const v of views) {
    const c = parseCidr(v.addressCidr, { strict: false });
    const key = c && c.prefix < 32 ? formatCidr(c) : '/32';
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const why =
    counts.size === 1 && counts.has('/32')
      ? 'every node has a /32 Address'
      : `the nodes' Addresses share no one subnet (${[...counts].map(([k, n]) => `${k === '/32' ? 'a /32' : k} on ${n}`).join(', ')})`;
  notes.push({
    at: 'mesh.network',
    text: `inferred: ${why}, so ${network} is the smallest block of at least /24 holding them all; widen it if the mesh will grow past it`,
  });
  return network;
}

interface Dialled {
  from: string;
  host: string;
  port: number;
}

/** The node's address on its site: where peers dial it directly, else its address on the default route's device. */
function underlayAddress(view: NodeView, direct: Dialled[]): { ip: string; cidr?: string } | undefined {
  const addresses = view.host.underlay.addresses;
  const dialled = mostCommon(direct.map((d) => d.host));
  const byIp = (ip: string) => addresses.find((a) => ipOf(a.cidr) === ip);
  if (dialled) return { ip: dialled, ...(byIp(dialled) ? { cidr: byIp(dialled)!.cidr } : {}) };
  const onGateway = addresses.find((a) => a.dev === view.host.underlay.gatewayDev) ?? addresses[0];
  return onGateway ? { ip: ipOf(onGateway.cidr), cidr: onGateway.cidr } : undefined;
}

const lanOf = (cidr: string | undefined) => {
  const c = cidr ? parseCidr(cidr, { strict: false }) : undefined;
  return c ? formatCidr(c) : undefined;
};

/**
 * Infers the inventory of a hand-built mesh from its nodes' facts. `iface`: the WireGuard interface to take over.
 * Pure; every guess is a note, every refusal a problem.
 */
export function inferInventory(hosts: readonly ImportedHost[], iface: string, options: InferOptions = {}): ImportResult {
  const notes: ImportNote[] = [];
  const problems: string[] = [];
  const views: NodeView[] = [];
  const down: ImportedHost[] = [];
  const file = `/etc/wireguard/${iface}.conf`;
  for (const host of hosts) {
    const v = viewOf(host, iface);
    if (typeof v === 'string') {
      problems.push(v);
      down.push(host);
    } else views.push(v);
    // Q6 finding 2: the adopting script's refusals are found here, on every node, before any node is changed
    if (host.adoptRefusal && typeof v !== 'string') problems.push(`${host.target.name}: cannot keep its key pair: ${host.adoptRefusal}`);
    // Q10 F15: its private key would be moved into files another user can read or replace
    if (host.fileModeRefusal) problems.push(`${host.target.name}: ${host.fileModeRefusal}; then run meshctl import again`);
  }
  const byKey = new Map<string, NodeView>();
  for (const v of views) {
    const other = byKey.get(v.publicKey);
    if (other) problems.push(`${other.name} and ${v.name} run with one public key ${v.publicKey} (cloned key files?)`);
    byKey.set(v.publicKey, v);
  }
  for (const v of views) {
    const scanned = v.host.facts.config.text !== undefined ? scanConfig(v.host.facts.config.text, v.host.secretLines) : undefined;
    for (const p of v.peers)
      if (!byKey.has(p.publicKey) && problems.length < 50)
        problems.push(unknownPeerProblem(v, p, views, down, iface, scanned?.peers.find((s) => s.publicKey === p.publicKey)?.line));
  }
  if (views.length === 0) return { notes, problems: problems.length ? problems : ['no hosts given'] };

  const network = inferNetwork(views, notes);
  // Q6 findings 1 and 3: what the inventory cannot hold is named per node, and refused when dropping it cuts traffic
  const hostKeys = new Map(views.map((v) => [v.publicKey, v.name]));
  const overlayIps = new Map(views.map((v) => [v.publicKey, v.overlayIp]));
  for (const v of views)
    for (const loss of importLosses({
      text: v.host.facts.config.text,
      ...(v.host.secretLines ? { secretLines: v.host.secretLines } : {}),
      livePeers: v.host.facts.peers,
      liveReadable: v.host.facts.live?.wgReadable ?? v.host.facts.peers.length > 0,
      hostKeys,
      overlayIps,
      network,
    })) {
      const where = loss.line !== undefined ? `${file} line ${loss.line}` : loss.what.startsWith('a ') ? `live ${iface}` : file;
      if (loss.cutsTraffic && !options.dropUnsupported)
        problems.push(
          `${v.name}: ${where}: ${loss.what}: ${loss.effect}; fix it by hand, or pass --drop-unsupported to take the mesh over without it`,
        );
      else
        notes.push({
          at: `nodes.${v.name}`,
          text: `${loss.cutsTraffic ? 'DROPPED (--drop-unsupported): ' : 'not carried over: '}${where}: ${loss.what}: ${loss.effect}`,
        });
    }
  if (problems.length > 0) return { notes, problems };

  // who dials whom, at which address
  const dialled = new Map<string, Dialled[]>(views.map((v) => [v.name, []]));
  for (const v of views)
    for (const p of v.peers) {
      const to = byKey.get(p.publicKey)!;
      const ep = p.endpoint ? splitHostPort(p.endpoint) : undefined;
      if (p.endpoint && !ep)
        notes.push({ at: `nodes.${v.name}`, text: `its peer ${to.name} has Endpoint ${p.endpoint}, not an IPv4 address:port: ignored` });
      if (ep) dialled.get(to.name)!.push({ from: v.name, ...ep });
    }
  const direct = (v: NodeView) => dialled.get(v.name)!.filter((d) => v.ownIps.has(d.host));
  const viaNat = (v: NodeView) => dialled.get(v.name)!.filter((d) => !v.ownIps.has(d.host));

  const placed = views.map((v) => {
    const addr = underlayAddress(v, direct(v));
    return { v, address: addr?.ip ?? v.host.target.ssh.host, lan: lanOf(addr?.cidr) ?? `${addr?.ip ?? v.host.target.ssh.host}/32` };
  });
  const groups = new Map<string, typeof placed>();
  for (const p of placed) groups.set(p.lan, [...(groups.get(p.lan) ?? []), p]);

  const mesh = {
    interface: iface,
    network,
    listenPort: mostCommon(views.map((v) => v.listenPort))!,
    mtu: mostCommon(views.flatMap((v) => (v.mtu !== undefined ? [v.mtu] : []))) ?? 1420,
    persistentKeepalive: mostCommon(views.flatMap((v) => v.peers.flatMap((p) => (p.keepalive ? [p.keepalive] : [])))) ?? 0,
  };
  const mtus = new Set(views.map((v) => v.mtu));
  if (mtus.size > 1)
    notes.push({
      at: 'mesh.mtu',
      text: `the nodes run different MTUs (${[...mtus].join(', ')}): ${mesh.mtu} is the most common; up sets it on the others (on the running interface, no restart, where the MTU and Address are all their [Interface] differs in)`,
    });
  const keepalives = new Set(views.flatMap((v) => v.peers.flatMap((p) => (p.keepalive ? [p.keepalive] : []))));
  if (keepalives.size > 1)
    notes.push({
      at: 'mesh.persistentKeepalive',
      text: `several keepalives in use (${[...keepalives].join(', ')}): ${mesh.persistentKeepalive} is the most common`,
    });

  const sites: DraftSite[] = [];
  const nodes: DraftNode[] = [];
  const counters = { nat: 0, public: 0, lan: 0 };
  for (const [lan, members] of groups) {
    const natDials = members.flatMap((m) => viaNat(m.v));
    const memberNames = new Set(members.map((m) => m.v.name));
    const dialledFromOutside = members.some((m) => direct(m.v).some((d) => !memberNames.has(d.from)));
    const gateways = members.flatMap((m) => (m.v.host.underlay.gateway ? [m.v.host.underlay.gateway] : []));
    const router = mostCommon(
      gateways.filter((g) => {
        const c = parseCidr(lan, { strict: false });
        return c ? cidrContains(c, g) : false;
      }),
    );
    let site: DraftSite;
    if (natDials.length > 0) {
      const publicIp = mostCommon(natDials.map((d) => d.host))!;
      const name = `nat-${++counters.nat}`;
      const fallbackRouter = intToIp(ipToInt(lan.split('/')[0]!) + 1);
      site = { name, kind: 'nat', lan, router: router ?? fallbackRouter, publicIp };
      notes.push({
        at: `sites.${name}`,
        text: `a LAN behind a NAT router: peers outside dial ${[...new Set(natDials.map((d) => `${d.host}:${d.port}`))].join(', ')}, which is no address of its nodes; name made up, rename it`,
      });
      if (!router) notes.push({ at: `sites.${name}.router`, text: `no default gateway seen on ${lan}: ${fallbackRouter} is a guess` });
      if (new Set(natDials.map((d) => d.host)).size > 1)
        notes.push({
          at: `sites.${name}.nat.publicIp`,
          text: `peers dial this site at several public IPs (${[...new Set(natDials.map((d) => d.host))].join(', ')}); ${publicIp} is the most common`,
        });
    } else if (dialledFromOutside) {
      const name = `public-${++counters.public}`;
      site = { name, kind: 'public' };
      notes.push({
        at: `sites.${name}`,
        text: `its nodes are dialled at their own addresses from other sites: public addresses; name made up, rename it`,
      });
    } else {
      const name = `lan-${++counters.lan}`;
      site = { name, kind: 'lan', lan, ...(router ? { router } : {}) };
      notes.push({
        at: `sites.${name}`,
        text: `CANNOT INFER: no peer outside ${lan} dials its nodes, so this is written as a LAN with no way in; if it sits behind a NAT router with UDP port-forwards, make it { lan, router, nat: { publicIp } } and give each node its forwardedPort`,
      });
    }
    sites.push(site);
    for (const m of members) {
      const forwarded = mostCommon(viaNat(m.v).map((d) => d.port));
      const node: DraftNode = {
        name: m.v.name,
        site: site.name,
        address: m.address,
        overlayIp: m.v.overlayIp,
        ...(m.v.listenPort !== mesh.listenPort ? { listenPort: m.v.listenPort } : {}),
        ...(site.kind === 'nat' && forwarded !== undefined ? { forwardedPort: forwarded } : {}),
        ssh: m.v.host.target.ssh,
        publicKey: m.v.publicKey,
      };
      nodes.push(node);
      if (site.kind === 'nat' && forwarded === undefined)
        notes.push({
          at: `nodes.${m.v.name}.forwardedPort`,
          text: `no peer outside its site dials it: no port-forward known (it dials out)`,
        });
    }
  }
  // inventory order: the order the hosts were given
  const order = new Map(hosts.map((h, i) => [h.target.name, i]));
  nodes.sort((a, b) => order.get(a.name)! - order.get(b.name)!);
  return { draft: { mesh, sites, nodes }, notes, problems };
}
