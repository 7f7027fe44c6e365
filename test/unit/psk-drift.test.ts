/**
 * Q6 finding 1, second half: a live PresharedKey the design does not have is drift. `up` rewrote wg0.conf without the
 * PresharedKey line but (no restart) left the key live on both ends; plan then said "nothing to change" and the pair
 * broke at the next restart of one end. Now the enable step of each end removes it (`wg set ... preshared-key
 * /dev/null`), and plan says why. Presence only: the dump's preshared-key column is set / not set (../../src/render/wgdump.ts).
 * Facts: a converged homelab node captured in the lab (test/fixtures/facts/live-converged-ms-1.txt), the PSK flag set.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { NodeFacts } from '../../src/facts/node-facts.js';
import { capturedFacts, capturedKeys } from '../support/converged-facts.js';
import { liveDrift, planService } from '../../src/steps/service.js';
import { loadInventory } from '../../src/inventory/load.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';

const inventory = loadInventory('inventories/homelab.yaml');
const converged: NodeFacts = capturedFacts();
const keys = capturedKeys(converged);
const desired = desiredNodeConfig(inventory, 'ms-1', keys);
const routes = desired.peers.flatMap((p) => p.allowedIps);

describe('a live preshared key the design does not have (Q6 finding 1)', () => {
  const edge = keys.get('ctb-edge-1')!;
  const withPsk: NodeFacts = {
    ...converged,
    peers: converged.peers.map((p) => (p.publicKey === edge ? { ...p, hasPresharedKey: true } : p)),
  };
  it('is drift, named, and removed in the enable step with the peer sync; the interface kept', () => {
    assert.deepEqual(planService(converged, 'wg0', 'none', routes, desired.publicKey, desired), {}, 'the capture itself is converged');
    const drift = liveDrift(withPsk, desired);
    assert.deepEqual(drift.presharedOff, [edge]);
    assert.deepEqual(drift.peers, ['peer ctb-edge-1 has a preshared key on the live interface, wg0.conf none (meshctl manages none)']);
    const { action } = planService(withPsk, 'wg0', 'none', routes, desired.publicKey, desired);
    assert.ok(action, 'an action');
    assert.deepEqual(
      action.changes.map((c) => c.kind),
      ['syncconf'],
    );
    assert.match(JSON.stringify(action.changes[0]), /preshared key on the live interface/);
    assert.match(
      action.script,
      new RegExp(`for k in '?${edge.replace(/[+/]/g, '\\$&')}'?; do wg set wg0 peer "\\$k" preshared-key /dev/null; done`),
    );
    assert.doesNotMatch(action.script, /systemctl restart/);
  });
  it('the same when the file changed too (peers): removed with that sync', () => {
    const { action } = planService(withPsk, 'wg0', 'peers', routes, desired.publicKey, desired);
    assert.match(action!.script, /preshared-key \/dev\/null/);
  });
});
