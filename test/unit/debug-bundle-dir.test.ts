/**
 * RV6 F10: `debug --tcpdump` judged the bundle's directory only after the capture had run (ownPrivateDir in
 * capturePair), so in a directory it refuses (group or others may write it, no sticky bit) the capture ran for its
 * seconds and debug then ended with the refusal and no diagnosis. Now the directory is judged before anything is sent
 * to a node.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDebug } from '../../src/debug/run.js';
import { loadInventory } from '../../src/inventory/load.js';
import { MeshctlError } from '../../src/errors.js';
import { FakeConnection } from '../support/fake-connection.js';

test('debug --tcpdump in a directory others may write: refused before any script reaches a node', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'meshctl-debug-dir-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const shared = join(dir, 'shared');
  mkdirSync(shared);
  chmodSync(shared, 0o777);
  const inventory = loadInventory('inventories/homelab.yaml');
  // no rule: any script sent fails the fake (and so the test)
  const fakes = new Map(inventory.nodes.map((n) => [n.name, new FakeConnection(n.name, [])]));
  await assert.rejects(
    runDebug(inventory, fakes, new Map(), { tcpdump: true, seconds: 3, outDir: shared, pair: ['ms-1', 'wk-1'] }),
    (e: unknown) => e instanceof MeshctlError && /shared is writable by others \(mode 0777, no sticky bit\)/.test(e.message),
  );
  assert.deepEqual(
    [...fakes.values()].map((c) => c.scripts.length),
    [0, 0, 0, 0],
    'a script was sent before the refusal',
  );
  assert.deepEqual(readdirSync(shared), []);
});
