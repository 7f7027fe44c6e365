/**
 * Issue 10: nothing in the control process may grow faster than the configs it must render (N configs of N-1
 * peers: N^2). Costs are counted as operations, not time (the machine is shared): reads of the arrays the planners
 * walk, through a counting Proxy. Inventories come from the simulated farm's generator (scripts/bench/farm).
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { checkInventoryText } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/types.js';
import { showStandIns, standInPublicKey } from '../../src/engine/plan.js';
import { recorder } from '../../src/engine/backend.js';
import { runPlaybook, type Registry } from '../../src/engine/runner.js';
import type { CheckDefinition, NodeStep, NodeValues, Playbook, ValueName } from '../../src/engine/types.js';
import { desiredNodeConfig } from '../../src/topology/desired.js';
import { pairsRelayedBy, pathBetween, planPaths, relayedPeersVia, type MeshPaths } from '../../src/topology/paths.js';
import { farmInventory } from '../../scripts/bench/farm/inventory.js';

/** The farm's inventory of n nodes; `forwards: false` drops every port forward, so NAT sites need relays. */
function farm(n: number, { forwards = true } = {}): Inventory {
  const generated = farmInventory(n);
  const ports = new Map(generated.nodes.map((node, i) => [node.name, 10_000 + i]));
  let yaml = generated.yaml((name) => ({ port: ports.get(name)!, identityFile: '/nonexistent' }));
  if (!forwards) yaml = yaml.replace(/, forwardedPort: \d+/g, '');
  const check = checkInventoryText(yaml, `farm-${n}.yaml`);
  assert.ok(check.ok, JSON.stringify(!check.ok && check.problems.slice(0, 3)));
  return check.inventory;
}

/** The array behind a Proxy that counts element reads (what find/filter/slice/map/for-of cost). */
function counted<T>(array: T[]): { array: T[]; reads: () => number } {
  let reads = 0;
  const proxy = new Proxy(array, {
    get(target, key, receiver) {
      if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
      return Reflect.get(target, key, receiver);
    },
  });
  return { array: proxy, reads: () => reads };
}

const keysOf = (inventory: Inventory) =>
  new Map(inventory.nodes.map((n) => [n.name, createHash('sha256').update(`k ${n.name}`).digest('base64')]));

describe('path lookups (src/topology/paths.ts) cost O(1) each after one pass over the pairs', () => {
  it('pathBetween for all N(N-1) ordered pairs of 120 nodes reads each pair about once, not N^2 times', () => {
    const inventory = farm(120);
    const planned = planPaths(inventory);
    const pairs = counted(planned.pairs);
    const paths: MeshPaths = { pairs: pairs.array };
    let direct = 0;
    for (const a of inventory.nodes)
      for (const b of inventory.nodes) if (a !== b && pathBetween(paths, a.name, b.name)?.kind === 'direct') direct++;
    assert.equal(direct, 120 * 119); // the farm has forwards everywhere: every pair is direct
    // a scan per lookup read ~N(N-1) x P/2 = 5e7 pairs here
    assert.ok(pairs.reads() <= 2 * planned.pairs.length, `${pairs.reads()} reads for ${planned.pairs.length} pairs`);
  });

  it('relayedPeersVia and pairsRelayedBy for every (node, relay) of 120 nodes with relays read the pairs about once', () => {
    const inventory = farm(120, { forwards: false });
    const planned = planPaths(inventory);
    const relayedPairs = planned.pairs.filter((p) => p.path.kind === 'relayed');
    assert.ok(relayedPairs.length >= 500, `${relayedPairs.length} relayed pairs`); // NAT sites without forwards
    const pairs = counted(planned.pairs);
    const paths: MeshPaths = { pairs: pairs.array };
    const relays = inventory.nodes.filter((n) => n.site === 'edge');
    let reached = 0;
    let carried = 0;
    for (const relay of relays) {
      carried += pairsRelayedBy(paths, relay.name).length;
      for (const node of inventory.nodes) reached += relayedPeersVia(paths, node.name, relay.name).length;
    }
    assert.equal(carried, relayedPairs.length);
    assert.equal(reached, 2 * relayedPairs.length); // each relayed pair is reached from both of its ends
    assert.ok(pairs.reads() <= 2 * planned.pairs.length, `${pairs.reads()} reads for ${planned.pairs.length} pairs`);
  });
});

describe('desiredNodeConfig once per node (what up does) costs O(N^2) in all, not O(N^3)', () => {
  /** Reads of inventory.nodes while desiredNodeConfig runs for every node of a farm of n nodes. */
  function nodeReads(n: number, forwards: boolean): number {
    const base = farm(n, { forwards });
    const nodes = counted([...base.nodes]);
    const inventory: Inventory = { ...base, nodes: nodes.array };
    const keys = keysOf(base);
    let peers = 0;
    for (const node of base.nodes) peers += desiredNodeConfig(inventory, node.name, keys).peers.length;
    assert.ok(peers > 0);
    return nodes.reads();
  }

  for (const forwards of [true, false])
    it(`doubling N (60 -> 120, ${forwards ? 'all direct' : 'with relays'}) at most quadruples the reads (+ a margin)`, () => {
      const small = nodeReads(60, forwards);
      const large = nodeReads(120, forwards);
      // re-planning every pair per call (the old code) made this ratio 8, and the absolute count N^3/2
      assert.ok(large / small <= 4.5, `60 nodes: ${small} reads, 120 nodes: ${large} (ratio ${(large / small).toFixed(2)})`);
      assert.ok(large <= 20 * 120 * 120, `${large} reads at 120 nodes`);
    });
});

describe('showStandIns (src/engine/plan.ts) in one pass', () => {
  /** the replaceAll per node it replaced: the reference for what the text must become */
  const naive = (text: string, nodes: readonly string[]) =>
    nodes.reduce((t, node) => t.replaceAll(standInPublicKey(node), `<new key of ${node}>`), text);

  it('gives what a replaceAll per node gave: keys at the start, end, back to back, inside base64 runs, unknown keys kept', () => {
    const nodes = ['a-1', 'b-2', 'c-3'];
    const [k1, k2, k3] = nodes.map(standInPublicKey) as [string, string, string];
    const other = createHash('sha256').update('not a stand-in').digest('base64');
    const texts = [
      `${k1}`,
      `PublicKey = ${k1}\nAllowedIPs = 100.64.0.2/32\n[Peer]\nPublicKey = ${k2}\n# = x\nPublicKey = ${other}\n`,
      `${k1}${k2}${k3}`,
      `AAAA${k2}BBBB==${k3}`,
      `{"script":"printf '%s' '${k3}' > /x","a==b":"${k1}"}`,
      'no keys = here',
      '',
    ];
    for (const text of texts) assert.equal(showStandIns(text, nodes), naive(text, nodes), text);
    assert.equal(showStandIns(`x ${k1}`, []), `x ${k1}`);
  });

  it('a config of 300 peers whose keys are all stand-ins: every key shown as the node, as before', () => {
    const nodes = Array.from({ length: 300 }, (_, i) => `n-${i}`);
    const config = nodes.map((n) => `[Peer]\n# ${n}\nPublicKey = ${standInPublicKey(n)}\nAllowedIPs = 100.64.1.1/32\n`).join('');
    const text = JSON.stringify({ script: config });
    assert.ok(!showStandIns(text, nodes).includes(standInPublicKey('n-7')));
    assert.equal(showStandIns(text, nodes), naive(text, nodes));
  });
});

describe('the engine runner (src/engine/runner.ts) builds each mesh map once, not once per node', () => {
  /**
   * One phase over a farm of n nodes: `give` provides every node a public key and facts listing `peers` peers,
   * `use` (needs publicKey) and a check (needs publicKey) look at the mesh. Counted: reads of the two `needs`
   * arrays (building a mesh map walks them once per node it holds) and of the facts' peer lists (the report's
   * redaction collects the run's public keys from them). Returns the counts and what each node saw.
   */
  async function onePhase(n: number, peers: number) {
    const inventory = farm(n);
    const stepNeeds = counted<ValueName>(['publicKey']);
    const checkNeeds = counted<ValueName>(['publicKey']);
    const peerLists: ReturnType<typeof counted<{ publicKey: string }>>[] = [];
    const seen = { step: [] as number[], check: [] as number[] };
    const key = (name: string) => createHash('sha256').update(`k ${name}`).digest('base64');
    const give: NodeStep = {
      scope: 'node',
      effect: 'read',
      needs: [],
      provides: ['publicKey', 'facts'],
      plan: () => ({}),
      outputs: (input) => {
        const list = counted(Array.from({ length: peers }, (_, i) => ({ publicKey: key(`${input.node.name} peer ${i}`) })));
        peerLists.push(list);
        const facts = { keys: {}, peers: list.array } as unknown as NodeValues['facts'];
        return { publicKey: { key: key(input.node.name), created: false, known: true }, facts } as never;
      },
    };
    const use: NodeStep = {
      scope: 'node',
      effect: 'read',
      needs: stepNeeds.array as never,
      provides: [],
      plan: (input) => {
        seen.step.push(input.mesh.size);
        return {};
      },
      outputs: () => ({}) as never,
    };
    const check: CheckDefinition = {
      needs: checkNeeds.array as never,
      evaluate: (input) => {
        seen.check.push(input.mesh.size);
        return { id: 'sees-mesh', status: 'pass', message: 'ok' };
      },
    };
    const registry: Registry = {
      step: (name) => ({ give, use })[name],
      check: (name) => (name === 'sees-mesh' ? check : undefined),
    };
    const playbook: Playbook = {
      name: 'scale',
      description: '',
      source: 'scale.yaml',
      phases: [{ id: 'p', title: 'p', steps: ['give', 'use'], checks: ['sees-mesh'], go: '' }],
    };
    const run = await runPlaybook({
      inventory,
      playbook,
      connections: new Map(),
      backend: recorder,
      signal: new AbortController().signal,
      registry,
      reconnect: () => Promise.reject(new Error('no reconnect here')),
      gate: async () => true,
    });
    assert.equal(
      run.phases[0]?.verdict,
      'GO',
      JSON.stringify(run.phases[0]?.nodes.find((x) => x.error || x.checks.some((c) => c.status !== 'pass'))),
    );
    const peerReads = peerLists.reduce((sum, l) => sum + l.reads(), 0);
    return { seen, stepNeedsReads: stepNeeds.reads(), checkNeedsReads: checkNeeds.reads(), peerReads };
  }

  it('every node sees all n nodes, and the needs are read O(n) times, not n^2 (300 nodes)', async () => {
    const n = 300;
    const r = await onePhase(n, 2);
    assert.deepEqual(new Set(r.seen.step), new Set([n]));
    assert.deepEqual(new Set(r.seen.check), new Set([n]));
    assert.equal(r.seen.step.length, n);
    assert.equal(r.seen.check.length, n);
    // a map per node (the old code) read each needs array n x n = 90,000 times
    assert.ok(r.stepNeedsReads <= 4 * n, `step needs read ${r.stepNeedsReads} times`);
    assert.ok(r.checkNeedsReads <= 4 * n, `check needs read ${r.checkNeedsReads} times`);
  });

  it("the report's known public keys are collected once per phase: peer lists read O(n x peers), not n^2 x peers", async () => {
    const n = 200;
    const peers = 20;
    const r = await onePhase(n, peers);
    // once per node's report (the old code): 200 x 200 x 20 = 800,000 reads
    assert.ok(r.peerReads <= 3 * n * peers, `${r.peerReads} reads of the peer lists (${n} nodes x ${peers} peers)`);
  });
});
