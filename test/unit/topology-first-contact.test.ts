import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadInventory } from '../../src/inventory/load.js';
import { firstContactPairs } from '../../src/topology/endpoints.js';
import { pairsWithoutSession } from '../../src/checks/collect.js';
import { factsFrom, healthyScenario } from '../fixtures/probes/homelab.js';
import { SCENARIOS } from '../fixtures/probes/scenarios.js';

const keysOf = (facts: ReturnType<typeof factsFrom>) => new Map([...facts.desired].map(([name, d]) => [name, d.publicKey]));

test('homelab: every pair once; home nodes dial the edge (they keep the NAT mapping open), LAN pairs in inventory order', () => {
  assert.deepEqual(firstContactPairs(loadInventory('inventories/homelab.yaml')), [
    { from: 'ms-1', to: 'wk-1' },
    { from: 'ms-1', to: 'wk-2' },
    { from: 'ms-1', to: 'ctb-edge-1' },
    { from: 'wk-1', to: 'wk-2' },
    { from: 'wk-1', to: 'ctb-edge-1' },
    { from: 'wk-2', to: 'ctb-edge-1' },
  ]);
});

test('the side that can dial speaks first; with the edge listed first, the NATed node still dials it', () => {
  const pairs = firstContactPairs(loadInventory('test/fixtures/inventories/good/plain-lan-site.yaml'));
  // lab-1 sits on a plain LAN nobody can dial into: it must speak first to everyone
  assert.ok(pairs.some((p) => p.from === 'lab-1' && p.to === 'ctb-edge-1'));
  assert.ok(pairs.some((p) => p.from === 'lab-1' && p.to === 'ms-1'));
  assert.ok(pairs.some((p) => p.from === 'ms-1' && p.to === 'ctb-edge-1'));
  assert.equal(pairs.length, 3);
});

test('verify pays for first contact only where the dialer has no fresh handshake', () => {
  const healthy = factsFrom(healthyScenario());
  assert.deepEqual(pairsWithoutSession(healthy.inventory, healthy.checklists, keysOf(healthy)), []);
  const broken = factsFrom(SCENARIOS['forward-misdirected']!());
  assert.deepEqual(pairsWithoutSession(broken.inventory, broken.checklists, keysOf(broken)), [{ from: 'ms-1', to: 'ctb-edge-1' }]);
});
