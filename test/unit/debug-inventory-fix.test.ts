/** Inventory changes debug suggests are applied to the real text and validated as `meshctl validate` does. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checkInventoryPatch, describePatch } from '../../src/debug/inventory-fix.js';

const HOMELAB = 'inventories/homelab.yaml';
const text = readFileSync(HOMELAB, 'utf8');

test('a valid patch: the validated inventory, its comments and lines kept', () => {
  const r = checkInventoryPatch(text, HOMELAB, [{ path: ['mesh', 'mtu'], value: 1380 }]);
  assert.ok(r.ok);
  assert.equal(r.inventory.mesh.mtu, 1380);
  assert.match(r.text, /persistentKeepalive: 25 +# only from home \(NATed\) nodes/);
  assert.equal(r.text.split('\n').length, text.split('\n').length);
});

test('a value the validation rejects: its one-line problem, file:line:col first', () => {
  const r = checkInventoryPatch(text, HOMELAB, [{ path: ['mesh', 'mtu'], value: 1232 }]);
  assert.ok(!r.ok);
  assert.match(r.problems[0]!, /^inventories\/homelab\.yaml:\d+:\d+: mesh\.mtu: .*1280 to 9000/);
});

test('a patch that breaks a cross-field rule is rejected too (two nodes on one forwarded port)', () => {
  const r = checkInventoryPatch(text, HOMELAB, [{ path: ['nodes', 'wk-2', 'forwardedPort'], value: 51821 }]);
  assert.ok(!r.ok, 'ms-1 already has 51821 on the home router');
});

test('a path through a missing or aliased node is refused, not guessed', () => {
  assert.equal(checkInventoryPatch(text, HOMELAB, [{ path: ['nodes', 'nobody', 'forwardedPort'], value: 1 }]).ok, false);
  const aliased = 'mesh: &m\n  network: 172.27.15.0/24\nother: *m\n';
  const r = checkInventoryPatch(aliased, 'x.yaml', [{ path: ['other', 'mtu'], value: 1400 }]);
  assert.equal(r.ok, false);
  assert.equal(describePatch({ path: ['mesh', 'mtu'], value: 1328 }), 'mesh.mtu: 1328');
});
