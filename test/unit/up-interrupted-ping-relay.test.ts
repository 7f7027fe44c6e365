/**
 * relay: auto (src/engine/up.ts, src/engine/fallback.ts): a ping round cut by Ctrl-C failed nothing, so it moves no
 * pair to a relay: no second pass, no "now relayed" note (a new user saw that note for pairs that never were). Over
 * the bench's fake nodes (scripts/bench/farm/fake-node.ts), whose pings between a-1 and p-2 (a direct pair of
 * inventories/four-sites.yaml) are made to fail; once without Ctrl-C (the fallback runs: the setup is not vacuous),
 * once with Ctrl-C during the ping round.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { FakeFarm } from '../../scripts/bench/farm/fake-node.js';
import { loadInventory } from '../../src/inventory/load.js';
import { runUp, type UpView } from '../../src/engine/up.js';
import { fakeConnector } from '../support/fake-connector.js';
import { pathBetween, planPaths } from '../../src/topology/paths.js';
import type { Connection } from '../../src/transport/types.js';
import { tempDir } from '../support/temp-dir.js';

const LOST = '3 packets transmitted, 0 received, 100% packet loss, time 2002ms';

/** A cold up of four-sites over fake nodes whose a-1 <-> p-2 pings fail; `interrupt`: Ctrl-C during the ping round. */
async function upWithFailingPair(interrupt: boolean) {
  const dir = tempDir('meshctl-interrupted-ping-');
  const path = join(dir, 'four-sites.yaml');
  copyFileSync('inventories/four-sites.yaml', path);
  const inventory = loadInventory(path);
  assert.equal(pathBetween(planPaths(inventory), 'a-1', 'p-2')?.kind, 'direct');
  const overlay = new Map(inventory.nodes.map((n) => [n.name, n.overlayIp]));
  const abort = new AbortController();
  const farm = new FakeFarm();
  let pingRounds = 0;
  const node = (name: string): Connection => {
    const fake = farm.node(name);
    const other = name === 'a-1' ? 'p-2' : name === 'p-2' ? 'a-1' : undefined;
    return Object.assign(Object.create(fake) as Connection, {
      run: async (script: string, options?: Parameters<Connection['run']>[1]) => {
        const result = await fake.run(script, options);
        // the ping round's script (the facts probe names the ping sections too: the round ahead, unused on cold nodes)
        if (!script.includes('@@meshctl begin ping:') || script.includes('@@meshctl begin uid')) return result;
        pingRounds++;
        if (interrupt) abort.abort(new Error('interrupted'));
        if (!other) return result;
        const section = new RegExp(`(@@meshctl begin ping:${overlay.get(other)!.replaceAll('.', '\\.')}\\n)[^\\n]*\\n[^\\n]*`);
        assert.match(result.stdout, section);
        return { ...result, stdout: result.stdout.replace(section, `$1${LOST}`) };
      },
    });
  };
  const connector = fakeConnector(node);
  const view: UpView = { onEvent: () => undefined, gate: async () => true };
  const report = await runUp(inventory, connector, view, { signal: abort.signal, underlayProbes: false, rollbackDeadlineS: 0 });
  return { report, pingRounds };
}

describe('relay: auto after an interrupted ping round', () => {
  it('without Ctrl-C: the failed direct pair is relayed in a second pass (the setup below is not vacuous)', async () => {
    const { report, pingRounds } = await upWithFailingPair(false);
    assert.deepEqual(report.fallbackRelays?.relayedAtGate, ['a-1 p-2'], JSON.stringify(report.fallbackRelays));
    assert.ok(report.firstPass, 'a second pass');
    assert.ok((report.warnings ?? []).some((w) => /a-1 and p-2: the direct handshake failed at the gate, now relayed/.test(w)));
    assert.ok(pingRounds > inventoryNodes(), `two ping rounds: ${pingRounds}`);
  });

  it('Ctrl-C during the ping round: no second pass, no relay, no "now relayed" note', async () => {
    const { report, pingRounds } = await upWithFailingPair(true);
    assert.equal(report.result, 'interrupted');
    assert.equal(report.firstPass, undefined);
    assert.deepEqual(report.fallbackRelays?.relayedAtGate ?? [], []);
    assert.ok(!(report.warnings ?? []).some((w) => /now relayed/.test(w)), String(report.warnings));
    // one round at most (a node whose ping script had not left when Ctrl-C came is not asked)
    assert.ok(pingRounds <= inventoryNodes(), `one ping round: ${pingRounds} ping scripts`);
  });
});

const inventoryNodes = () => loadInventory('inventories/four-sites.yaml').nodes.length;
