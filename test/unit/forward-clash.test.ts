/**
 * Q4 item 4: a forward whose external port differs from the node's listen port, on a node that dials the public nodes
 * that dial the forward, clashes in the router's conntrack (src/topology/forward-clash.ts): validate and plan warn,
 * naming the fix (the external port equal to the listen port). Forwards already equal, and nodes no public node
 * dials through their forward, are not warned.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory, Node } from '../../src/inventory/types.js';
import { forwardClashes, forwardClashWarnings } from '../../src/topology/forward-clash.js';
import { renderSummary } from '../../src/commands/validate.js';
import { Chalk } from 'chalk';

const fourSites = loadInventory('inventories/four-sites.yaml');
const withNode = (inventory: Inventory, name: string, change: Partial<Node>): Inventory => ({
  ...inventory,
  nodes: inventory.nodes.map((n) => (n.name === name ? { ...n, ...change } : n)),
});

test('four-sites: a-1, a-2 and a-3 dial p-1 and p-2, which dial their forwards on other ports', () => {
  assert.deepEqual(
    forwardClashes(fourSites).map((c) => `${c.node} ${c.forwardedPort}->${c.listenPort} ${c.publicPeers.join(',')}`),
    ['a-1 41001->51820 p-1,p-2', 'a-2 41002->51820 p-1,p-2', 'a-3 41003->51830 p-1,p-2'],
  );
  // a-1's forward now equals its listen port (41001): no warning; a-2 is the only node of site a on 51820: both fixes
  const [a1, a2] = forwardClashWarnings(withNode(fourSites, 'a-1', { forwardedPort: 41001, listenPort: 41001 }));
  assert.match(a1!, /^a-2: its forward 203\.0\.113\.10:41002 -> :51820 has another external port than its listen port/);
  assert.match(
    a1!,
    /fix: forward UDP 51820 -> 192\.168\.10\.12:51820 and set forwardedPort: 51820, or set a-2's listenPort: 41002 and forward UDP 41002 -> 192\.168\.10\.12:41002/,
  );
  assert.match(
    a2!,
    /^a-3: .*fix: forward UDP 51830 -> 192\.168\.10\.13:51830 and set forwardedPort: 51830, or set a-3's listenPort: 41003/,
  );
  // as written, a-1 and a-2 both listen on 51820: neither may take external 51820 (the other's flows would map there)
  const [w1] = forwardClashWarnings(fourSites);
  assert.match(
    w1!,
    /^a-1: .*fix: set a-1's listenPort: 41001 and forward UDP 41001 -> 192\.168\.10\.11:41001 \(the external port is the listen port/,
  );
  assert.doesNotMatch(w1!, /forward UDP 51820/);
  assert.ok(renderSummary(fourSites, new Chalk({ level: 0 })).includes('\nwarning: a-1: its forward 203.0.113.10:41001'));
});

test('no warning where the external port is the listen port, or where no public node dials the forward', () => {
  const equal = fourSites.nodes.reduce(
    (inv, n) => (n.forwardedPort !== undefined ? withNode(inv, n.name, { listenPort: n.forwardedPort }) : inv),
    fourSites,
  );
  assert.deepEqual(forwardClashes(equal), []);
  const noPublic: Inventory = { ...fourSites, nodes: fourSites.nodes.filter((n) => n.site !== 'pub') };
  assert.deepEqual(forwardClashes(noPublic), []);
});
