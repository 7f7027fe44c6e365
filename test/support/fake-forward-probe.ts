/**
 * A scripted network for the baseline's underlay probes (src/checks/underlay-probe.ts: the port-forward probe and
 * NAT discovery) on fake connections.
 */
import { siteOf, type Inventory, type Node } from '../../src/inventory/types.js';
import { forwardsOf, type Forward } from '../../src/checks/forward-probe.js';
import { natedNodes, observersOf } from '../../src/checks/nat-discovery.js';
import { FakeConnection, type FakeIo } from './fake-connection.js';

/** Where a forward's datagrams land: a node name and the port they arrive at, or undefined for nowhere. */
export type Landing = (forward: Forward) => { node: string; port: number } | undefined;

/** The default landing: every forward reaches its own node at its listenPort. */
export const landsRight: Landing = (f) => ({ node: f.node, port: f.listenPort });

/** Where `node`'s datagrams from its listen port appear to come from at `observer` (`ip:port`). */
export type Mapped = (node: Node, observer: Node) => string;

/** The default mapping: the site's public IP (203.0.113.99 for a site without one) and the node's listen port. */
const mappedByInventory =
  (inventory: Inventory): Mapped =>
  (node) => {
    const site = siteOf(inventory, node);
    return `${site.kind === 'nat' ? site.publicIp : '203.0.113.99'}:${node.listenPort}`;
  };

/**
 * How the scripted commands pace themselves, in ms of real time: a watcher prints `watching` after `listenMs(node)`
 * (undefined: never, though it keeps running) and listens for its window (its script's watch seconds x `scale`)
 * unless it is ended; a sender takes its rounds x interval x `scale`. Default: listens at once, scale 0.05 (the
 * 2 s window lasts 100 ms).
 */
export interface NetworkPace {
  scale?: number;
  listenMs?: (node: Node) => number | undefined;
  /**
   * told the moment a watcher is about to print `watching` (in the same turn, before meshctl reads it): a test sets
   * a 0 ms timer here, and a sender that starts before that timer fires was started with no timer of meshctl's on
   * the way (RV2 S2-1: an order, not a time bound)
   */
  onListening?: (node: Node) => void;
  /** told when a sender script starts, with the ms since the first watcher started */
  onSend?: (node: Node, atMs: number) => void;
  /**
   * told when a watcher or sender script stops: 'ended' when the probe ended it, 'ran out' when its own window or
   * rounds were over first (a test asserts how they stopped, not how long they took: that holds on a loaded machine)
   */
  onStop?: (node: Node, role: 'watcher' | 'sender', how: 'ended' | 'ran out') => void;
}

/** 'ended' when `ended` settles before `ms` have passed, else 'ran out'. */
const stopOf = (ms: number, ended: Promise<void>) =>
  Promise.race([sleep(ms).then(() => 'ran out' as const), ended.then(() => 'ended' as const)]);

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A watcher that says `watching` when `pace` says, then writes what `lines()` gives, then listens its window. */
async function fakeWatcher(script: string, io: FakeIo, node: Node, pace: NetworkPace, lines: () => Promise<string[]>) {
  const scale = pace.scale ?? 0.05;
  const windowMs = Number(/ ([\d.]+) meshctl-forward-probe\n$/.exec(script)![1]) * 1000 * scale;
  const listenMs = pace.listenMs ? pace.listenMs(node) : 0;
  const started = performance.now();
  if (listenMs !== undefined) {
    await sleep(listenMs);
    pace.onListening?.(node);
    io.write('watching\n');
    for (const line of await Promise.race([lines(), io.ended.then(() => [])])) io.write(`${line}\n`);
  }
  const how = await stopOf(windowMs - (performance.now() - started), io.ended); // awaited whether or not anyone is told
  pace.onStop?.(node, 'watcher', how);
  return {};
}

/**
 * A scripted underlay for the baseline's probes on fake connections, one per node: the forward probe's sender
 * (source port 0) is read for the tokens it sends (in the order of `forwardsOf`), and each of its watchers answers
 * with the `seen` lines of the forwards that `landing` says arrive there; each NATed node's discovery sender (its
 * listen port) is read for its token, and each observer answers with every sender's token from `mapped`. Output is
 * streamed (RunOptions.onStdout) and paced by `pace`. Every node also answers the `true` of a fresh login.
 */
export function underlayNetwork(
  inventory: Inventory,
  landing: Landing = landsRight,
  mapped: Mapped = mappedByInventory(inventory),
  pace: NetworkPace = {},
): (node: Node) => Promise<FakeConnection> {
  let firstWatch: number | undefined;
  let releaseForward: (tokens: string[]) => void = () => undefined;
  const forwardSent = new Promise<string[]>((resolve) => (releaseForward = resolve));
  const forwards = forwardsOf(inventory, '');
  const senders = natedNodes(inventory);
  const observers = observersOf(inventory);
  const tokens = new Map<string, string>();
  let releaseDiscovery: () => void = () => undefined;
  const allSent = new Promise<void>((resolve) => (releaseDiscovery = resolve));
  const forwardLines = async (node: Node) => {
    const sent = await forwardSent;
    return forwards.flatMap((f, i) => {
      const landed = landing(f);
      return landed?.node === node.name ? [`seen ${sent[i]} 198.51.100.25:40000 ${node.address}:${landed.port}`] : [];
    });
  };
  const discoveryLines = async (observer: Node) => {
    await allSent;
    return senders.map((s) => `seen ${tokens.get(s.name)} ${mapped(s, observer)} ${observer.address}:${observer.listenPort}`);
  };
  return async (node) =>
    new FakeConnection(node.name, [
      { match: /^true$/, reply: {} },
      {
        match: /print "sent/,
        reply: async (script, io) => {
          pace.onSend?.(node, performance.now() - (firstWatch ?? performance.now()));
          const before = script.slice(0, script.lastIndexOf(' meshctl-forward-probe ')).split(/\s+/);
          const args = script.slice(script.lastIndexOf('meshctl-forward-probe ')).trim().split(/\s+/);
          if (args[1] === '0') releaseForward(args.slice(2).filter((_, i) => i % 3 === 0));
          else {
            tokens.set(node.name, args[2]!);
            if (tokens.size === senders.length) releaseDiscovery();
          }
          io.write('round 1\n');
          const [rounds, interval] = before.slice(-2).map(Number) as [number, number];
          const how = await stopOf(rounds * interval * 1000 * (pace.scale ?? 0.05), io.ended);
          pace.onStop?.(node, 'sender', how);
          return { stdout: 'sent\n' };
        },
      },
      {
        match: /print "watching/,
        reply: (script, io) => {
          firstWatch ??= performance.now();
          const observer = observers.some((o) => o.name === node.name);
          return fakeWatcher(script, io, node, pace, () => (observer ? discoveryLines(node) : forwardLines(node)));
        },
      },
    ]);
}

/** The network's connection to every node of the inventory, by name (what the run's connections are to a probe). */
export async function connectionsOf(
  inventory: Inventory,
  open: (node: Node) => Promise<FakeConnection>,
): Promise<Map<string, FakeConnection>> {
  return new Map(await Promise.all(inventory.nodes.map(async (n) => [n.name, await open(n)] as const)));
}

/** A network where forwards land as given (NAT discovery sees every site at its public IP). */
export const probeNetwork = (inventory: Inventory, landing: Landing = landsRight) => underlayNetwork(inventory, landing);

/** A network where each NATed node's datagrams arrive at the observers from `mapped` (forwards land right). */
export const discoveryNetwork = (inventory: Inventory, mapped: Mapped) => underlayNetwork(inventory, landsRight, mapped);
