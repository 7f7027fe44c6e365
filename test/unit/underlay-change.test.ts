/**
 * Finding 19: a mesh whose every node runs its interface skipped the baseline's underlay probes even when the
 * inventory moved a forward, so `up` rewrote the configs to a forward nobody had tried and said converged, and verify's
 * cold-start check failed afterwards. The probes are now skipped only while the nodes' configs dial what the inventory
 * designs (src/engine/underlay-change.ts). Shown on the probe-underlay step itself, over a scripted underlay
 * (../support/fake-forward-probe.ts) where the changed forward lands on no node.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseFactsProbe, type NodeFacts } from '../../src/facts/node-facts.js';
import { loadInventory } from '../../src/inventory/load.js';
import type { Inventory, Node } from '../../src/inventory/types.js';
import { renderWgQuickConfig } from '../../src/render/wgquick.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { checkNamed, stepNamed } from '../../src/engine/registry.js';
import type { CheckResult, MeshStep } from '../../src/engine/types.js';
import { UNDERLAY_CHANGED, underlayChanges } from '../../src/engine/underlay-change.js';
import { connectionsOf, probeNetwork } from '../support/fake-forward-probe.js';
import { baselineUnderlayNote } from '../support/underlay-note.js';

const inventory = loadInventory('inventories/homelab.yaml');
const bare = parseFactsProbe(readFileSync('test/fixtures/facts/bare-debian12.txt', 'utf8'), { interface: 'wg0', listenPort: 51820 });
const keys = new Map(inventory.nodes.map((n) => [n.name, randomBytes(32).toString('base64')]));

/** The inventory with one node's fields replaced. */
const withNode = (name: string, change: Partial<Node>): Inventory => ({
  ...inventory,
  nodes: inventory.nodes.map((n) => (n.name === name ? { ...n, ...change } : n)),
});

/** What a node holds after `up` with homelab.yaml: its rendered wg0.conf and the live interface on its listen port. */
function runningFacts(node: string): NodeFacts {
  const text = renderWgQuickConfig(desiredNodeConfig(inventory, node, keys));
  return {
    ...bare,
    interfaces: [...bare.interfaces, 'wg0'],
    config: { exists: true, text, hasPrivateKeyLine: false, managedByMeshctl: true },
    live: { addresses: [], listenPort: 51820, wgReadable: true },
  };
}
const running = (inv: Inventory) => inv.nodes.map((node) => ({ node, values: { facts: runningFacts(node.name) } }));

describe('finding 19: what the inventory changes in the underlay of a running mesh', () => {
  it('nothing, when the nodes hold the configs the inventory renders', () => {
    assert.deepEqual(underlayChanges(inventory, running(inventory)), []);
  });

  it("a node's forwardedPort: the nodes outside its site dial the old forward", () => {
    const moved = withNode('ms-1', { forwardedPort: 51823 });
    assert.deepEqual(underlayChanges(moved, running(moved)), [
      'ctb-edge-1 dials ms-1 at 203.0.113.10:51821, the inventory says 203.0.113.10:51823',
    ]);
  });

  it("a node's listen port, and a running node without a wg-quick file to compare", () => {
    const port = withNode('wk-2', { listenPort: 51900 });
    const changes = underlayChanges(port, running(port));
    assert.ok(changes.includes('wk-2 listens on UDP 51820, the inventory says 51900'), changes.join('\n'));
    const noFile = running(inventory).map((n, i) =>
      i === 0
        ? { ...n, values: { facts: { ...n.values.facts, config: { exists: false, hasPrivateKeyLine: false, managedByMeshctl: false } } } }
        : n,
    );
    assert.deepEqual(underlayChanges(inventory, noFile), ['ms-1 runs wg0 without a wg0.conf to compare its endpoints with']);
  });

  /** The probe-underlay step on every node running the mesh, then forward-reaches-node on ms-1. */
  async function probeStep(inv: Inventory) {
    // the router still forwards what homelab.yaml says: 51823 lands nowhere
    const network = probeNetwork(inv, (f) => (f.port === 51823 ? undefined : { node: f.node, port: f.listenPort }));
    const connections = await connectionsOf(inv, network);
    const step = stepNamed('probe-underlay') as MeshStep;
    const output = await step.run({
      inventory: inv,
      nodes: running(inv).map((n) => ({ ...n, connection: connections.get(n.node.name)! })) as never,
      changedSoFar: false,
      signal: new AbortController().signal,
    });
    const ms1 = inv.nodes.find((n) => n.name === 'ms-1')!;
    const check = await checkNamed('forward-reaches-node')!.evaluate({
      node: ms1,
      inventory: inv,
      values: output.values.get('ms-1') as never,
      mesh: new Map(),
      reconnect: async () => connections.get('ms-1')!,
      changedSoFar: false,
    });
    const sent = [...connections.values()].reduce((n, c) => n + c.scripts.length, 0);
    return { check, sent };
  }

  it('a running mesh whose forward the inventory moved is probed, and the broken forward is a STOP that says why', async () => {
    const { check, sent } = await probeStep(withNode('ms-1', { forwardedPort: 51823 }));
    assert.ok(sent > 0, 'the probes ran');
    assert.equal(check.status, 'fail', check.message);
    assert.match(check.message, /forward 203\.0\.113\.10:51823 reaches no node/);
    assert.equal(
      check.evidence?.[0],
      `${UNDERLAY_CHANGED}ctb-edge-1 dials ms-1 at 203.0.113.10:51821, the inventory says 203.0.113.10:51823`,
    );
    const note = baselineUnderlayNote('ms-1', [check]);
    assert.match(
      note,
      /^── Underlay probed: the inventory changes what the running mesh dials \(ctb-edge-1 dials ms-1 at 203\.0\.113\.10:51821/,
    );
    assert.match(note, /ms-1 {2}FAIL forward-reaches-node: forward 203\.0\.113\.10:51823 reaches no node/);
  });

  it("the plan's note is drawn from the check's data, not parsed back out of its text", async () => {
    const { check } = await probeStep(withNode('ms-1', { forwardedPort: 51823 }));
    assert.deepEqual(check.underlayChanged, {
      why: 'ctb-edge-1 dials ms-1 at 203.0.113.10:51821, the inventory says 203.0.113.10:51823',
      message: check.message.replace(/ \(probed: the inventory changes what the running mesh dials\)$/, ''),
    });
    const note = (checks: CheckResult[]) => baselineUnderlayNote('ms-1', checks);
    // the data alone (evidence and message say nothing of it): the note is drawn
    const bare = {
      id: 'nat-mapping',
      status: 'pass' as const,
      message: 'ok',
      underlayChanged: { why: 'ms-1 listens on UDP 51825, the inventory says 51820', message: 'mapping kept' },
    };
    assert.equal(
      note([bare]),
      '── Underlay probed: the inventory changes what the running mesh dials (ms-1 listens on UDP 51825, the inventory says 51820)\n  ms-1  ok   nat-mapping: mapping kept\n',
    );
    // text that looks like it, without the data: no note
    const { underlayChanged: _, ...textOnly } = check;
    assert.equal(note([textOnly]), '');
  });

  it('an unchanged running mesh is still not probed (nothing sent)', async () => {
    const { check, sent } = await probeStep(inventory);
    assert.equal(sent, 0);
    assert.equal(check.status, 'pass');
    assert.match(check.message, /not probed: every node already runs the mesh/);
  });
});
