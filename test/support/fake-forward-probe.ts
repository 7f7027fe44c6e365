/**
 * A scripted network for the port-forward probe (src/checks/forward-probe.ts) on fake connections: the sender's
 * script is read for the tokens it sends (in the order of `forwardsOf`), and each watcher answers with the `seen`
 * lines of the forwards that `landing` says arrive at it. Every node also answers the `true` of a fresh login.
 */
import type { Inventory, Node } from '../../src/inventory/types.js';
import { forwardsOf, type Forward } from '../../src/checks/forward-probe.js';
import { natedNodes, observersOf } from '../../src/checks/nat-discovery.js';
import { FakeConnection } from './fake-connection.js';

/** Where a forward's datagrams land: a node name and the port they arrive at, or undefined for nowhere. */
export type Landing = (forward: Forward) => { node: string; port: number } | undefined;

/** The default landing: every forward reaches its own node at its listenPort. */
export const landsRight: Landing = (f) => ({ node: f.node, port: f.listenPort });

/** A fresh `reconnect` (the probe is shared per reconnect function) over a network where forwards land as given. */
export function probeNetwork(inventory: Inventory, landing: Landing = landsRight): (node: Node) => Promise<FakeConnection> {
  let release: (tokens: string[]) => void = () => undefined;
  const sent = new Promise<string[]>((resolve) => (release = resolve));
  const forwards = forwardsOf(inventory, '');
  return async (node) =>
    new FakeConnection(node.name, [
      { match: /^true$/, reply: {} },
      {
        match: /print "sent/,
        reply: (script) => {
          const args = script.slice(script.lastIndexOf('meshctl-forward-probe ')).trim().split(/\s+/).slice(2);
          release(args.filter((_, i) => i % 3 === 0));
          return { stdout: 'sent\n' };
        },
      },
      {
        match: /print "watching/,
        reply: async () => {
          const tokens = await sent;
          const lines = forwards.flatMap((f, i) => {
            const landed = landing(f);
            return landed?.node === node.name
              ? [`seen ${tokens[i]} 198.51.100.25:40000 ${inventory.nodes.find((n) => n.name === node.name)!.address}:${landed.port}`]
              : [];
          });
          return { stdout: `watching\n${lines.join('\n')}\n` };
        },
      },
    ]);
}

/** Where `node`'s datagrams from its listen port appear to come from at `observer` (`ip:port`). */
export type Mapped = (node: Node, observer: Node) => string;

/** A fresh `reconnect` for NAT discovery: each NATed node's datagrams arrive at the observers from `mapped`. */
export function discoveryNetwork(inventory: Inventory, mapped: Mapped): (node: Node) => Promise<FakeConnection> {
  const senders = natedNodes(inventory);
  const observers = observersOf(inventory);
  const tokens = new Map<string, string>();
  let release: () => void = () => undefined;
  const allSent = new Promise<void>((resolve) => (release = resolve));
  return async (node) =>
    new FakeConnection(node.name, [
      {
        match: /print "sent/,
        reply: (script) => {
          const [, sourcePort, token] = script.slice(script.lastIndexOf('meshctl-forward-probe ')).trim().split(/\s+/);
          if (sourcePort === '0') return { stdout: 'sent\n' }; // the forward probe's sender: not a discovery
          tokens.set(node.name, token!);
          if (tokens.size === senders.length) release();
          return { stdout: 'sent\n' };
        },
      },
      {
        match: /print "watching/,
        reply: async () => {
          const observer = observers.find((o) => o.name === node.name);
          if (!observer) return { stdout: 'watching\n' }; // a forward probe's watcher
          await allSent;
          const lines = senders.map((s) => `seen ${tokens.get(s.name)} ${mapped(s, observer)} ${observer.address}:${observer.listenPort}`);
          return { stdout: `watching\n${lines.join('\n')}\n` };
        },
      },
    ]);
}
