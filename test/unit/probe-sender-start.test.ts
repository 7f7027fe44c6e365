/**
 * Issue 10: an underlay probe's senders start their SSH channel and login shell beside the watchers, and only their
 * script waits until every watcher listens (ProbeSession.send, RunOptions.sendWhen). Shown by the order of events
 * over the scripted underlay (test/support/fake-forward-probe.ts), never by time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runForwardProbe } from '../../src/checks/forward-probe.js';
import { runNatDiscovery } from '../../src/checks/nat-discovery.js';
import { loadInventory } from '../../src/inventory/load.js';
import { type Connection, withRun } from '../../src/transport/types.js';
import { connectionsOf, landsRight, underlayNetwork } from '../support/fake-forward-probe.js';

const inventory = loadInventory('inventories/homelab.yaml');

/** The probe's connections, with each command's start and each watcher's `watching` written to `log`. */
async function logged(log: string[]) {
  const network = underlayNetwork(inventory, landsRight, undefined, {
    // the watchers listen a little later than their commands start, as a perl start on a node does
    listenMs: () => 20,
    onSend: (node) => log.push(`script of the sender on ${node.name}`),
  });
  const connections = await connectionsOf(inventory, network);
  return new Map<string, Connection>(
    [...connections].map(([name, c]) => [
      name,
      withRun(c, (script, options) => {
        const watcher = script.includes('print "watching');
        log.push(`${watcher ? 'watcher' : 'sender'} command on ${name}`);
        return c.run(script, {
          ...options,
          onStdout: (chunk, end) => {
            if (watcher && chunk.includes('watching')) log.push(`watching on ${name}`);
            options?.onStdout?.(chunk, end);
          },
        });
      }),
    ]),
  );
}

describe('underlay probes: the senders start with the watchers, their scripts once those listen (issue 10)', () => {
  for (const [probe, run] of [
    ['port-forward probe', runForwardProbe],
    ['NAT discovery', runNatDiscovery],
  ] as const) {
    it(probe, async () => {
      const log: string[] = [];
      await run(inventory, await logged(log));
      const first = (prefix: string) => log.findIndex((line) => line.startsWith(prefix));
      const last = (prefix: string) => log.length - 1 - [...log].reverse().findIndex((line) => line.startsWith(prefix));
      assert.ok(first('sender command') >= 0 && first('sender command') < first('watching on'), log.join('\n'));
      assert.ok(first('script of the sender') > last('watching on'), log.join('\n'));
    });
  }
});
