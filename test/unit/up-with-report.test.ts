/**
 * Issue 10: the end of `up`. The run's last remote work (the locks' release, then closing the connections) runs
 * beside what the caller does with the report (UpOptions.withReport: the local state and the JSON), not before it;
 * runUp still resolves only once the connections are closed, and an error of the caller's part is raised after that.
 * Shown by order over fake connections (a close that finishes only once the report was delivered), never by time.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { runUp, type Connector, type UpReport } from '../../src/engine/up.js';
import { loadInventory } from '../../src/inventory/load.js';
import { FakeConnection } from '../support/fake-connection.js';

const inventory = loadInventory('inventories/homelab.yaml');
const bareFacts = readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8');
const lock = '@@meshctl begin lock\nacquired\n@@meshctl end lock rc=0\n';

function run(withReport: (report: UpReport, log: string[], closeMayEnd: () => void) => Promise<void>) {
  const log: string[] = [];
  const connections = new Map(
    inventory.nodes.map((n) => [
      n.name,
      new FakeConnection(n.name, [
        { match: /@@meshctl begin uid/, reply: (script) => ({ stdout: `${script.includes('take_lock') ? lock : ''}${bareFacts}` }) },
        { match: /take_lock/, reply: { stdout: 'acquired\n' } },
        {
          match: /rm -f/,
          reply: () => {
            log.push(`release ${n.name}`);
            return {};
          },
        },
      ]),
    ]),
  );
  let closeMayEnd!: () => void;
  const mayEnd = new Promise<void>((resolve) => {
    closeMayEnd = resolve;
  });
  // only so that a run that never delivers the report fails instead of hanging
  setTimeout(closeMayEnd, 5000).unref();
  const connector: Connector = {
    connectAll: async () => ({
      connections,
      failures: new Map(),
      close: async () => {
        log.push('close');
        await mayEnd;
        log.push('closed');
      },
    }),
    connectOne: async () => {
      throw new Error('no reconnect in this test');
    },
  };
  const report = runUp(
    inventory,
    connector,
    { onEvent: () => undefined, gate: async () => true },
    {
      signal: new AbortController().signal,
      playbookPath: 'test/fixtures/up/facts-only.yaml',
      rollbackDeadlineS: 0,
      withReport: (r) => withReport(r, log, closeMayEnd),
    },
  );
  return { report, log };
}

describe('up: the report is delivered while the run ends on the nodes (issue 10)', () => {
  it('withReport runs before the connections are closed; runUp resolves after they are', async () => {
    const { report, log } = run(async (r, log, closeMayEnd) => {
      log.push(`report ${r.result}`);
      closeMayEnd();
    });
    const r = await report;
    assert.equal(r.result, 'converged');
    assert.ok(log.includes('report converged'), JSON.stringify(log));
    assert.ok(log.indexOf('report converged') < log.indexOf('closed'), JSON.stringify(log));
    assert.equal(log.at(-1), 'closed', 'resolved after the close');
    // every lock released, each before the connections close
    const releases = log.flatMap((l, i) => (l.startsWith('release ') ? [i] : []));
    assert.equal(releases.length, inventory.nodes.length);
    assert.ok(Math.max(...releases) < log.indexOf('close'), JSON.stringify(log));
  });

  it("an error of the caller's part is raised once the connections are closed", async () => {
    const { report, log } = run(async (_r, log, closeMayEnd) => {
      log.push('report');
      setImmediate(closeMayEnd);
      throw new Error('stdout went away');
    });
    await assert.rejects(report, /stdout went away/);
    assert.equal(log.at(-1), 'closed');
  });
});
