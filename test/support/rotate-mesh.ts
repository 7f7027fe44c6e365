/**
 * The homelab (inventories/homelab.yaml) as scripted fake nodes for rotate-keys (src/engine/rotate.ts): each node
 * answers the scripts of a rotation (src/steps/keys.ts) as a node running wg0 does, and records them in `order`
 * (`NODE:read`, `NODE:read+generate`, `NODE:update(new)` or `(old)`, `NODE:swap`, `NODE:live(new)`, `NODE:live(old)`,
 * `NODE:discard`, and with `fileAfterRollback` `NODE:state`). Every node's key file and interface hold `keys` (one
 * random WireGuard key per node); the key a rotation generates is `next`. Used by test/unit/rotate-keys.test.ts and
 * test/unit/rotate-keys-preflight.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { FakeConnection, type FakeReply, type FakeRule } from './fake-connection.js';

export interface RotateMeshOptions {
  /** a node's own rules, tried before the shared ones; `abort` is the test's Ctrl-C (aborts `ctx.signal`) */
  overrides?: (node: string, abort: () => void) => FakeRule[];
  /**
   * a node whose wg0 is not up (wg-quick@wg0 stopped): its read prints no live key, and a peer update there fails as
   * wg does ("Unable to access interface: Protocol not supported")
   */
  down?: string;
  /**
   * what a peer's state read after a failed update says its wg0.conf holds (`file=old|new`, `live=up|down`: the `down`
   * node is down); without it no node answers that read
   */
  fileAfterRollback?: 'old' | 'new';
}

/** A rotation's fake mesh: the scripts' order, the connections by node, and the context rotateNode takes. */
export interface RotateMesh {
  order: string[];
  connections: Map<string, FakeConnection>;
  ctx: { inventory: Inventory; connections: Map<string, FakeConnection>; signal: AbortSignal };
}

/** A WireGuard key's shape: 32 random bytes, base64. */
const randomKey = () => randomBytes(32).toString('base64');

/**
 * The homelab's nodes, their keys and the next key, and `mesh(options)`, which makes a fresh fake mesh of them per
 * test (the same keys each time).
 */
export function rotateKeysFake() {
  const inventory = loadInventory('inventories/homelab.yaml');
  const names = inventory.nodes.map((n) => n.name);
  const keys = new Map(names.map((n) => [n, randomKey()]));
  const next = randomKey();
  const escapeKey = (s: string) => s.replace(/[+/]/g, '\\$&');

  function mesh(options: RotateMeshOptions = {}): RotateMesh {
    const { overrides = () => [], down, fileAfterRollback } = options;
    const order: string[] = [];
    const controller = new AbortController();
    const abort = () => controller.abort(new Error('interrupted'));
    /** a reply that records `entry` in the order the scripts came */
    const step = (entry: string, reply: FakeReply) => () => {
      order.push(entry);
      return reply;
    };
    const rules = (node: string): FakeRule[] => [
      ...overrides(node, abort),
      {
        match: /wg genkey/,
        reply: () => {
          order.push(`${node}:read+generate`);
          return { stdout: `current=${keys.get(node)}\nlive=${keys.get(node)}\nreused=no\nnext=${next}\n` };
        },
      },
      {
        match: /^set -e\numask 077\nif \[ ! -s/,
        reply: () => {
          order.push(`${node}:read`);
          return { stdout: `current=${keys.get(node)}\nlive=${node === down ? '' : keys.get(node)}\n` };
        },
      },
      {
        match: /wg addconf/,
        reply: (script) => {
          const which = script.includes(`PublicKey = ${next}`) ? 'new' : 'old';
          order.push(`${node}:update(${which})`);
          // the file is written before the sync, which fails on a node without its interface
          return node === down
            ? { code: 1, stderr: 'Unable to access interface: Protocol not supported\nUnable to access interface: Protocol not supported' }
            : { stdout: 'config=abc\n' };
        },
      },
      ...(fileAfterRollback
        ? [
            {
              match: new RegExp(`grep -qF -- '?${escapeKey(next)}`),
              reply: () => {
                order.push(`${node}:state`);
                return { stdout: `file=${fileAfterRollback}\nlive=${node === down ? 'down' : 'up'}\n` };
              },
            },
          ]
        : []),
      {
        match: /mv -f \/etc\/wireguard\/wg0\.key\.new \/etc\/wireguard\/wg0\.key\n/,
        reply: step(`${node}:swap`, { stdout: `live=${next}\n` }),
      },
      {
        match: /^set -e\nwg set wg0 private-key \/etc\/wireguard\/wg0\.key\.new\n/,
        reply: step(`${node}:live(new)`, { stdout: `live=${next}\n` }),
      },
      {
        match: /^set -e\nwg set wg0 private-key \/etc\/wireguard\/wg0\.key\n/,
        reply: step(`${node}:live(old)`, { stdout: `live=${keys.get(node)}\n` }),
      },
      { match: /rm -f \/etc\/wireguard\/wg0\.key\.new/, reply: step(`${node}:discard`, {}) },
    ];
    const connections = new Map(names.map((n) => [n, new FakeConnection(n, rules(n))]));
    return { connections, order, ctx: { inventory, connections, signal: controller.signal } };
  }

  return { inventory, names, keys, next, mesh };
}
