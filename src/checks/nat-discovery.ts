/**
 * NAT discovery through the mesh's own public nodes (issue 11), as RFC 5780 does with two STUN servers but with no
 * third-party server and no daemon: before configs are pushed, every node behind NAT (nat and lan sites) sends a
 * few UDP datagrams from its WireGuard listen port to two public nodes of the mesh, and those nodes read which
 * public address and port arrived (the packet-socket watcher of ./forward-probe.ts). That gives:
 * - the site's real public address: a mismatch with the inventory's `nat.publicIp` is flagged (peers would dial
 *   the inventory's address);
 * - the mapping (RFC 4787): one public port for both destinations is endpoint-independent (a node of another NAT
 *   site could reach it at that port once it sent first); two ports is address/port-dependent, "symmetric".
 * The datagrams leave from the listen port itself (a raw socket writes the UDP header), so the NAT maps them as it
 * maps WireGuard, also while the interface is up. Nothing is bound, installed or left behind.
 */
import type { CheckResult } from '../engine/types.js';
import type { Inventory, Node } from '../inventory/types.js';
import { siteOf } from '../inventory/types.js';
import { sh } from '../remote/shell.js';
import { movedAddressFix } from '../topology/moved-address.js';
import { checkDeadlineMs, type Connection } from '../transport/types.js';
import {
  FAST_PROBE,
  type LiveSightings,
  NOT_CONNECTED,
  parseWatchOutput,
  ProbeSession,
  randomNonce,
  udpSendScript,
  type ProbeRunOptions,
  type Sighting,
} from './forward-probe.js';

/** What the observers saw, for every NATed node. */
export interface NatDiscoveryReport {
  /** the public nodes that watched (at most two; fewer when the mesh has fewer) */
  observers: string[];
  /** sending node -> its token */
  tokens: Map<string, string>;
  /** observer -> datagrams it saw */
  seen: Map<string, Sighting[]>;
  /** node -> why it could not take part */
  unavailable: Map<string, string>;
  /**
   * node -> the addresses its site's nat.publicHost resolves to, as that node resolves it (`getent ahosts`); only
   * for sites named by publicHost. The name is resolved on the node, never on the operator's machine.
   */
  resolved?: Map<string, string[]>;
}

/** How one node's datagrams arrived: the public address:port each observer saw. */
export interface NatMappingVerdict {
  /** observer -> `ip:port` it saw the node's datagrams come from */
  arrived: Map<string, string>;
  /** the one public IP all observers saw, if they agree */
  publicIp?: string;
  mapping: 'endpoint-independent' | 'symmetric' | 'unknown';
}

/** Nodes behind NAT: every node of a nat or lan site. */
export const natedNodes = (inventory: Inventory): Node[] => inventory.nodes.filter((n) => siteOf(inventory, n).kind !== 'public');

/** The observers: the first two public nodes. */
export const observersOf = (inventory: Inventory): Node[] =>
  inventory.nodes.filter((n) => siteOf(inventory, n).kind === 'public').slice(0, 2);

/** What `node`'s datagrams showed: its public address and mapping kind (pure). */
export function natMappingOf(report: NatDiscoveryReport, node: string): NatMappingVerdict {
  const token = report.tokens.get(node);
  const arrived = new Map<string, string>();
  for (const observer of report.observers) {
    const sighting = (report.seen.get(observer) ?? []).find((s) => s.token === token);
    if (sighting) arrived.set(observer, sighting.source);
  }
  const ips = new Set([...arrived.values()].map((a) => a.slice(0, a.lastIndexOf(':'))));
  const ports = new Set([...arrived.values()].map((a) => a.slice(a.lastIndexOf(':') + 1)));
  const publicIp = ips.size === 1 ? [...ips][0] : undefined;
  const mapping = arrived.size < 2 ? 'unknown' : ips.size === 1 && ports.size === 1 ? 'endpoint-independent' : 'symmetric';
  return { arrived, ...(publicIp ? { publicIp } : {}), mapping };
}

/**
 * The per-node verdict, said per site: pass with the public address and mapping; a public address that differs
 * from the inventory's fails where the site has forwards (peers dial that address) and warns where it has none;
 * warn when nothing arrived or the probe could not run. Public nodes pass.
 */
export function judgeNatMapping(report: NatDiscoveryReport, inventory: Inventory, node: Node, id = 'nat-mapping'): CheckResult {
  const site = siteOf(inventory, node);
  if (site.kind === 'public') return { id, status: 'pass', message: 'public: no NAT in front of this node' };
  if (report.observers.length === 0)
    return { id, status: 'warn', message: 'NAT not discovered: the mesh has no public node to observe from' };
  const down = [...report.unavailable].filter(([name]) => name === node.name || report.observers.includes(name) || name === 'probe');
  if (down.length > 0)
    return { id, status: 'warn', message: `NAT not discovered: ${down.map(([name, why]) => `${name}: ${why}`).join('; ')}` };
  const verdict = natMappingOf(report, node.name);
  const evidence = [
    `${node.name} sent UDP from port ${node.listenPort} to ${report.observers.join(' and ')}`,
    ...report.observers.map((o) => `${o} saw it from ${verdict.arrived.get(o) ?? 'nothing (no datagram arrived)'}`),
  ];
  if (verdict.arrived.size === 0)
    return {
      id,
      status: 'warn',
      message: `site ${site.name}: no datagram from ${node.name} (UDP port ${node.listenPort}) reached ${report.observers.join(' or ')}: outgoing UDP may be blocked`,
      evidence,
    };
  if (!verdict.publicIp)
    return {
      id,
      status: 'warn',
      message: `site ${site.name}: ${node.name} leaves through several public addresses (${[...verdict.arrived.values()].join(', ')}): peers cannot rely on one`,
      evidence,
    };
  const ports = [...verdict.arrived].map(([o, a]) => `${a.slice(a.lastIndexOf(':') + 1)} towards ${o}`);
  const mapping =
    verdict.mapping === 'endpoint-independent'
      ? `endpoint-independent mapping (port ${node.listenPort} -> ${ports[0]!.split(' ')[0]} for every destination)`
      : verdict.mapping === 'symmetric'
        ? `symmetric mapping (port ${node.listenPort} -> ${ports.join(', ')})`
        : `mapping not known (one public node to observe from: port ${node.listenPort} -> ${ports[0]})`;
  // with forwards, peers dial publicIp: a wrong one breaks every pair that needs them (a STOP); without, a note
  const forwarded = inventory.nodes.some((n) => n.site === site.name && n.forwardedPort !== undefined);
  if (site.kind === 'nat' && site.publicHost)
    return judgeByName(site.publicHost, site.name, verdict.publicIp, report.resolved?.get(node.name), forwarded, mapping, id, evidence);
  if (site.kind === 'nat' && verdict.publicIp !== site.publicIp)
    return {
      id,
      status: forwarded ? 'fail' : 'warn',
      message: `site ${site.name}: public address ${verdict.publicIp}, but the inventory says ${site.publicIp} (nat.publicIp): peers would dial ${site.publicIp}; ${mapping}; fix: ${movedAddressFix({ site: site.name, seen: verdict.publicIp })}`,
      evidence,
    };
  const address = site.kind === 'nat' ? `public address ${verdict.publicIp} (as in the inventory)` : `public address ${verdict.publicIp}`;
  return { id, status: 'pass', message: `site ${site.name}: ${address}; ${mapping}`, evidence };
}

/**
 * A site named by publicHost: peers dial the name, so the address it resolves to (on the node) must be the one its
 * datagrams arrive from; the inventory's publicIp is only where it was when written (a dynamic address moves).
 */
function judgeByName(
  host: string,
  site: string,
  seen: string,
  resolved: string[] | undefined,
  forwarded: boolean,
  mapping: string,
  id: string,
  evidence: string[],
): CheckResult {
  const withResolution = [...evidence, `${host} resolves to ${resolved?.length ? resolved.join(', ') : 'nothing'} on this node`];
  if (resolved?.includes(seen))
    return {
      id,
      status: 'pass',
      message: `site ${site}: public address ${seen} (what ${host} resolves to); ${mapping}`,
      evidence: withResolution,
    };
  return {
    id,
    status: forwarded ? 'fail' : 'warn',
    message: `site ${site}: public address ${seen}, but ${host} (nat.publicHost) resolves to ${resolved?.length ? resolved.join(', ') : 'nothing'}: peers would dial that; update the DNS name; ${mapping}`,
    evidence: withResolution,
  };
}

/** The addresses a node resolves `host` to, one a line (getent: the node's own resolver, /etc/hosts included). */
export const resolveScript = (host: string): string => `${sh`getent ahosts ${host}`.text} | awk '{ print $1 }' | sort -u; true`;

/**
 * Whether the discovery has all it needs: every NATed node's token seen by every observer (a watcher prints a token
 * once, so nothing later could change a verdict).
 */
export const discoveryComplete =
  (tokens: readonly string[], observers: readonly string[]) =>
  (seen: LiveSightings): boolean =>
    tokens.every((token) => observers.every((o) => seen.get(o)?.some((s) => s.token === token)));

/**
 * Runs the discovery on connections that are already open (the run's own), keyed by node name: starts the
 * observers' watchers, then every NATed node's sender once they listen (ProbeSession: all of them end early once
 * every token reached every observer), collects what arrived. Never throws for a node: one without a connection or
 * whose command failed is listed in `unavailable`. Closes nothing.
 */
export async function runNatDiscovery(
  inventory: Inventory,
  connections: ReadonlyMap<string, Connection>,
  { nonce = randomNonce(), timing = FAST_PROBE, signal }: ProbeRunOptions = {},
): Promise<NatDiscoveryReport> {
  const observers = observersOf(inventory);
  const senders = natedNodes(inventory);
  const report: NatDiscoveryReport = {
    observers: observers.map((o) => o.name),
    tokens: new Map(senders.map((n) => [n.name, `${nonce}n${inventory.nodes.indexOf(n).toString(36)}`])),
    seen: new Map(),
    unavailable: new Map(),
  };
  if (observers.length === 0 || senders.length === 0) return report;
  for (const node of [...observers, ...senders]) if (!connections.has(node.name)) report.unavailable.set(node.name, NOT_CONNECTED);
  const present = observers.filter((o) => connections.has(o.name));
  const session = new ProbeSession(timing, present.length, discoveryComplete([...report.tokens.values()], report.observers));
  const unhook = session.stopOn(signal);
  const work = [
    ...present.map(async (o) => {
      const result = await session.watch(o.name, connections.get(o.name)!);
      if (session.failed(result)) report.unavailable.set(o.name, firstLine(result.stderr) || `watcher exited ${result.code}`);
      else report.seen.set(o.name, parseWatchOutput(result.stdout));
    }),
    ...senders
      .filter((n) => connections.has(n.name))
      .map(async (n) => {
        const targets = observers.map((o) => ({ token: report.tokens.get(n.name)!, host: o.address, port: o.listenPort }));
        const result = await session.send(connections.get(n.name)!, udpSendScript(targets, n.listenPort, timing));
        if (session.failed(result)) report.unavailable.set(n.name, firstLine(result.stderr) || `sender exited ${result.code}`);
      }),
    // a site named by publicHost: what the name resolves to on the node itself, at the same time as the sending
    ...senders
      .filter((n) => connections.has(n.name))
      .map(async (n) => {
        const site = siteOf(inventory, n);
        if (site.kind !== 'nat' || !site.publicHost) return;
        const lookup = await connections.get(n.name)!.run(resolveScript(site.publicHost), { timeoutMs: checkDeadlineMs(15_000) });
        report.resolved ??= new Map();
        report.resolved.set(
          n.name,
          lookup.stdout
            .split('\n')
            .map((l) => l.trim())
            .filter(Boolean),
        );
      }),
  ];
  const settled = await Promise.allSettled(work);
  unhook();
  session.close();
  settled.forEach((s) => {
    if (s.status === 'rejected') report.unavailable.set('probe', (s.reason as Error).message);
  });
  return report;
}

/**
 * Whether a second, slower try could change a verdict: a NATed node whose datagrams did not reach every observer
 * while every node taking part answered (outgoing UDP that is really blocked costs one more try, nothing else).
 */
export const natDiscoveryMissed = (report: NatDiscoveryReport): boolean =>
  report.unavailable.size === 0 &&
  [...report.tokens.values()].some((token) => report.observers.some((o) => !(report.seen.get(o) ?? []).some((s) => s.token === token)));

const firstLine = (text: string) => text.trim().split('\n')[0] ?? '';
