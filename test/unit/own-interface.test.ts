/**
 * What is meshctl's own, and what is a hand-built mesh (issue 8, kind 3a; issue 9): up's facts and baseline checks and
 * verify's config-drift, judged on real captures. This file uses only modules that existed before the fix, so it runs
 * (and fails) against the old code too:
 * - handbuilt-*.txt: the import probe (up's facts probe plus the underlay) on the lab's mesh built by hand as the
 *   reference runbook does it (test/lab/adopt.test.ts, MESHCTL_CAPTURE_FIXTURES=1): key on a PrivateKey line on ms-1
 *   and wk-2 (SaveConfig = true there), in wg0.key on wk-1 and ctb-edge-1;
 * - converged-wk-1.txt: up's facts probe on a node meshctl built, turned into what wg-quick's save_config makes of
 *   it (comments gone, SaveConfig = true, the PrivateKey line back).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { checkNamed } from '../../src/engine/registry.js';
import type { CheckResult } from '../../src/engine/types.js';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import { parseChecklist, type NodeChecklist } from '../../src/checks/probes.js';
import { evaluateVerify } from '../../src/checks/verify.js';
import { desiredMesh } from '../../src/topology/desired.js';

const homelab = loadInventory('inventories/homelab.yaml');
const NODES = ['ms-1', 'wk-1', 'wk-2', 'ctb-edge-1'];
const ctx = { interface: 'wg0', listenPort: 51820 };
const capture = (name: string) => readFileSync(`test/fixtures/facts/handbuilt-${name}.txt`, 'utf8');
const handBuilt = (name: string) => parseFactsProbe(capture(name), ctx);
const nodeNamed = (name: string) => homelab.nodes.find((n) => n.name === name)!;

const evaluate = async (check: string, name: string, facts: NodeFacts): Promise<CheckResult> =>
  checkNamed(check)!.evaluate({
    node: nodeNamed(name),
    inventory: homelab,
    values: { facts } as never,
    reconnect: async () => undefined as never,
    mesh: new Map(),
    changedSoFar: false,
  });

/** What wg-quick's save_config writes over meshctl's file: no comments, SaveConfig = true, PrivateKey back in. */
function savedOver(facts: NodeFacts): NodeFacts {
  const text = (facts.config.text ?? '')
    .split('\n')
    .filter((line) => !line.startsWith('#'))
    .join('\n')
    .replace('SaveConfig = false', 'SaveConfig = true');
  return { ...facts, config: { ...facts.config, text, hasPrivateKeyLine: true, managedByMeshctl: false, sha256: '0'.repeat(64) } };
}
const converged = parseFactsProbe(readFileSync('test/fixtures/facts/converged-wk-1.txt', 'utf8'), ctx);

describe('a hand-built mesh: up names the import (failed before: "UDP 51820 is already in use", no hint)', () => {
  for (const name of NODES)
    it(`${name}: listen-port-free and no-foreign-wireguard fail naming \`meshctl import\``, async () => {
      const facts = handBuilt(name);
      const port = await evaluate('listen-port-free', name, facts);
      assert.equal(port.status, 'fail');
      assert.match(
        port.message,
        /UDP 51820 is held by wg0, which meshctl did not make: this looks like a hand-built mesh: run `meshctl import inventories\/homelab\.yaml -o imported\.yaml`/,
      );
      const foreign = await evaluate('no-foreign-wireguard', name, facts);
      assert.equal(foreign.status, 'fail');
      assert.match(foreign.message, /this looks like a hand-built mesh: run `meshctl import/);
    });
});

describe('meshctl\'s own wg0 after SaveConfig = true and a restart (failed before: "UDP 51820 is already in use")', () => {
  it('the port check recognises it by its drop-in and key file and explains the rewrite (a warning, the run goes on)', async () => {
    const port = await evaluate('listen-port-free', 'wk-1', savedOver(converged));
    assert.equal(port.status, 'warn', port.message);
    assert.match(
      port.message,
      /held by this mesh's wg0 \(recognised by meshctl's drop-in \/etc\/systemd\/system\/wg-quick@wg0\.service\.d\/meshctl-keep-key\.conf and wg0 runs with the key of \/etc\/wireguard\/wg0\.key\)/,
    );
    assert.match(port.message, /rewritten by wg-quick \(SaveConfig = true/);
  });
  it('the baseline does not call its own interface foreign', async () => {
    const foreign = await evaluate('no-foreign-wireguard', 'wk-1', savedOver(converged));
    assert.equal(foreign.status, 'pass', foreign.message);
  });
});

describe('verify on the hand-built mesh: the key in wg0.conf is reported, not failed (failed before: config-drift)', () => {
  const checklists = new Map<string, NodeChecklist>(NODES.map((name) => [name, parseChecklist(capture(name), { ...ctx, peerIps: [] })]));
  const keys = new Map(NODES.map((name) => [name, checklists.get(name)!.livePublicKey!]));
  const checks = evaluateVerify({
    inventory: homelab,
    desired: new Map(desiredMesh(homelab, keys).map((d) => [d.node, d])),
    checklists,
    unreachable: new Map(),
  });
  const drift = (name: string) => checks.find((c) => c.node === name && c.id === 'config-drift')!;
  it('ms-1 (PrivateKey line): a warning naming where the key sits', () => {
    assert.equal(drift('ms-1').status, 'warn', drift('ms-1').message);
    assert.match(drift('ms-1').message, /private key sits in wg0\.conf \(PrivateKey line\)/);
  });
  it('wk-2 (PrivateKey line, SaveConfig = true): a warning', () => {
    assert.equal(drift('wk-2').status, 'warn', drift('wk-2').evidence.join('\n'));
  });
  it('wk-1 and ctb-edge-1 (wg0.key loaded by PostUp): pass', () => {
    for (const name of ['wk-1', 'ctb-edge-1']) assert.equal(drift(name).status, 'pass', drift(name).evidence.join('\n'));
  });
});
