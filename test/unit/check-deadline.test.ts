/**
 * MESHCTL_COMMAND_TIMEOUT raises the fixed deadlines of checks and probes (issue 10: on a loaded farm of 100
 * sandboxes the fresh-login check's fixed 10 s called 92 of 100 nodes unreachable), and never shortens them.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { checkDeadlineMs, type RunOptions } from '../../src/transport/types.js';
import { checkNamed } from '../../src/engine/registry.js';
import { loadInventory } from '../../src/inventory/load.js';
import { FakeConnection } from '../support/fake-connection.js';

describe('check deadlines and MESHCTL_COMMAND_TIMEOUT', () => {
  it('keeps the fixed deadline when unset, raises it when longer, never lowers it', () => {
    assert.equal(checkDeadlineMs(10_000, {}), 10_000);
    assert.equal(checkDeadlineMs(10_000, { MESHCTL_COMMAND_TIMEOUT: '900' }), 900_000);
    assert.equal(checkDeadlineMs(10_000, { MESHCTL_COMMAND_TIMEOUT: '2' }), 10_000);
    assert.equal(checkDeadlineMs(10_000, { MESHCTL_COMMAND_TIMEOUT: 'soon' }), 10_000);
  });

  it('the fresh-login check (ssh-still-reachable) waits as long as MESHCTL_COMMAND_TIMEOUT says', async () => {
    const inventory = loadInventory('inventories/homelab.yaml');
    const seen: RunOptions[] = [];
    class Recording extends FakeConnection {
      override run(script: string, options: RunOptions = {}) {
        seen.push(options);
        return super.run(script, options);
      }
    }
    const before = process.env.MESHCTL_COMMAND_TIMEOUT;
    process.env.MESHCTL_COMMAND_TIMEOUT = '120';
    try {
      const result = await checkNamed('ssh-still-reachable')!.evaluate({
        node: inventory.nodes[0]!,
        inventory,
        values: {} as never,
        mesh: new Map(),
        changedSoFar: true,
        reconnect: async () => new Recording('ms-1', [{ match: /^true$/, reply: {} }]),
      });
      assert.equal(result.status, 'pass', result.message);
      assert.equal(seen[0]?.timeoutMs, 120_000);
    } finally {
      if (before === undefined) delete process.env.MESHCTL_COMMAND_TIMEOUT;
      else process.env.MESHCTL_COMMAND_TIMEOUT = before;
    }
  });
});
